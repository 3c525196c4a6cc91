"""Two batches naming a new judge (or rubric) at once: the one that loses the race to create it checks its items
against the scale the winner stored, as any later batch would (they were stored unchecked: a binary judge held a 4,
and binary "good" labels were read as the worst grade of an ordinal rubric)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec
from django.db import connection, transaction

from feedback.services.shared import IngestResult
from tests.fixtures.organizations import in_tenant, unique


def _race(org: Any, ingest: Callable[..., IngestResult], first: dict[str, Any], second: dict[str, Any]) -> IngestResult:
    """``first`` stored in a transaction held open until ``second``'s batch waits on the name it is creating."""
    created, release = threading.Event(), threading.Event()

    def winner() -> None:
        with in_tenant(org), transaction.atomic():
            assert ingest(body=msgspec.json.encode(first)).accepted == 1
            created.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=winner)
    thread.start()
    assert created.wait(30)
    # The loser sees no judge yet (uncommitted), and its create waits on the winner's row: released once it waits.
    threading.Timer(1.0, release.set).start()
    with in_tenant(org):
        result = ingest(body=msgspec.json.encode(second))
    thread.join(30)
    return result


def test_a_score_racing_the_first_score_of_its_judge_is_checked_against_the_stored_scale(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.models import Score
    from evaluation.services.scores import scores_ingest

    name, trace_id = unique("ext"), unique("tr")
    first = {"score_id": unique("s"), "trace_id": trace_id, "name": name, "scale": "binary", "value": 1}
    second = {"score_id": unique("s"), "trace_id": unique("tr"), "name": name, "value": 4}  # ordinal, inferred
    result = _race(org_a, scores_ingest, first, second)
    assert result.accepted == 0
    assert [(e.field, e.message) for e in result.errors] == [
        ("value", "not on the binary scale: binary verdict must be 'pass'/'fail' or 0/1, got 4.0")
    ]
    with in_tenant(org_a):
        assert list(Score.objects.filter(judge__name=name).values_list("raw_score", flat=True)) == [1.0]


def test_a_label_racing_the_first_label_of_its_rubric_is_checked_against_the_stored_scale(committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.models import Label
    from evaluation.services.labels import labels_ingest

    rubric = unique("rub")
    first = {"label_id": unique("l"), "trace_id": unique("tr"), "rubric": rubric, "scale": "ordinal", "value": 4}
    second = {"label_id": unique("l"), "trace_id": unique("tr"), "rubric": rubric, "scale": "binary", "value": 1}
    result = _race(org_a, labels_ingest, first, second)
    assert result.accepted == 0 and [e.field for e in result.errors] == ["scale"]
    with in_tenant(org_a):
        assert list(Label.objects.filter(rubric__name=rubric).values_list("value", flat=True)) == [4.0]
