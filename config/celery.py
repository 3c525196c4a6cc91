"""The Celery app. tenant-schemas-celery's class makes every task carry its tenant schema."""

from __future__ import annotations

import os
from typing import Any

from tenant_schemas_celery.app import CeleryApp

from config.embedded_db import ensure_database_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = CeleryApp("candor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _database(**kwargs: Any) -> None:
    # A worker or beat started on its own (`celery -A config worker`) gets the embedded database
    # just before the settings are read. Importing `config` alone never starts it: this runs when
    # the app's configuration is first needed, and in a web process DATABASE_URL is set by then.
    ensure_database_url()
