"""Free-text rubrics through POST /api/v1/labels: a label carries text and no value; a value or a
category under a free-text rubric, or text under a scored one, is an item error that stores nothing."""

from __future__ import annotations

from typing import Any

from evaluation.models import Label, Rubric
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient


def label(trace_id: str, rubric: str, **fields: Any) -> dict[str, Any]:
    return {"label_id": unique("lb"), "trace_id": trace_id, "rubric": rubric, **fields}


def test_a_free_text_rubric_takes_text_and_nothing_else(api_a: ApiClient, org_a: Org) -> None:
    notes, binary = unique("notes"), unique("correct")
    first = label(unique(), notes, text="Cites the refund policy but misses the 30-day limit.")
    assert api_a.post("/api/v1/labels", first).json() == {"accepted": 1, "duplicates": 0, "errors": []}
    assert api_a.post("/api/v1/labels", label(unique(), binary, value=1)).json()["accepted"] == 1
    batch = [
        label(unique(), notes, value=1),  # 0: free text takes no value
        label(unique(), notes, category="billing"),  # 1: nor a category
        label(unique(), notes, text="x", value=1),  # 2: exactly one of value / category / text
        label(unique(), binary, text="looks fine"),  # 3: text belongs to free-text rubrics
        label(unique(), notes, text="bad \x00 byte"),  # 4: NUL
        label(unique(), notes, text="Second opinion: fine.", reviewer="bo@example.com"),  # 5: fine
        label(unique(), unique("fresh"), text="new rubric", scale="free_text"),  # 6: fine, created free text
    ]
    answer = api_a.post("/api/v1/labels", {"batch": batch})
    assert answer.status_code == 207
    body = answer.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "text"), (1, "text"), (2, "value"), (3, "text"),
                                                                  (4, "text")]  # fmt: skip
    with in_tenant(org_a):
        row = Label.objects.select_related("rubric").get(label_id=first["label_id"])
        assert (row.rubric.scale, row.value, row.category) == ("free_text", None, "")
        assert row.text == first["text"]
        assert Rubric.objects.get(name=batch[6]["rubric"]).scale == "free_text"
        assert Label.objects.filter(rubric__name=notes).count() == 2
        assert Label.objects.filter(rubric__name=binary).count() == 1


def test_calibrating_or_estimating_against_a_free_text_rubric_is_a_400_naming_it(api_a: ApiClient, org_a: Org) -> None:
    """Its labels are notes with no good or bad: answered with 200 and "0 labels", an integrator went on adding
    labels that could never count (a categorical rubric was already a 400)."""
    notes, judge, trace_id = unique("notes"), unique("ext"), unique()
    api_a.post("/api/v1/traces", {"trace_id": trace_id, "feature": "f-notes"})
    assert api_a.post("/api/v1/labels", label(trace_id, notes, text="Fine.")).json()["accepted"] == 1
    score = {"score_id": unique("s"), "trace_id": trace_id, "name": judge, "value": 1}
    assert api_a.post("/api/v1/scores", score).json()["accepted"] == 1
    for path in (
        f"/api/v1/judges/{judge}/calibration?rubric={notes}",
        f"/api/v1/features/f-notes/success?rubric={notes}",
    ):
        answer = api_a.get(path)
        assert answer.status_code == 400, (path, answer.content)
        assert (
            "free text" in answer.json()["error"]["message"] and answer.json()["error"]["details"]["field"] == "rubric"
        )
