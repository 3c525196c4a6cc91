"""POST /api/v1/scores, GET /api/v1/judges and /judges/{name} against the live server; scores in
GET /api/v1/traces/{trace_id}; another organization's judges and traces are 404s."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import ApiClient, LiveServer


@pytest.fixture
def api_a(live: LiveServer, org_a: Org) -> ApiClient:
    return live.api(org_a.secret_key)


@pytest.fixture
def api_b(live: LiveServer, org_b: Org) -> ApiClient:
    return live.api(org_b.secret_key)


def score(trace_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"score_id": unique("sc"), "trace_id": trace_id, "name": name, **fields}


def all_judges(api: ApiClient, limit: int = 100) -> list[dict[str, Any]]:
    """Every page of GET /api/v1/judges, in order."""
    judges: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api.get("/api/v1/judges?" + urlencode({"limit": limit, **({"cursor": cursor} if cursor else {})})).json()
        judges += page["results"]
        if page["next_cursor"] is None:
            return judges
        cursor = page["next_cursor"]


def test_judges_are_cursor_paginated_by_name(api_a) -> None:  # type: ignore[no-untyped-def]
    names = sorted(unique("pj") for _ in range(3))
    tid = unique()
    api_a.post("/api/v1/traces", {"trace_id": tid, "feature": "support-copilot", "output": "Hello"})
    for name in names:
        answer = api_a.post("/api/v1/scores", score(tid, name, value=0.5))
        assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
    one_by_one = [j["name"] for j in all_judges(api_a, limit=1)]
    assert one_by_one == sorted(one_by_one) and set(names) <= set(one_by_one)
    assert one_by_one == [j["name"] for j in all_judges(api_a)]
    assert api_a.get("/api/v1/judges?cursor=%21").status_code == 400
    assert api_a.get("/api/v1/judges?limit=0").json()["error"]["details"]["field"] == "limit"


def test_external_scores_are_idempotent_and_appear_on_the_trace(api_a) -> None:  # type: ignore[no-untyped-def]
    tid, name = unique(), unique("ext")
    api_a.post("/api/v1/traces", {"trace_id": tid, "feature": "support-copilot", "output": "Hello"})
    first = score(tid, name, value=1, comment="looks right", judge_version="ragas-0.2")
    assert api_a.post("/api/v1/scores", first).json() == {"accepted": 1, "duplicates": 0, "errors": []}
    assert api_a.post("/api/v1/scores", first).json() == {"accepted": 0, "duplicates": 1, "errors": []}
    # One score per trace and judge version, as the schema says: a new score_id is refused, item by item (it was
    # counted a duplicate with a warning: accepted + duplicates added up to every item sent, yet one was dropped).
    again = {**first, "score_id": unique("sc"), "value": 0}
    answer = api_a.post("/api/v1/scores", again)
    assert answer.status_code == 400 and answer.json() == {  # none of the batch stored, as for any refused item
        "accepted": 0,
        "duplicates": 0,
        "errors": [
            {
                "index": 0,
                "field": "trace_id",
                "message": f"trace {tid!r} already has a score from {name!r} version 'ragas-0.2': "
                "this one is not stored (one score per trace and judge version); "
                "send a new judge_version to score it again",
            }
        ],
    }
    # In one batch, the second score for a trace: refused at its index, the first stored, a resend a duplicate.
    other = unique()
    api_a.post("/api/v1/traces", {"trace_id": other, "feature": "support-copilot", "output": "Hi"})
    # IDs in the order opposite to the items' (the lowest ID won when the batch was inserted in ID order).
    pair = [{**score(other, name, value=1, judge_version="ragas-0.2"), "score_id": f"{other}-z"}, first,
            {**score(other, name, value=0, judge_version="ragas-0.2"), "score_id": f"{other}-a"}]  # fmt: skip
    got = api_a.post("/api/v1/scores", {"batch": pair}).json()
    assert (got["accepted"], got["duplicates"]) == (1, 1) and [e["index"] for e in got["errors"]] == [2]
    (stored,) = api_a.get(f"/api/v1/traces/{other}").json()["scores"]
    assert stored["raw_score"] == 1.0  # the batch's first score for the trace, whatever the IDs' order
    (row,) = api_a.get(f"/api/v1/traces/{tid}").json()["scores"]
    assert row["judge"] == name and row["judge_kind"] == "external" and row["scale"] == "binary"
    assert (row["raw_score"], row["passed"], row["status"]) == (1.0, True, "ok")
    assert row["judge_version_label"] == "ragas-0.2" and row["sampling"]["design"] == "external"
    judge = api_a.get(f"/api/v1/judges/{name}").json()
    assert judge["kind"] == "external" and [v["label"] for v in judge["versions"]] == ["ragas-0.2"]
    # ...and a new judge_version scores it again.
    assert api_a.post("/api/v1/scores", {**again, "judge_version": "ragas-0.3"}).json()["accepted"] == 1
    assert len(api_a.get(f"/api/v1/traces/{tid}").json()["scores"]) == 2


def test_scale_is_fixed_by_the_first_score(api_a) -> None:  # type: ignore[no-untyped-def]
    name = unique("ext")
    assert api_a.post("/api/v1/scores", score(unique(), name, value=4)).json()["accepted"] == 1  # ordinal
    answer = api_a.post(
        "/api/v1/scores",
        {"batch": [score(unique(), name, value=5), score(unique(), name, value=4.5),
                   score(unique(), name, value=0.3, scale="continuous"), score(unique(), name, label="pass")]},
    )  # fmt: skip
    assert answer.status_code == 207
    body = answer.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "value"), (2, "scale"), (3, "label")]
    assert api_a.get(f"/api/v1/judges/{name}").json()["versions"][0]["scale"] == "ordinal"


def test_bad_scores_are_refused_with_the_field(api_a) -> None:  # type: ignore[no-untyped-def]
    tid = unique()
    bad = [
        score(tid, unique("ext"), value=1, colour="red"),  # unknown field
        score(tid, unique("ext")),  # neither value nor label
        score(tid, unique("ext"), value=1, label="pass"),  # both
        score(tid, "no/slashes", value=1),
        {"trace_id": tid, "name": unique("ext"), "value": 1},  # no score_id
    ]
    answer = api_a.post("/api/v1/scores", {"batch": bad})
    assert answer.status_code == 400
    fields = [e["field"] for e in answer.json()["errors"]]
    assert fields == ["colour", "value", "value", "name", "score_id"]
    assert api_a.post("/api/v1/scores", data=b"{", headers={"Content-Type": "application/json"}).status_code == 400


def test_a_score_for_a_candor_judge_name_is_refused(api_a, committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
    answer = api_a.post("/api/v1/scores", score(unique(), judge.name, value=1))
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "name"


def test_judges_list_and_detail_show_versions_and_sampling(api_a, committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.services.judges import judge_enable
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.1, all_thumbs_down=True)
    listed = {j["name"]: j for j in all_judges(api_a)}
    assert judge.name in listed
    detail = api_a.get(f"/api/v1/judges/{judge.name}").json()
    assert detail == listed[judge.name]
    (version,) = detail["versions"]
    assert detail["enabled"] is True and detail["kind"] == "llm" and version["provider"] == "offline"
    assert len(version["content_hash"]) == 64 and "{{ output }}" in version["prompt_template"]
    assert version["sampling"]["base_rate"] == 0.1 and version["sampling"]["thumbs_down_multiplier"] == 10.0


def test_another_organization_s_judges_and_scores_are_404(api_a, api_b, committed_db, org_a) -> None:  # type: ignore[no-untyped-def]
    from tests.evaluation.helpers import offline_judge

    tid, name = unique(), unique("ext")
    api_a.post("/api/v1/traces", {"trace_id": tid, "feature": "support-copilot"})
    api_a.post("/api/v1/scores", score(tid, name, value=0.25))
    with in_tenant(org_a):
        own = offline_judge()
    for path in (f"/api/v1/judges/{name}", f"/api/v1/judges/{own.name}", f"/api/v1/traces/{tid}"):
        answer = api_b.get(path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert name not in {j["name"] for j in all_judges(api_b)}
    assert api_a.get(f"/api/v1/judges/{name}").status_code == 200


def test_judge_endpoints_need_a_secret_key(live, org_a) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/v1/judges", "/api/v1/judges/x"):
        assert live.api(None).get(path).status_code == 401
        assert live.api(org_a.public_key).get(path).status_code in (401, 403)
    assert live.api(None).post("/api/v1/scores", {"score_id": "a"}).status_code == 401


def test_an_external_judge_has_at_most_100_versions(api_a) -> None:  # type: ignore[no-untyped-def]
    """A label per run (a timestamp, a run ID) would grow the judge without bound: refused past 100."""
    from evaluation.services.scores import MAX_EXTERNAL_VERSIONS

    name = unique("ext")
    batch = [{**score(unique(), name, value=1), "judge_version": f"v{i}"} for i in range(MAX_EXTERNAL_VERSIONS + 2)]
    body = api_a.post("/api/v1/scores", {"batch": batch}).json()
    assert body["accepted"] == MAX_EXTERNAL_VERSIONS
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(100, "judge_version"), (101, "judge_version")]
    again = api_a.post("/api/v1/scores", {**score(unique(), name, value=0), "judge_version": "v7"}).json()
    assert again["accepted"] == 1  # an existing version is still fine
    assert len(api_a.get(f"/api/v1/judges/{name}").json()["versions"]) == MAX_EXTERNAL_VERSIONS
