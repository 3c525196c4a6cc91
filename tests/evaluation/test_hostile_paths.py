"""Names and windows a user can type into a URL never reach the database as errors: 404 or a clear 400."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.helpers import error_code


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/judges/%00", "/api/v1/features/%00/report", "/api/v1/judges/a%00b", "/api/v1/traces/%00",
        "/api/v1/traces/nul%00x", "/api/v1/judges/%00/calibration?rubric=r", "/api/v1/features/%00/success?rubric=r",
        "/api/v1/experiments/%00", "/api/v1/budgets/%00", "/api/v1/customers/%00/spend",
    ],
)  # fmt: skip
def test_nul_in_api_paths_is_a_404(db: None, api_a, path: str) -> None:  # type: ignore[no-untyped-def]
    response = api_a.get(path)
    assert response.status_code == 404 and error_code(response) == "not_found"


@pytest.fixture
def owner(db: None, org_a) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org_a.owner)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "features/%00/", "features/%00/report.csv", "judges/%00/", "traces/nul%00x", "judges/%00/calibration/",
        "experiments/%00/", "drift/%00/", "spend/customers/%00/",
    ],
)  # fmt: skip
def test_nul_in_portal_paths_is_a_404(owner: Client, org_a, path: str) -> None:  # type: ignore[no-untyped-def]
    assert owner.get(org_a.url(path)).status_code == 404


def test_portal_windows_are_bounded(owner: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    for days in ("100000", "700000", "0"):
        page = owner.get(org_a.url(""), {"days": days})
        assert page.status_code == 200 and "a window is 1 to 400 days" in page.content.decode()
    # Not a number of days at all: said too (it fell back to 30 days without a word), on every window page.
    for path in ("", "customers/"):
        for days in ("-3", "abc", "7.5"):
            page = owner.get(org_a.url(path), {"days": days})
            text = page.content.decode()
            assert page.status_code == 200 and "a window is 1 to 400 days, not" in text, (path, days)
            assert "showing the last 30 days instead" in text


def test_a_trailing_newline_is_not_a_metadata_key(owner: Client, org_a) -> None:  # type: ignore[no-untyped-def]
    from evaluation.reports.selectors import Grouping, ReportError

    with pytest.raises(ReportError):
        Grouping.parse("metadata.auth\n")


@pytest.mark.parametrize("query", ["metadata.k=%00", "q=%00", "feature=%00", "customer_id=a%00b", "metadata.%00=x"])
def test_nul_in_trace_filters_is_a_clear_error(owner: Client, api_a, org_a, query: str) -> None:  # type: ignore[no-untyped-def]
    page = owner.get(org_a.url(f"traces/?{query}"))
    assert page.status_code == 200 and "must not contain NUL characters" in page.content.decode()
    if not query.startswith("q="):  # the API's list has no free-text search: q is not one of its filters
        response = api_a.get(f"/api/v1/traces?{query}")
        assert response.status_code == 400 and error_code(response) == "invalid_filter"
