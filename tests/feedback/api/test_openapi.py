"""The published OpenAPI schema of the write bodies and the trace list: what it allows, the server
accepts, and what a generated client reads in it is for integrators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from tests.fixtures.api import event, trace
from tests.fixtures.organizations import unique

_NOW = datetime.now(UTC)
# Times the server takes: today (the schema once stopped at the end of 2025), the 29th to the 31st,
# any offset to ±23:59 (read in UTC: PostgreSQL itself stops at ±15:59), nanoseconds, lower-case t and z (RFC 3339
# allows both).
ACCEPTED = [
    _NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    _NOW.isoformat(),
    _NOW.astimezone(timezone(timedelta(hours=15, minutes=59))).isoformat(),
    _NOW.astimezone(timezone(-timedelta(hours=15, minutes=59))).isoformat(),
    _NOW.astimezone(timezone(timedelta(hours=23, minutes=59))).isoformat(),
    _NOW.astimezone(timezone(-timedelta(hours=23, minutes=59))).isoformat(),
    "2025-01-31T12:00:00Z",
    "2024-02-29T23:59:59.123456789+14:00",
    "2025-04-30t08:15:00z",
    "1970-01-01T00:00:00Z",
]
# Times both refuse: no zone, before 1970, an offset past ±23:59, a day no month has.
REFUSED = ["2025-01-31T12:00:00", "1969-12-31T23:59:59Z", "2025-01-31T12:00:00+24:00", "2025-01-32T00:00:00Z"]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _valid(schema: dict[str, Any], component: str, instance: Any) -> bool:
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": schema["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    return validator.is_valid(instance)


def _bodies(when: str) -> dict[str, tuple[str, dict[str, Any]]]:
    tid = unique()
    return {
        "/api/v1/traces": ("TraceIn", trace(tid, started_at=when, spans=[{"span_id": "s", "start": when}])),
        "/api/v1/feedback": ("FeedbackIn", event(tid, "copy", occurred_at=when)),
        "/api/v1/outcomes": (
            "OutcomeIn",
            {"outcome_id": unique(), "name": "purchase", "trace_id": tid, "occurred_at": when},
        ),
    }


@pytest.mark.parametrize("when", ACCEPTED)
def test_the_schema_allows_every_time_the_server_accepts(schema: dict[str, Any], client_a: Client, when: str) -> None:
    for path, (component, body) in _bodies(when).items():
        assert _valid(schema, component, body), f"{component} refuses {when}"
        response = client_a.post(path, body, content_type="application/json")
        assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}, (path, when)


@pytest.mark.parametrize("when", REFUSED)
def test_the_schema_refuses_the_times_the_server_refuses(schema: dict[str, Any], client_a: Client, when: str) -> None:
    for path, (component, body) in _bodies(when).items():
        assert not _valid(schema, component, body), f"{component} allows {when}"
        response = client_a.post(path, body, content_type="application/json")
        assert response.status_code == 400 and response.json()["accepted"] == 0, (path, when)


def test_offsets_past_postgresqls_limit_are_not_a_500(client_a: Client) -> None:
    # msgspec reads offsets to ±23:59, PostgreSQL to ±15:59: feedback, outcomes, scores and labels stored the
    # time as sent (a 500); every time is now kept in UTC.
    when = "2025-01-31T12:00:00+23:59"  # 2025-01-30T12:01:00Z
    bodies = {path: body for path, (_, body) in _bodies(when).items()}
    tid = bodies["/api/v1/traces"]["trace_id"]
    bodies["/api/v1/scores"] = {"score_id": unique(), "trace_id": tid, "name": unique("judge"), "value": 1,
                                "scale": "binary", "occurred_at": when}  # fmt: skip
    bodies["/api/v1/labels"] = {"label_id": unique(), "trace_id": tid, "rubric": unique("rb"), "value": 1,
                                "occurred_at": when}  # fmt: skip
    for path, body in bodies.items():
        response = client_a.post(path, body, content_type="application/json")
        assert response.status_code == 200 and response.json()["accepted"] == 1, (path, response.content)
    stored = client_a.get(f"/api/v1/traces/{tid}").json()
    assert stored["started_at"].replace("Z", "+00:00") == "2025-01-30T12:01:00+00:00"


def test_a_batch_with_fields_beside_it_is_refused_by_both(schema: dict[str, Any], client_a: Client) -> None:
    body = {"trace_id": unique(), "batch": [trace(unique())]}
    assert not _valid(schema, "TraceInBody", body)
    assert _valid(schema, "TraceInBody", {"batch": body["batch"]})
    response = client_a.post("/api/v1/traces", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_body"


def test_timestamps_state_the_rules_no_pattern_can(schema: dict[str, Any]) -> None:
    started_at = schema["components"]["schemas"]["TraceIn"]["properties"]["started_at"]["anyOf"]
    text = next(option for option in started_at if option.get("type") == "string")
    assert "a day after the server's clock" in text["description"]
    assert "day the month has" in text["description"]


def test_the_list_flags_say_what_true_and_false_do(schema: dict[str, Any]) -> None:
    parameters = {p["name"]: p["description"] for p in schema["paths"]["/api/v1/traces"]["get"]["parameters"]}
    assert "thumbs-down" in parameters["has_thumbs_down"] and "edit" in parameters["has_edit"]
    for name in ("has_thumbs_down", "has_edit"):
        assert "do not care" not in parameters[name]
        assert parameters[name].startswith("true: only traces with at least one")
        assert "false, or absent: no filter" in parameters[name]
