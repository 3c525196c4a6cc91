"""Real Chromium: disabling an alert rule asks first (it resolves the rule's open alerts); dismissed, nothing
changes; accepted, the rule is disabled."""

from __future__ import annotations

from typing import Any

from evaluation.models import AlertRule
from evaluation.services.alerts import alert_rule_create
from feedback.models import Feature
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant, unique


def test_disabling_a_rule_asks_first(committed_db: None, live: Any, context: Any, org_a: Any) -> None:
    with in_tenant(org_a):
        feature = Feature.objects.create(key=unique("feat"), name="Rules")
        rule = alert_rule_create(feature=feature, name=unique("rule"), metric="error_rate", threshold=0.5)
    page = context.new_page()
    asked: list[str] = []
    try:
        log_in(page, live.url, org_a.owner.email)
        page.goto(f"{live.url}{org_a.url('alerts/')}")
        button = page.locator(f"form[action$='/alerts/rules/{rule.id}/toggle'] button")

        def dismiss(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        button.click()
        page.wait_for_timeout(200)
        with in_tenant(org_a):
            assert AlertRule.objects.get(id=rule.id).enabled
        assert asked == [f"Disable '{rule.name}' on {feature.key}? It stops evaluating."]  # it has no open alert
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            button.click()
        with in_tenant(org_a):
            assert not AlertRule.objects.get(id=rule.id).enabled
    finally:
        page.close()
        with in_tenant(org_a):
            Feature.objects.filter(id=feature.id).delete()
