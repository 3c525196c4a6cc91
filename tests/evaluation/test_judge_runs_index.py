"""The judge page's run history reads a judge's newest scores through its index, ties included."""

from __future__ import annotations

import uuid

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from evaluation.models import Score
from evaluation.selectors import judge_runs
from evaluation.services.shared import utc_now
from tests.evaluation.helpers import offline_judge
from tests.fixtures.organizations import Org, in_tenant


def test_newest_runs_come_from_the_index_when_a_batch_shares_one_timestamp(org_a: Org, committed_db: None) -> None:
    """A sampling sweep (or a posted batch) gives all its scores one created_at. Ordered newest first with
    the id as tie-break, the list must still be read off the index: with created_at alone in it, PostgreSQL
    sorted every score of the newest batch (550 ms for a judge whose million scores share a timestamp)."""
    with in_tenant(org_a), transaction.atomic():
        judge, other = offline_judge(), offline_judge()
        now, run = utc_now(), uuid.uuid4().hex[:8]
        Score.objects.bulk_create(
            Score(score_id=f"{run}-{i}", trace_id=f"{run}-t{i}", judge=of, judge_version=of.current_version,
                  status="ok", created_at=now)
            for i in range(6000)
            for of in [(judge, other)[i % 4 == 0]]
        )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE evaluation_score")
        with CaptureQueriesContext(connection) as queries:
            runs = judge_runs(judge=judge, limit=50)
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "score_judge_recent_id" in plan and "Sort" not in plan, plan
    ids = [score.id for score in runs]
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    assert {score.judge_id for score in runs} == {judge.id}
