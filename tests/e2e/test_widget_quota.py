"""Past the organization's spend cap the widget endpoint answers 429 quota_exceeded: the widget drops
those events instead of retrying them (a plain 429 is retried; see test_widget.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tenants.services import organization_quota_set
from tests.e2e.test_widget import Host, host, wait_js, widget_origin  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def test_quota_exceeded_is_not_retried(host: Host, committed_db: None) -> None:  # noqa: F811
    trace_id = host.trace()
    page = host.open(host.output(trace_id))
    posts: list[int] = []

    def counted(route: Any) -> None:
        response = route.fetch()
        posts.append(response.status)
        route.fulfill(response=response)

    host.context.route(f"{host.live.url}/api/v1/widget/events", counted)
    organization_quota_set(organization_id=host.org.organization.id, exceeded=True)
    try:
        page.evaluate(f"candor.signal('{trace_id}', 'retry')")
        wait_js(page, f"() => localStorage['candor:q:{host.org.public_key}'] === '[]'", timeout=30)
        # A retry would come within a second or two (backoff from 1 s); give it three to show up.
        page.wait_for_timeout(3000)
        assert posts == [429]
    finally:
        organization_quota_set(organization_id=host.org.organization.id, exceeded=False)
    assert host.api.get(f"/api/v1/traces/{trace_id}").json()["feedback"] == []
