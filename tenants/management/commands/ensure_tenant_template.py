from typing import Any

from django.core.management.base import BaseCommand

from tenants.services import tenant_template_ensure


class Command(BaseCommand):
    help = "Create the migrated schema that new organizations are cloned from (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        tenant_template_ensure()
