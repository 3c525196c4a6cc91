"""Candor's plans, as configuration: what each includes and what an extra unit costs.

The organization's **Candor bill** is projected from these numbers and Candor's own usage
ledger (Stripe's metering is eventually consistent; the ledger is the source of truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

METERS = ("events", "judge_runs")


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    monthly_usd: Decimal
    included: dict[str, int]  # meter -> units included each month
    unit_usd: dict[str, Decimal]  # meter -> price of one unit past the included ones

    def bill(self, usage: dict[str, int]) -> Decimal:
        """The month's bill for this usage: the plan's price plus every unit past the included ones."""
        return self.monthly_usd + sum(
            (self.unit_usd[m] * max(0, usage.get(m, 0) - self.included[m]) for m in METERS), Decimal(0)
        )

    @property
    def stripe_price(self) -> str:
        """The Stripe Price ID of the plan's subscription (settings.STRIPE_PRICES), "" when unset."""
        return str(settings.STRIPE_PRICES.get(self.key, ""))


PLANS: dict[str, Plan] = {
    "free": Plan(
        "free", "Free", Decimal("0"),
        included={"events": 50_000, "judge_runs": 1_000},
        unit_usd={"events": Decimal("0.0002"), "judge_runs": Decimal("0.004")},
    ),
    "team": Plan(
        "team", "Team", Decimal("99"),
        included={"events": 1_000_000, "judge_runs": 20_000},
        unit_usd={"events": Decimal("0.0001"), "judge_runs": Decimal("0.003")},
    ),
    "business": Plan(
        "business", "Business", Decimal("499"),
        included={"events": 10_000_000, "judge_runs": 200_000},
        unit_usd={"events": Decimal("0.00005"), "judge_runs": Decimal("0.002")},
    ),
}  # fmt: skip
DEFAULT_PLAN = "free"


def plan_of(key: str) -> Plan:
    return PLANS.get(key, PLANS[DEFAULT_PLAN])
