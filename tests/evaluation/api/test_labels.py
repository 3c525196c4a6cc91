"""POST /api/v1/labels against the live server: idempotency, rubrics created on first sight and
fixed by it, versions that never mix, bad input refused per item with nothing stored changed."""

from __future__ import annotations

from typing import Any

from evaluation.models import Label, Rubric
from evaluation.services.labels import rubric_version_create
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient


def label(trace_id: str, rubric: str, **fields: Any) -> dict[str, Any]:
    return {"label_id": unique("lb"), "trace_id": trace_id, "rubric": rubric, **fields}


def test_labels_are_idempotent_and_fix_the_rubric_scale(api_a: ApiClient, org_a: Org) -> None:
    rubric, tid = unique("helpful"), unique()
    first = label(tid, rubric, value=4, reviewer="ann@example.com", comment="fine",
                  sampling={"design": "stratified", "stratum": "low", "inclusion_probability": 0.25})  # fmt: skip
    assert api_a.post("/api/v1/labels", first).json() == {"accepted": 1, "duplicates": 0, "errors": []}
    again = {**first, "value": 1, "comment": "changed"}
    assert api_a.post("/api/v1/labels", again).json() == {"accepted": 0, "duplicates": 1, "errors": []}
    with in_tenant(org_a):
        (row,) = Label.objects.filter(label_id=first["label_id"]).select_related("rubric")
        assert (row.rubric.name, row.rubric.version, row.rubric.scale) == (rubric, 1, "ordinal")
        assert (row.value, row.comment, row.reviewer, row.source) == (4.0, "fine", "ann@example.com", "api")
        assert (row.sampling_design, row.stratum, row.inclusion_probability) == ("stratified", "low", 0.25)
        assert row.trace_id == tid  # no trace with this id yet: kept, joined when it lands


def test_bad_labels_are_refused_per_item_and_store_nothing(api_a: ApiClient, org_a: Org) -> None:
    binary, cats = unique("correct"), unique("topic")
    assert api_a.post("/api/v1/labels", label(unique(), binary, value=1)).json()["accepted"] == 1
    assert api_a.post("/api/v1/labels", label(unique(), cats, category="billing")).json()["accepted"] == 1
    batch = [
        label(unique(), binary, value=3),  # 0: off the binary scale
        label(unique(), binary, value=1, scale="ordinal"),  # 1: the rubric is binary
        label(unique(), binary, value=1, rubric_version=2),  # 2: no such version
        label(unique(), binary, value=1, sampling={"design": "active"}),  # 3: no inclusion probability
        label(unique(), binary, value=1, sampling={"design": "uniform", "inclusion_probability": 1.5}),  # 4
        label(unique(), binary, value=1, category="x"),  # 5: both
        label(unique(), cats, value=1),  # 6: categorical needs a category
        label(unique(), unique("new"), value=-2),  # 7: not on any inferred scale; no rubric left behind
        label(unique(), binary, value=0, colour="red"),  # 8: unknown field
        label(unique(), binary, value=0, occurred_at="2999-01-01T00:00:00Z"),  # 9: future
        label(unique(), binary, value=0),  # 10: fine
    ]
    answer = api_a.post("/api/v1/labels", {"batch": batch})
    assert answer.status_code == 207
    body = answer.json()
    assert body["accepted"] == 1
    fields = [(e["index"], e["field"]) for e in body["errors"]]
    assert fields == [
        (0, "value"), (1, "scale"), (2, "rubric_version"), (3, "sampling.inclusion_probability"),
        (4, "sampling.inclusion_probability"), (5, "value"), (6, "value"), (7, "value"), (8, "colour"),
        (9, "occurred_at"),
    ]  # fmt: skip
    with in_tenant(org_a):
        assert not Rubric.objects.filter(name=batch[7]["rubric"]).exists()
        assert Label.objects.filter(rubric__name=binary).count() == 2
    none = api_a.post("/api/v1/labels", label(unique(), binary, value=7))
    assert none.status_code == 400 and none.json()["accepted"] == 0


def test_rubric_versions_never_mix(api_a: ApiClient, org_a: Org) -> None:
    name = unique("tone")
    assert api_a.post("/api/v1/labels", label(unique(), name, value=1)).json()["accepted"] == 1
    with in_tenant(org_a):
        v2, created = rubric_version_create(name=name, scale="ordinal", description="1-5 now")
        assert created and v2.version == 2
        assert rubric_version_create(name=name, scale="ordinal", description="1-5 now") == (v2, False)
    # Latest by default (ordinal now); version 1 still takes its own scale when named.
    answer = api_a.post(
        "/api/v1/labels",
        {"batch": [label(unique(), name, value=5), label(unique(), name, value=1, rubric_version=1),
                   label(unique(), name, value=5, rubric_version=1)]},
    )  # fmt: skip
    assert answer.json()["accepted"] == 2
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(2, "value")]
    with in_tenant(org_a):
        by_version = sorted(Label.objects.filter(rubric__name=name).values_list("rubric__version", "value"))
        assert by_version == [(1, 1.0), (1, 1.0), (2, 5.0)]


def test_labels_of_another_organization_are_not_seen(api_a: ApiClient, api_b: ApiClient, org_b: Org) -> None:
    first = label(unique(), unique("private"), value=1)
    assert api_a.post("/api/v1/labels", first).json()["accepted"] == 1
    # Same label_id in B is B's own row, not a duplicate of A's.
    assert api_b.post("/api/v1/labels", {**first, "value": 0}).json() == {"accepted": 1, "duplicates": 0, "errors": []}
    with in_tenant(org_b):
        assert Label.objects.get(label_id=first["label_id"]).value == 0.0


def test_a_bad_key_is_refused(live: Any) -> None:
    answer = live.api("sk_not_a_key").post("/api/v1/labels", label(unique(), "r", value=1))
    assert answer.status_code == 401


def test_a_trace_read_shows_its_labels_and_never_another_organization_s(
    api_a: ApiClient, api_b: ApiClient, org_a: Org
) -> None:
    """API.md: GET /api/v1/traces/{trace_id} is the trace with its spans, feedback, outcomes, scores and labels.
    The same trace ID in another organization, labelled there, adds nothing here."""
    from django.test import Client

    tid, rubric, topics = unique("tr"), unique("helpful"), unique("topic")
    assert api_a.post("/api/v1/traces", {"trace_id": tid, "feature": unique("feat"), "output": "ok"}).ok
    sent = [label(tid, rubric, value=1, reviewer="ann@example.com", comment="clear",
                  sampling={"design": "uniform", "inclusion_probability": 0.5}),
            label(tid, topics, category="billing")]  # fmt: skip
    assert api_a.post("/api/v1/labels", {"batch": sent}).json()["accepted"] == 2
    assert api_b.post("/api/v1/labels", label(tid, rubric, value=0, reviewer="mallory@b.test")).json()["accepted"] == 1
    detail = api_a.get(f"/api/v1/traces/{tid}").json()
    by_rubric = {entry["rubric"]: entry for entry in detail["labels"]}
    assert set(by_rubric) == {rubric, topics}
    assert by_rubric[rubric] | {"occurred_at": None, "created_at": None} == {
        "label_id": sent[0]["label_id"], "rubric": rubric, "rubric_version": 1, "scale": "binary", "value": 1.0,
        "category": None, "text": None, "reviewer": "ann@example.com", "source": "api",
        "sampling": {"design": "uniform", "stratum": "", "inclusion_probability": 0.5}, "comment": "clear",
        "occurred_at": None, "created_at": None,
    }  # fmt: skip
    assert (by_rubric[topics]["scale"], by_rubric[topics]["category"]) == ("categorical", "billing")
    # The portal's trace page shows them too.
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url(f"traces/{tid}")).content.decode()
    assert "Human labels" in page and "ann@example.com" in page and "billing" in page and "mallory" not in page
