"""The Celery app. tenant-schemas-celery's class makes every task carry its tenant schema."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = CeleryApp("candor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
