"""python manage.py create_organization <slug> --owner <email>: prints one JSON object."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.services import organization_create


class Command(BaseCommand):
    help = "Create an organization with an owner and a secret/public key pair; prints JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="owner email; an existing user is reused")
        parser.add_argument("--name", default="")
        parser.add_argument("--password", default=None, help="owner password (generated when omitted)")
        parser.add_argument("--origin", action="append", default=[], help="allowed origin for the public key")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = organization_create(
                slug=options["slug"],
                name=options["name"],
                owner_email=options["owner"],
                owner_password=options["password"],
                allowed_origins=options["origin"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        out = {
            "organization": created.organization.slug,
            "schema_name": created.organization.schema_name,
            "owner_email": created.owner.email,
            "secret_key": created.secret_key,
            "public_key": created.public_key,
        }
        if created.owner_password is not None:
            out["owner_password"] = created.owner_password
        self.stdout.write(json.dumps(out))
