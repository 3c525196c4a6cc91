"""The organization's spend cap on its Candor bill: under, warn (80%), capped (judges paused,
ingestion 429 quota_exceeded that says not to retry), raised (resumed at once); warnings once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client

from billing.models import CapState, Notice, UsageLedger
from billing.services.accounts import CAP_PAUSE_REASON, account_get, cap_evaluate, cap_set
from evaluation.models import Judge
from tenants.services import organization_quota_set
from tests.evaluation.helpers import offline_judge
from tests.fixtures.api import trace
from tests.fixtures.organizations import Org, in_tenant, unique


@pytest.fixture(autouse=True)
def _ingestion_cache_forgotten(db: None, org_a: Org):  # type: ignore[no-untyped-def]
    """A test's cap goes with its rolled-back transaction, but not the key policy this process cached
    meanwhile: forgotten here, or org_a's next tests (within KEY_CACHE_SECONDS) are refused quota_exceeded."""
    yield
    organization_quota_set(organization_id=org_a.organization.id, exceeded=False)


def ledger(org: Org, events: int) -> None:
    """This month's usage: `events` on the first of the month (free plan: 50,000 included, then $0.0002)."""
    day = datetime.now(UTC).date().replace(day=1)
    UsageLedger.objects.update_or_create(organization=org.organization, meter="events", day=day,
                                         defaults={"quantity": events})  # fmt: skip


def post_traces(client: Client) -> tuple[int, dict]:
    response = client.post("/api/v1/traces", json.dumps(trace(unique("t"))), content_type="application/json")
    return response.status_code, response.json()


def widget_post(org: Org) -> tuple[int, dict, str]:
    body = {"key": org.public_key, "events": [{"event_id": "8d3c8f3e-7a8e-4b1f-9a51-6c3d2b1a0f9e", "trace_id": "t",
                                               "kind": "thumb", "value": 1}]}  # fmt: skip
    response = Client().post("/api/v1/widget/events", json.dumps(body), content_type="text/plain",
                             HTTP_ORIGIN="http://localhost")  # fmt: skip
    return response.status_code, response.json(), response.get("Retry-After", "")


def test_cap_transitions_pause_and_resume_judges_and_ingestion(db: None, org_a: Org, client_a: Client) -> None:
    with in_tenant(org_a):
        judge = offline_judge()
        by_hand = offline_judge()
        Judge.objects.filter(id=by_hand.id).update(paused=True, paused_reason="paused by a PM")
    ledger(org_a, 100_000)  # bill $10
    assert cap_set(organization=org_a.organization, cap_usd="20").state == CapState.UNDER
    assert post_traces(client_a)[0] == 200

    ledger(org_a, 130_000)  # $16: 80%
    assert cap_evaluate(account=account_get(organization=org_a.organization)) == CapState.WARN
    assert post_traces(client_a)[0] == 200
    assert [n.key.rsplit(":", 1)[1] for n in Notice.objects.filter(organization=org_a.organization)] == ["80"]

    ledger(org_a, 150_000)  # $20: the cap
    assert cap_evaluate(account=account_get(organization=org_a.organization)) == CapState.CAPPED
    with in_tenant(org_a):
        assert Judge.objects.get(id=judge.id).paused_reason == CAP_PAUSE_REASON
        assert Judge.objects.get(id=by_hand.id).paused_reason == "paused by a PM"
    status, body = post_traces(client_a)
    assert status == 429 and body["error"]["code"] == "quota_exceeded" and body["error"]["details"] == {"retry": False}
    status, body, retry_after = widget_post(org_a)
    assert status == 429 and body["error"]["code"] == "quota_exceeded" and int(retry_after) >= 60
    assert client_a.get("/api/v1/budgets/check?customer_id=x").status_code == 200  # reads still work

    # Evaluating again (the sweep) warns no one twice.
    cap_evaluate(account=account_get(organization=org_a.organization))
    assert sorted(n.key.rsplit(":", 1)[1] for n in Notice.objects.filter(organization=org_a.organization)) == [
        "100", "80"]  # fmt: skip
    assert len(mail.outbox) == 2 and "100%" in mail.outbox[1].subject

    assert cap_set(organization=org_a.organization, cap_usd="50").state == CapState.UNDER  # raised: at once
    assert post_traces(client_a)[0] == 200
    assert widget_post(org_a)[0] == 200
    with in_tenant(org_a):
        assert not Judge.objects.get(id=judge.id).paused
        assert Judge.objects.get(id=by_hand.id).paused  # a PM's pause is the PM's to lift


def test_a_cap_below_this_months_bill_is_refused(db: None, org_a: Org) -> None:
    ledger(org_a, 100_000)  # $10
    with pytest.raises(ValidationError) as caught:
        cap_set(organization=org_a.organization, cap_usd="9.99")
    assert "already $10.00" in str(caught.value)
    assert account_get(organization=org_a.organization).monthly_cap_usd is None
    assert cap_set(organization=org_a.organization, cap_usd="10").state == CapState.CAPPED  # at the bill: allowed


@pytest.mark.parametrize("bad", ["-5", "abc", "1e300", "NaN"])
def test_bad_caps_are_refused(db: None, org_a: Org, bad: str) -> None:
    with pytest.raises(ValidationError):
        cap_set(organization=org_a.organization, cap_usd=bad)


def test_removing_the_cap_resumes(db: None, org_a: Org, client_a: Client) -> None:
    ledger(org_a, 200_000)
    cap_set(organization=org_a.organization, cap_usd="30")
    assert post_traces(client_a)[0] == 429
    assert cap_set(organization=org_a.organization, cap_usd="").state == CapState.UNDER
    assert post_traces(client_a)[0] == 200


def test_the_projection_runs_the_completed_days_rate_to_the_month_end(db: None, org_a: Org) -> None:
    """Early on the 5th the projection is not "so far / 5 days x 31": Mar 5 is not a whole day yet."""
    from billing.selectors import bill_projection

    for day, events in ((1, 3_000), (2, 4_000), (3, 3_500), (4, 4_500), (5, 583)):  # 15,583 to date
        UsageLedger.objects.create(organization=org_a.organization, meter="events", day=date(2026, 3, day),
                                   quantity=events)  # fmt: skip
    UsageLedger.objects.create(organization=org_a.organization, meter="judge_runs", day=date(2026, 3, 2), quantity=8)
    projection = bill_projection(account=account_get(organization=org_a.organization),
                                 now=datetime(2026, 3, 5, 3, 30, tzinfo=UTC))  # fmt: skip
    # Events: 15,000 over 4 full days, 3,750 a day; left 31 - 4 - 3.5/24 = 26.854166... days;
    # 15,583 + 3,750 * 26.854166... = 116,286.125 -> 116,286 (the old 15,583 / 5 * 31 gave 96,615).
    # Judge runs: 8 + 2 * 26.854166... = 61.708... -> 62.
    assert projection.usage == {"events": 15_583, "judge_runs": 8}
    assert projection.projected_usage == {"events": 116_286, "judge_runs": 62}
    # Free plan: 50,000 events included, then $0.0002: 66,286 * 0.0002 = 13.2572; judge runs within the 1,000.
    assert (projection.bill_to_date_usd, projection.projected_usd) == (Decimal("0.00"), Decimal("13.26"))
    assert (projection.elapsed.days_completed, projection.days_in_month) == (4, 31)


def test_every_ingestion_door_answers_quota_exceeded(db: None, org_a: Org, client_a: Client) -> None:
    ledger(org_a, 200_000)
    cap_set(organization=org_a.organization, cap_usd="30")
    for path, body, content_type in (
        ("/api/v1/feedback", {"event_id": "6f1c1c39-5d2b-4a55-8c0c-7b1f0f1f2e3d", "trace_id": "t", "kind": "thumb",
                              "value": 1}, "application/json"),
        ("/api/v1/outcomes", {"outcome_id": unique("o"), "name": "purchase", "trace_id": "t"}, "application/json"),
        ("/api/v1/scores", {"score_id": unique("s"), "trace_id": "t", "name": "external", "value": 1},
         "application/json"),
        ("/api/v1/otlp/v1/traces", {"resourceSpans": []}, "application/json"),
        ("/api/v1/otlp/v1/logs", {"resourceLogs": []}, "application/json"),
    ):  # fmt: skip
        response = client_a.post(path, json.dumps(body), content_type=content_type)
        assert response.status_code == 429, path
        assert response.json()["error"]["code"] == "quota_exceeded", path
