"""The organization's own price table: it overrides the default prices, and only for it."""

from __future__ import annotations

import msgspec
from django.test import Client

from feedback import services
from tenants.schema import in_tenant
from tests.fixtures.organizations import unique
from tests.helpers import assert_cross_tenant_404


def test_organization_price_overrides_the_default(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from feedback.models import ModelPrice, Trace

    owner = Client()
    owner.force_login(org_a.owner)
    form = {"provider": "", "model": "gpt-4o-mini", "input_per_mtok": "1", "output_per_mtok": "2",
            "effective_from": "2020-01-01 00:00"}  # fmt: skip
    assert owner.post(org_a.url("settings/prices/"), form).status_code == 302
    bad = owner.post(org_a.url("settings/prices/"), {**form, "input_per_mtok": "-1"})
    assert b"greater than or equal to 0" in bad.content
    trace_id = unique()
    with in_tenant(org_a.organization):
        body = {"trace_id": trace_id, "feature": "f", "provider": "openai", "model": "gpt-4o-mini",
                "input_tokens": 1_000_000, "output_tokens": 1_000_000}  # fmt: skip
        services.traces_ingest(body=msgspec.json.encode(body))
        trace = Trace.objects.get(trace_id=trace_id)
        price = ModelPrice.objects.get(model="gpt-4o-mini")
        assert trace.cost_usd == Decimal("3") and trace.cost_source == f"org:{price.id}"
    page = owner.get(org_a.url("settings/prices/"))
    assert b"gpt-4o-mini" in page.content and b"claude-3-5-haiku" in page.content
    # Org B has its own price table: A's price is invisible there, and B's URL cannot delete it.
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_b.url(f"settings/prices/{price.id}/delete/"), "post")
    assert_cross_tenant_404(other, org_a.url("settings/prices/"))
    with in_tenant(org_a.organization):
        assert ModelPrice.objects.filter(id=price.id).exists()
    owner.post(org_a.url(f"settings/prices/{price.id}/delete/"))
    with in_tenant(org_a.organization):
        assert not ModelPrice.objects.filter(id=price.id).exists()
