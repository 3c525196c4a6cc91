"""Outcomes tied only by session_id count for the session's last trace started at or before them,
whatever order outcome and traces arrive in."""

from __future__ import annotations

import msgspec

from feedback import services
from feedback.models import DailyRollup, Outcome
from feedback.rollups import rollups_refresh
from tests.fixtures.organizations import in_tenant, unique


def _send(org, kind: str, items: list[dict]) -> None:  # type: ignore[no-untyped-def, type-arg]
    ingest = {"trace": services.traces_ingest, "outcome": services.outcomes_ingest}[kind]
    with in_tenant(org):
        result = ingest(body=msgspec.json.encode({"batch": items}))
        assert not result.errors, result.errors


def _outcome_traces(feature: str) -> dict[str, int]:
    rows = DailyRollup.objects.filter(feature__key=feature).values_list("day", "outcome_traces", "outcomes")
    return {str(day): n for day, n, _ in rows if n}


def test_session_outcome_moves_to_the_last_trace_before_it_as_traces_arrive(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature, session = unique("feat"), unique("ses")

    def trace(name: str, at: str) -> dict:  # type: ignore[type-arg]
        return {"trace_id": f"{feature}-{name}", "feature": feature, "session_id": session, "started_at": at}

    # The outcome comes first: nothing of its session is known yet, so it is not attributed.
    oc = unique("oc")
    _send(org_a, "outcome", [{"outcome_id": oc, "name": "ticket_resolved", "session_id": session,
                              "value_usd": 4, "occurred_at": "2025-03-11T10:00:00Z"}])  # fmt: skip
    with in_tenant(org_a):
        rollups_refresh()
        assert Outcome.objects.get(outcome_id=oc).attributed_trace_id is None
    # The session's first trace, the day before the outcome.
    _send(org_a, "trace", [trace("first", "2025-03-10T23:00:00Z")])
    with in_tenant(org_a):
        rollups_refresh()
        assert Outcome.objects.get(outcome_id=oc).attributed_trace_id == f"{feature}-first"
        assert _outcome_traces(feature) == {"2025-03-10": 1}
    # A later trace of the session, still before the outcome, and one after it, arrive late.
    _send(org_a, "trace", [trace("after", "2025-03-11T10:00:01Z"), trace("second", "2025-03-11T09:00:00Z")])
    with in_tenant(org_a):
        rollups_refresh()
        assert Outcome.objects.get(outcome_id=oc).attributed_trace_id == f"{feature}-second"
        # The first trace's partition (another day) lost the outcome: it was recomputed too.
        assert _outcome_traces(feature) == {"2025-03-11": 1}
        # Refreshing again changes nothing.
        rollups_refresh()
        assert _outcome_traces(feature) == {"2025-03-11": 1}


def test_an_outcome_with_a_trace_id_is_not_reattributed_by_session(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    feature, session = unique("feat"), unique("ses")
    traces = [{"trace_id": f"{feature}-{i}", "feature": feature, "session_id": session,
               "started_at": f"2025-03-10T0{i}:00:00Z"} for i in range(2)]  # fmt: skip
    _send(org_a, "trace", traces)
    _send(org_a, "outcome", [{"outcome_id": unique("oc"), "name": "x", "trace_id": f"{feature}-0",
                              "session_id": session, "occurred_at": "2025-03-10T05:00:00Z"}])  # fmt: skip
    with in_tenant(org_a):
        rollups_refresh()
        rows = {r.traces: r for r in DailyRollup.objects.filter(feature__key=feature)}
        assert sum(r.outcome_traces for r in rows.values()) == 1 and sum(r.outcomes for r in rows.values()) == 1
