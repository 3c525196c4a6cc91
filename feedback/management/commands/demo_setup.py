"""make demo: a demo organization with an owner, a PM, working keys and realistic data (idempotent)."""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from feedback.demo import demo_features_declare, demo_load
from feedback.models import Trace
from tenants.access import Role
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find
from tenants.services import KeyKind, api_key_create, api_keys_add_origins, member_ensure, organization_create

SLUG = "acme"
OWNER = ("owner@acme.test", "candor-demo-owner")
PM = ("pm@acme.test", "candor-demo-pm")


class Command(BaseCommand):
    help = "Create the demo organization (acme) with users, keys and demo data; prints how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--traces", type=int, default=int(os.environ.get("DEMO_TRACES", "50000")))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        origins = [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]
        state_file = settings.BASE_DIR / ".var" / "demo.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        organization = organization_find(SLUG)
        if organization is None:
            created = organization_create(
                slug=SLUG, name="Acme Support", owner_email=OWNER[0], owner_password=OWNER[1], allowed_origins=origins
            )
            organization = created.organization
            state = {"secret_key": created.secret_key, "public_key": created.public_key}
        if not state.get("secret_key"):
            # The raw keys of an earlier run are gone (shown once): issue a fresh demo pair.
            state["secret_key"], _ = api_key_create(organization=organization, kind=KeyKind.SECRET, name="Demo secret")
            state["public_key"], _ = api_key_create(
                organization=organization, kind=KeyKind.PUBLIC, name="Demo widget", allowed_origins=origins
            )
        api_keys_add_origins(organization=organization, allowed_origins=origins)
        member_ensure(organization=organization, email=PM[0], password=PM[1], role=Role.PM)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))

        activate_tenant(organization)
        try:
            if not Trace.objects.exists():
                self.stdout.write(f"Loading {options['traces']:,} demo traces (first run only)…")
                stats = demo_load(traces=options["traces"], log=self.stdout.write)
                self.stdout.write(
                    f"  {stats['traces']:,.0f} traces, {stats['feedbacks']:,.0f} feedback events, "
                    f"{stats['outcomes']:,.0f} outcomes in {stats['seconds']:.1f}s"
                )
            elif demo_features_declare():
                self.stdout.write("Declared demo features' value per success and segments; rollups rebuilt.")
        finally:
            activate_public()

        base = f"http://localhost:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Candor demo is ready.",
                    f"  Portal:        {base}/o/{SLUG}/",
                    f"  Owner login:   {OWNER[0]} / {OWNER[1]}",
                    f"  PM login:      {PM[0]} / {PM[1]}",
                    f"  Secret key:    {state['secret_key']}",
                    f"  Public key:    {state['public_key']}",
                    f"  Host page:     {base}/demo/   (a sample app carrying the widget)",
                    f"  API docs:      {base}/api/v1/docs/",
                    f"  Health:        {base}/healthz",
                    "",
                ]
            )
        )
