"""The trace explorer, the trace page and the overview, through the in-process client."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from django.test import Client

from feedback import services
from tenants.schema import in_tenant
from tests.fixtures.organizations import unique
from tests.helpers import assert_cross_tenant_404


@pytest.fixture
def explorer(db: None, org_a):  # type: ignore[no-untyped-def]
    run = unique("ex")
    traces = [
        {"trace_id": f"{run}-sso", "feature": "support-copilot", "prompt_version": "pv-x", "metadata": {"auth": "sso"},
         "output": "Use your Okta dashboard.", "customer_id": "cus_big",
         "spans": [{"span_id": "a", "name": "retrieve", "kind": "retrieval", "start": "2025-01-01T00:00:00Z",
                    "end": "2025-01-01T00:00:01Z"}]},
        {"trace_id": f"{run}-pw", "feature": "support-copilot", "prompt_version": "pv-x",
         "metadata": {"auth": "password"}, "output": "Click forgot password."},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        edit = {
            "event_id": str(uuid.uuid4()),
            "trace_id": f"{run}-sso",
            "kind": "edit",
            "original_text": "Use your Okta dashboard.",
            "edited_text": "Open the Okta dashboard.",
        }
        services.feedback_ingest(body=msgspec.json.encode(edit))
    client = Client()
    client.force_login(org_a.owner)
    return run, client


def test_trace_explorer_filters_by_metadata_and_edit(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url("traces/"), {"metadata.auth": "sso", "prompt_version": "pv-x"})
    assert f"{run}-sso".encode() in page.content and f"{run}-pw".encode() not in page.content
    edited = client.get(org_a.url("traces/"), {"has_edit": "1", "q": f"{run}-sso"})
    assert f"{run}-sso".encode() in edited.content
    partial = client.get(org_a.url("traces/"), {"metadata.auth": "password"}, HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and f"{run}-pw".encode() in partial.content
    # One URL, a fragment or the page: a browser's cache must tell them apart (Back showed the bare fragment).
    assert "HX-Request" in partial["Vary"] and "HX-Request" in page["Vary"]
    bad = client.get(org_a.url("traces/"), {"since": "last tuesday"})
    said = b'<p class="msg error">Filters not applied (showing every trace). From: use ISO 8601, e.g. 2025-01-31'
    assert bad.status_code == 200 and said in bad.content
    backwards = client.get(org_a.url("traces/"), {"since": "2026-11-20", "until": "2026-11-01"})
    assert backwards.status_code == 200 and b"the window must end after it starts" in backwards.content


def test_trace_page_shows_spans_and_the_edit_diff(explorer, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url(f"traces/{run}-sso"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<del>Use</del>" in html and "<ins>Open</ins>" in html and "<del>your</del>" in html
    assert "wf-retrieval" in html and "cus_big" in html
    # org B's owner asking org A's URL, or org B's URL for org A's trace: 404 either way
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_a.url(f"traces/{run}-sso"))
    assert_cross_tenant_404(other, org_b.url(f"traces/{run}-sso"))


def test_overview_shows_rollup_numbers(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    from feedback.rollups import rollups_refresh

    run, client = explorer
    with in_tenant(org_a.organization):
        rollups_refresh()
    page = client.get(org_a.url(""))
    assert b"support-copilot" in page.content and b"Widget events rejected" in page.content


def test_the_customer_filter_reads_the_customers_traces_newest_first_from_its_index(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A customer with few traces is a few index pages, not a walk of every trace until 50 match
    (a customer with none: 308 ms at 1M traces through the old (customer_id, day) index, 1.2 ms)."""
    from django.db import connection

    from feedback.selectors import TraceFilters, traces_filtered

    query = traces_filtered(TraceFilters(customer_id="cus_rare")).order_by("-started_at", "-id")[:51]
    sql, params = query.query.sql_with_params()
    run = unique("many")
    busy = [{"trace_id": f"{run}-{i}", "feature": "f", "customer_id": f"cus_{i % 40}"} for i in range(3000)]
    with in_tenant(org_a.organization), connection.cursor() as cursor:
        # A table the planner knows to be big (a few thousand traces of 40 customers, analyzed): with the test
        # database's handful of rows every plan costs the same, and which one it picks is chance.
        for start in range(0, len(busy), 1000):
            services.traces_ingest(body=msgspec.json.encode({"batch": busy[start : start + 1000]}))
        cursor.execute("ANALYZE feedback_trace")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # Straight (in order) or as a bitmap then a sort of the customer's few rows: through the index.
    assert "Index Scan using trace_customer_recent" in plan or "Index Scan on trace_customer_recent" in plan, plan


def test_a_metadata_filter_matches_numbers_and_booleans_as_sent(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A URL's value is text, the metadata sent may hold a number or a boolean: the API's list and the explorer
    match either (the reports' grouping already showed 5 as "5"). NaN or Infinity in the URL are plain text."""
    from tests.fixtures.api import trace

    run = unique("md")
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": [
            trace(f"{run}-num", metadata={"seats": 5, "trial": True, "tier": "gold", "ratio": 0.5}),
            trace(f"{run}-str", metadata={"seats": "5", "trial": "true", "tier": "gold"}),
            trace(f"{run}-other", metadata={"seats": 6, "trial": False, "tier": "NaN"}),
        ]}))  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)

    def found(**query: str) -> set[str]:
        page = client.get(org_a.url("traces/"), {"q": "", **{f"metadata.{k}": v for k, v in query.items()}})
        assert page.status_code == 200
        return {t for t in (f"{run}-num", f"{run}-str", f"{run}-other") if t.encode() in page.content}

    assert found(seats="5") == {f"{run}-num", f"{run}-str"}
    assert found(trial="true") == {f"{run}-num", f"{run}-str"}
    assert found(trial="false") == {f"{run}-other"}
    assert found(ratio="0.5") == {f"{run}-num"}
    assert found(tier="NaN") == {f"{run}-other"} and found(seats="Infinity") == set()
