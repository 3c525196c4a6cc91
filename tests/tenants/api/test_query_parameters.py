"""A query parameter an endpoint does not take is a 400 naming it: a misspelt or unsupported filter used to
be ignored, and the answer (the feature's whole report for `?customer_id=cus_acme`) read as the filtered one."""

from __future__ import annotations

import pytest

from tests.fixtures.api import trace
from tests.fixtures.organizations import unique
from tests.fixtures.server import ApiClient


@pytest.mark.parametrize(
    ("path", "query", "unknown", "takes"),
    [
        ("/api/v1/features/{feature}/report", {"customer_id": "cus_acme"}, "customer_id", "since, until, group_by"),
        ("/api/v1/features/{feature}/report", {"prompt_version": "v1"}, "prompt_version", "since, until, group_by"),
        ("/api/v1/traces", {"foo": "bar"}, "foo", "feature, prompt_version"),
        ("/api/v1/alerts", {"since": "garbage"}, "since", "state, feature, cursor, limit"),
        ("/api/v1/experiments", {"feature": "nope"}, "feature", "cursor, limit"),
        ("/api/v1/features", {"feature": "nope"}, "feature", "cursor, limit"),
        ("/api/v1/traces/{trace}", {"expand": "spans"}, "expand", "none"),
        ("/api/v1/budgets/check", {"customer_id": "cus_1", "customer": "cus_1"}, "customer", "customer_id, feature"),
    ],
)
def test_a_parameter_the_endpoint_does_not_take_is_a_400_naming_it(  # type: ignore[no-untyped-def]
    api_a: ApiClient, path: str, query, unknown: str, takes: str
) -> None:
    feature, trace_id = unique("feat"), unique("tr")
    assert api_a.post("/api/v1/traces", trace(trace_id, feature=feature)).status_code == 200
    response = api_a.get(path.format(feature=feature, trace=trace_id), params=query)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"] == {"field": unknown}
    assert error["message"].startswith(f"{unknown}: not a parameter of this endpoint") and takes in error["message"]


def test_the_parameters_an_endpoint_takes_still_work(api_a: ApiClient) -> None:
    feature, trace_id = unique("feat"), unique("tr")
    api_a.post("/api/v1/traces", trace(trace_id, feature=feature, metadata={"auth": "sso"}))
    listed = api_a.get("/api/v1/traces", params={"feature": feature, "metadata.auth": "sso", "limit": "5"})
    assert listed.status_code == 200 and [t["trace_id"] for t in listed.json()["results"]] == [trace_id]
    report = api_a.get(f"/api/v1/features/{feature}/report", params={"group_by": "metadata.auth"})
    assert report.status_code == 200
    check = api_a.get("/api/v1/budgets/check", params={"customer_id": "cus_1", "estimated_cost_usd": "0.01"})
    assert check.status_code == 200 and check.json()["allowed"] is True, check.json()


def test_a_parameter_prefix_is_said_as_its_form_once(api_a: ApiClient) -> None:
    """The trace list's refusal listed "..., metadata.<key>, metadata.)": its prefix said bare, after its form."""
    message = api_a.get("/api/v1/traces", params={"foo": "bar"}).json()["error"]["message"]
    assert message.endswith(", metadata.<key>)") and message.count("metadata.") == 1


@pytest.mark.parametrize(
    ("path", "query", "twice"),
    [
        ("/api/v1/budgets/check", "customer_id=c1&customer_id=c2", "customer_id"),
        ("/api/v1/features/{feature}/report", "group_by=metadata.auth&group_by=day", "group_by"),
        ("/api/v1/traces", "metadata.auth=sso&metadata.auth=password", "metadata.auth"),
    ],
)
def test_a_parameter_given_twice_is_a_400_naming_it(api_a: ApiClient, path: str, query: str, twice: str) -> None:
    """The last value was taken without a word: a budget check for two customers answered for the second alone."""
    feature = unique("feat")
    assert api_a.post("/api/v1/traces", trace(unique("tr"), feature=feature)).status_code == 200
    response = api_a.get(f"{path.format(feature=feature)}?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["details"] == {"field": twice} and "given 2 times" in error["message"]
