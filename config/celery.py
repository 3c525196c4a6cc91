"""The Celery app. tenant-schemas-celery's class makes every task carry its tenant schema."""

from __future__ import annotations

import os
from typing import Any

from billiard.process import current_process
from celery.signals import worker_process_init
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


@worker_process_init.connect
def _own_process_group(**kwargs: Any) -> None:
    # A pool child leaves the worker's process group, so a signal to the group (Ctrl-C or SIGTERM to
    # `make demo`) reaches only the worker's main process, which stops its children itself after their
    # current task. Killed by the group signal mid-task, a child left its job unanswered and the main
    # process waited for that answer (billiard's result handler) long after logging its warm shutdown.
    if current_process().name != "MainProcess":  # a prefork child; solo and thread pools run in the worker itself
        os.setpgrp()
