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


def test_an_outcome_finds_its_sessions_trace_through_the_session_index(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Each outcome tied by session is one probe of (session_id, started_at, id). Through an index of
    session_id alone the planner walked trace_recent backward, filtering every trace by session, for
    each outcome: 10 s a sweep once the test suite's organizations held a few thousand traces."""
    from django.db import connection

    from feedback.rollups import ATTRIBUTE_OUTCOMES

    run = unique("ses")
    traces = [{"trace_id": f"{run}-{i}", "feature": "f", "session_id": f"{run}-{i % 200}",
               "started_at": f"2025-03-{1 + i % 28:02d}T10:00:00Z"} for i in range(3000)]  # fmt: skip
    for start in range(0, len(traces), 1000):
        _send(org_a, "trace", traces[start : start + 1000])
    _send(org_a, "outcome", [{"outcome_id": unique("oc"), "name": "resolved", "session_id": f"{run}-{i}",
                              "occurred_at": "2025-03-20T12:00:00Z"} for i in range(50)])  # fmt: skip
    with in_tenant(org_a), connection.cursor() as cursor:
        # Planned as the sweep plans it: against tables the planner knows (analyzed), and against fresh ones.
        for analyzed in (False, True):
            if analyzed:
                cursor.execute("ANALYZE feedback_trace; ANALYZE feedback_outcome")
            cursor.execute("EXPLAIN " + ATTRIBUTE_OUTCOMES)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "trace_session_recent" in plan and "trace_recent " not in plan, plan


def test_tables_the_planner_takes_for_empty_are_analyzed_before_a_refresh(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A table analyzed while it held no live rows, then loaded (here: in this test's transaction, which
    autovacuum cannot see), is planned as empty: the refresh analyzes it first, once, and then the
    outcome attribution probes the session index."""
    from django.db import connection

    from feedback.rollups import ATTRIBUTE_OUTCOMES, planner_stats_ensure

    run = unique("st")

    def traces(n: int, tag: str) -> list[dict]:  # type: ignore[type-arg]
        return [{"trace_id": f"{run}-{tag}-{i}", "feature": "f", "session_id": f"{run}-{i % 100}",
                 "started_at": f"2025-03-{1 + i % 28:02d}T10:00:00Z"} for i in range(n)]  # fmt: skip

    for part in (0, 1000):
        _send(org_a, "trace", traces(2000, "gone")[part : part + 1000])
    with in_tenant(org_a), connection.cursor() as cursor:
        cursor.execute("DELETE FROM feedback_trace")  # pages of dead rows: analyzed now, 0 rows in them
        cursor.execute("ANALYZE feedback_trace")
    for part in (0, 1000):
        _send(org_a, "trace", traces(2000, "live")[part : part + 1000])
    with in_tenant(org_a), connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'feedback_trace'::regclass")
        assert cursor.fetchone()[0] <= 0  # the state the refresh used to plan against
        assert "feedback_trace" in planner_stats_ensure()
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'feedback_trace'::regclass")
        assert cursor.fetchone()[0] >= 1000
        assert planner_stats_ensure() == []  # known now: nothing analyzed again
        cursor.execute("EXPLAIN " + ATTRIBUTE_OUTCOMES)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "trace_session_recent" in plan and "trace_recent " not in plan, plan
