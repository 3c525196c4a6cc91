"""`make migrate`: django-tenants' migrate_schemas, one run at a time per database.

Every benchmark and demo target depends on `make migrate`; two started at once raced to create
the same tables ("relation ... already exists", "no schema has been selected to create in").
A PostgreSQL advisory lock makes the second wait for the first and then find nothing left to do. It is
held on a connection of its own for the whole run: django-tenants closes the migrations' connection
after each schema, which released a lock taken there after the first one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# Any fixed 64-bit number: this lock means "migrations are running in this database".
MIGRATE_LOCK = 0x43414E444F524D47


class Command(BaseCommand):
    help = "migrate_schemas (standard executor) under an advisory lock: concurrent runs wait their turn"

    def handle(self, *args: Any, **options: Any) -> None:
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK])
            call_command("migrate_schemas", executor="standard", verbosity=options["verbosity"])
            # Closing the holder releases the lock, on success or failure.
