"""Customer budgets: validation of bad input, and the budget check's answer (default vs override,
day vs month, per feature and model, the estimated cost of the coming call, fallback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from billing.selectors import BudgetDecision, budget_check
from billing.services.budgets import budget_set
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import Org, in_tenant, unique


def check(org: Org, customer_id: str, **kwargs: object) -> BudgetDecision:
    with in_tenant(org):
        return budget_check(organization_id=org.organization.id, customer_id=customer_id, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"monthly_cap_usd": "-1"}, "monthly_cap_usd"),
        ({"monthly_cap_usd": "1e12"}, "monthly_cap_usd"),
        ({"monthly_cap_usd": "NaN"}, "monthly_cap_usd"),
        ({"monthly_cap_usd": "ten"}, "monthly_cap_usd"),
        ({"daily_cap_usd": "Infinity"}, "daily_cap_usd"),
        ({}, "monthly_cap_usd"),
        ({"daily_cap_usd": "50", "monthly_cap_usd": "10"}, "daily_cap_usd"),
        ({"monthly_cap_usd": "10", "over_action": "fallback"}, "fallback_model"),
        ({"monthly_cap_usd": "10", "over_action": "explode"}, "over_action"),
        ({"monthly_cap_usd": "10", "thresholds": [0, 50]}, "thresholds"),
        ({"monthly_cap_usd": "10", "thresholds": "80, lots"}, "thresholds"),
        ({"monthly_cap_usd": "10", "customer_id": "x" * 201}, "customer_id"),
    ],
)
def test_bad_budgets_are_refused_with_the_field_named(db: None, org_a: Org, fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        budget_set(organization=org_a.organization, **fields)
    assert field in caught.value.message_dict


def test_every_mistake_of_a_budget_is_said_at_once(db: None, org_a: Org) -> None:
    """The form said one mistake a submit: the amount, then the missing fallback model, then the thresholds."""
    with pytest.raises(ValidationError) as caught:
        budget_set(organization=org_a.organization, monthly_cap_usd="ten", over_action="fallback",
                   thresholds="80, lots", feature="Support Copilot")  # fmt: skip
    assert set(caught.value.message_dict) == {"monthly_cap_usd", "fallback_model", "thresholds", "feature"}
    # An amount not read is not also said to be missing.
    assert caught.value.message_dict["monthly_cap_usd"] == ["'ten' is not an amount in USD, e.g. 250 or 12.50."]
    client = Client()
    client.force_login(org_a.owner)
    page = client.post(org_a.url("spend/budgets/"), {"monthly_cap_usd": "ten", "over_action": "fallback",
                                                     "thresholds": "80, lots"}).content.decode()  # fmt: skip
    for said in ("is not an amount in USD", "Name the cheaper model", "Give whole percents"):
        assert said in page, said


def test_no_budget_allows(db: None, org_a: Org) -> None:
    decision = check(org_a, unique("c"))
    assert decision.allowed and decision.action == "allow" and decision.cap_usd is None


def test_an_unknown_customer_gets_the_default_and_an_override_wins(db: None, org_a: Org) -> None:
    big, small = unique("big"), unique("small")
    budget_set(organization=org_a.organization, monthly_cap_usd="10")
    budget_set(organization=org_a.organization, customer_id=big, monthly_cap_usd="100")
    send_traces(org_a, spend_traces(big, ["30"]) + spend_traces(small, ["3"]))
    assert check(org_a, big).allowed  # its own $100 applies, not the $10 default
    unknown = check(org_a, unique("never-seen"))
    assert unknown.allowed and unknown.cap_usd == Decimal("10") and unknown.spent_usd == 0
    decision = check(org_a, small)
    assert (decision.spent_usd, decision.cap_usd, decision.remaining_usd) == (Decimal("3"), Decimal("10"), Decimal("7"))
    assert decision.period == "month" and decision.action == "allow"
    next_month = datetime.now(UTC).replace(day=28) + timedelta(days=4)
    first_of_next = next_month.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert decision.period_end == first_of_next


def test_thresholds_estimate_and_the_action_when_over(db: None, org_a: Org) -> None:
    customer = unique("c")
    budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="10", thresholds=[50, 100],
               over_action="fallback", fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(customer, ["4"]))
    assert check(org_a, customer).action == "allow"
    assert check(org_a, customer, estimated_cost_usd=Decimal("1")).action == "warn"  # 5 of 10: the 50% threshold
    over = check(org_a, customer, estimated_cost_usd=Decimal("6.01"))
    assert not over.allowed and over.action == "fallback" and over.fallback_model == "gpt-4o-mini"
    send_traces(org_a, spend_traces(customer, ["6"]))  # exactly at the cap: no more calls
    at_cap = check(org_a, customer)
    assert (at_cap.allowed, at_cap.action, at_cap.remaining_usd) == (False, "fallback", Decimal("0"))


def test_the_most_restrictive_of_day_month_feature_and_model_decides(db: None, org_a: Org) -> None:
    customer = unique("c")
    budget_set(organization=org_a.organization, customer_id=customer, daily_cap_usd="15", monthly_cap_usd="100")
    budget_set(organization=org_a.organization, customer_id=customer, feature="summarize", monthly_cap_usd="2")
    budget_set(organization=org_a.organization, customer_id=customer, model="gpt-4o", monthly_cap_usd="50",
               over_action="fallback", fallback_model="gpt-4o-mini")  # fmt: skip
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12).isoformat()
    send_traces(org_a, spend_traces(customer, ["3"], feature="summarize", model="gpt-4o-mini"))
    # Yesterday counts for the month, not for today (unless this runs on the 1st: then it is last month).
    send_traces(org_a, spend_traces(customer, ["40"], model="gpt-4o", started_at=yesterday))
    summarize = check(org_a, customer, feature="summarize")
    assert (summarize.allowed, summarize.action, summarize.cap_usd) == (False, "block", Decimal("2"))
    other = check(org_a, customer, feature="support-copilot", model="gpt-4o-mini")
    assert other.allowed and other.period == "day" and other.spent_usd == Decimal("3")
    assert check(org_a, customer, feature="support-copilot", estimated_cost_usd=Decimal("12.5")).action == "block"
    if datetime.now(UTC).day > 1:
        gpt4o = check(org_a, customer, feature="support-copilot", model="gpt-4o", estimated_cost_usd=Decimal("11"))
        assert (gpt4o.action, gpt4o.fallback_model, gpt4o.spent_usd) == ("fallback", "gpt-4o-mini", Decimal("40"))


def test_a_budget_is_replaced_not_duplicated(db: None, org_a: Org) -> None:
    customer = unique("c")
    first = budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="10")
    second = budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="20")
    assert first.id == second.id and second.monthly_cap_usd == Decimal("20")
    assert check(org_a, customer).cap_usd == Decimal("20")


def test_a_fallback_to_the_model_already_in_use_blocks_and_says_why(db: None, org_a: Org) -> None:
    customer = unique("c")
    budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="5", over_action="fallback",
               fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(customer, ["3", "2.5"], model="gpt-4o"))  # $5.50 of $5
    # Asked about the fallback model itself (as typed, or in another case): falling back changes nothing.
    for model in ("gpt-4o-mini", "GPT-4o-Mini", " gpt-4o-mini "):
        same = check(org_a, customer, feature="support-copilot", model=model, estimated_cost_usd=Decimal("0.01"))
        assert (same.allowed, same.action, same.fallback_model) == (False, "block", None), model
        assert (same.spent_usd, same.cap_usd, same.remaining_usd) == (Decimal("5.5"), Decimal("5"), Decimal("0"))
        assert same.reason == (
            "$5.50 spent of the monthly cap of $5.00; the budget falls back to gpt-4o-mini, the model this call "
            "already uses, so falling back would not lower the spend: blocked"
        )
    # Another model, or none named: the fallback stands, as before.
    other = check(org_a, customer, model="gpt-4o", estimated_cost_usd=Decimal("0.01"))
    assert (other.allowed, other.action, other.fallback_model) == (False, "fallback", "gpt-4o-mini")
    assert other.reason == "$5.50 spent of the monthly cap of $5.00"
    unnamed = check(org_a, customer)
    assert (unnamed.action, unnamed.fallback_model) == ("fallback", "gpt-4o-mini")
    # Under the cap the fallback model is allowed like any other.
    fresh = unique("c")
    budget_set(organization=org_a.organization, customer_id=fresh, monthly_cap_usd="5", over_action="fallback",
               fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(fresh, ["1"]))
    under = check(org_a, fresh, model="gpt-4o-mini", estimated_cost_usd=Decimal("0.01"))
    assert (under.allowed, under.action, under.reason) == (True, "allow", None)
    nearly = check(org_a, fresh, model="gpt-4o-mini", estimated_cost_usd=Decimal("4.5"))
    assert (nearly.action, nearly.reason) == ("block", "$1.00 spent of the monthly cap of $5.00; this call's "
            "estimated $4.50 would pass it; the budget falls back to gpt-4o-mini, the model this call already uses, "
            "so falling back would not lower the spend: blocked")  # fmt: skip


def test_a_daily_fallback_to_the_model_in_use_blocks_for_the_day(db: None, org_a: Org) -> None:
    customer = unique("c")
    budget_set(organization=org_a.organization, customer_id=customer, daily_cap_usd="1", monthly_cap_usd="100",
               over_action="fallback", fallback_model="gpt-4o-mini")  # fmt: skip
    send_traces(org_a, spend_traces(customer, ["0.95"]))
    warned = check(org_a, customer, model="gpt-4o-mini")
    assert (warned.action, warned.reason) == ("warn", "95% of the daily cap of $1.00 with this call (warning from 80%)")
    day = check(org_a, customer, model="gpt-4o-mini", estimated_cost_usd=Decimal("0.1"))
    assert (day.allowed, day.action, day.period, day.fallback_model) == (False, "block", "day", None)
    assert day.reason is not None and "$0.95 spent of the daily cap of $1.00" in day.reason
