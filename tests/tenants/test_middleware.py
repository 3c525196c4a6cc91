"""Tenant resolution: a portal URL's organization segment, a member's login, and the bearer key;
whatever the segment or key holds, the answer is a 404 or a 401, never a 500 nor another's data."""

from __future__ import annotations

from django.test import Client

from tests.helpers import assert_cross_tenant_404


def test_portal_requires_login(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    response = Client().get(org_a.url("traces/"))
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_other_organizations_pages_are_404(owner_a, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    for path in [
        "",
        "traces/",
        "traces/some-trace",
        "settings/members/",
        "settings/keys/",
        "settings/widget/",
        "settings/prices/",
        "prompts/",
    ]:
        assert owner_a.get(org_a.url(path)).status_code in (200, 404 if "some-trace" in path else 200)
        assert_cross_tenant_404(owner_a, org_b.url(path))
    assert_cross_tenant_404(owner_a, "/o/no-such-org/")


def test_a_key_of_one_org_on_anothers_portal_url_is_404(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")
    client.force_login(org_b.owner)
    assert client.get(org_b.url("traces/")).status_code == 404


def test_unknown_organization_segments_are_404(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org_a.owner)
    for path in ["/o/ORG-ALPHA/traces/", "/o/org_alpha/settings/members/", "/o/%20/"]:
        assert client.get(path).status_code == 404, path
    assert Client().get("/o/org_alpha/settings/members/").status_code == 404


def test_odd_keys_and_paths_never_500(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    body = '{"key": "pk_\\ud800", "events": []}'
    widget = Client().post("/api/v1/widget/events", body, content_type="text/plain", HTTP_ORIGIN="https://a.test")
    assert widget.status_code == 401
    client = Client()
    client.force_login(org_a.owner)
    assert client.get("/o/%00/").status_code == 404
    assert Client(HTTP_AUTHORIZATION="Bearer sk_\u00e9\u00e9").get("/api/v1/traces").status_code == 401
