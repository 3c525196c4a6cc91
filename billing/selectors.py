"""Billing's reads: the Candor bill and its projection, the ledger against what Stripe was told,
and customers' LLM spend against their budgets (the budget check of API.md among them).

Billing's tables are shared by every organization: each read here filters on the organization.
Spend counters live in the organization's own schema (feedback.models.SpendCounter).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Q, Sum

from billing.forecast import MonthElapsed, month_elapsed, month_forecast, rate_days
from billing.models import BillingAccount, CustomerBudget, UsageLedger, UsageReport
from billing.plans import METERS, Plan, plan_of
from billing.services.shared import midnight, month_end, month_start, utc_now
from tenants.schema import current_schema, in_schema, raw_connection
from tenants.selectors import Organization

# --- The Candor bill ------------------------------------------------------------------------


@dataclass(frozen=True)
class BillProjection:
    plan: Plan
    month: date
    usage: dict[str, int]
    projected_usage: dict[str, int]
    bill_to_date_usd: Decimal
    projected_usd: Decimal
    cap_usd: Decimal | None
    elapsed: MonthElapsed

    @property
    def days_in_month(self) -> int:
        return self.elapsed.days_in_month


def month_usage(*, organization_id: int, month: date) -> dict[str, int]:
    return _usage(organization_id=organization_id, month=month, today=month)[0]


def _usage(*, organization_id: int, month: date, today: date) -> tuple[dict[str, int], dict[str, int]]:
    """Units per meter counted in the month, and on ``today`` alone: one query."""
    totals, on_today = dict.fromkeys(METERS, 0), dict.fromkeys(METERS, 0)
    rows = (
        UsageLedger.objects.filter(organization_id=organization_id, day__gte=month, day__lt=month_end(month))
        .values("meter")
        .annotate(total=Sum("quantity"), today=Sum("quantity", filter=Q(day=today)))
    )
    for row in rows:
        totals[row["meter"]] = int(row["total"] or 0)
        on_today[row["meter"]] = int(row["today"] or 0)
    return totals, on_today


def bill_projection(*, account: BillingAccount, now: datetime | None = None) -> BillProjection:
    """This month's bill from the ledger so far, and its projection to the month's end: per meter,
    the usage so far plus the rest of the month at the average of the completed days
    (billing.forecast.month_forecast says why, and what happens on the 1st)."""
    now = now or utc_now()
    today = now.date()
    month = month_start(today)
    plan = plan_of(account.plan)
    usage, usage_today = _usage(organization_id=account.organization_id, month=month, today=today)
    elapsed = month_elapsed(now)
    projected = {
        meter: round(month_forecast(month_to_date=Decimal(quantity), today=Decimal(usage_today[meter]),
                                    elapsed=elapsed))
        for meter, quantity in usage.items()
    }  # fmt: skip
    return BillProjection(
        plan=plan, month=month, usage=usage, projected_usage=projected,
        bill_to_date_usd=plan.bill(usage).quantize(Decimal("0.01")),
        projected_usd=plan.bill(projected).quantize(Decimal("0.01")),
        cap_usd=account.monthly_cap_usd, elapsed=elapsed,
    )  # fmt: skip


@dataclass(frozen=True)
class ReconciliationRow:
    day: date
    meter: str
    ledger: int
    reported: int
    sent: int
    unsent_reports: int
    last_error: str

    @property
    def behind(self) -> int:
        return self.ledger - self.sent


def reconciliation(*, organization: Organization, since: date) -> list[ReconciliationRow]:
    """Ledger against reported, per day and meter: what Candor counted, what it wrote up, what Stripe took."""
    ledger = {
        (r.day, r.meter): r.quantity for r in UsageLedger.objects.filter(organization=organization, day__gte=since)
    }
    reported: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    errors: dict[tuple[date, str], str] = {}
    for r in UsageReport.objects.filter(organization=organization, day__gte=since).order_by("id"):
        entry = reported[(r.day, r.meter)]
        entry[0] += r.quantity
        entry[1] += r.quantity if r.sent_at else 0
        entry[2] += 0 if r.sent_at else 1
        if r.last_error:
            errors[(r.day, r.meter)] = r.last_error
    keys = sorted(set(ledger) | set(reported), reverse=True)
    rows = []
    for day, meter in keys:
        total, sent, unsent = reported[(day, meter)]
        rows.append(ReconciliationRow(day, meter, ledger.get((day, meter), 0), total, sent, unsent,
                                      errors.get((day, meter), "")))  # fmt: skip
    return rows


# --- Customer budgets (LLM spend) -----------------------------------------------------------


@dataclass(frozen=True)
class BudgetRule:
    id: int
    customer_id: str
    feature: str
    model: str
    daily_cap_usd: Decimal | None
    monthly_cap_usd: Decimal | None
    thresholds: tuple[int, ...]
    over_action: str
    fallback_model: str

    @property
    def scope(self) -> tuple[str, str]:
        return (self.feature, self.model)


# One round trip: the budgets that may apply, and (only when there are some) the customer's spend
# this month by feature and model, today's and the month's. A prepared statement naming the
# organization's schema outright (tenants.schema.in_schema): no search_path to set first.
_CHECK = """
WITH b AS (
    SELECT id, customer_id, feature, model, daily_cap_usd, monthly_cap_usd, thresholds::text AS thresholds,
           over_action, fallback_model
    FROM public.billing_customerbudget
    WHERE organization_id = %(organization)s AND customer_id IN (%(customer)s, '')
      AND feature IN (%(feature)s, '') AND model IN (%(model)s, '')
)
SELECT true, id, customer_id, feature, model, daily_cap_usd, monthly_cap_usd, thresholds, over_action, fallback_model
FROM b
UNION ALL
SELECT false, NULL, NULL, f.key, c.model, coalesce(sum(c.cost_usd) FILTER (WHERE c.day = %(today)s), 0),
       sum(c.cost_usd), NULL, NULL, NULL
FROM __SCHEMA__.feedback_spendcounter c JOIN __SCHEMA__.feedback_feature f ON f.id = c.feature_id
WHERE EXISTS (SELECT 1 FROM b) AND c.customer_id = %(customer)s AND c.day >= %(month)s AND c.day <= %(today)s
GROUP BY f.key, c.model
"""


def _percents(raw: Any) -> tuple[int, ...]:
    # jsonb comes back as text on Django's connection (it registers no JSON loader).
    values = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(int(v) for v in values or ())


def applicable_budgets(rows: list[BudgetRule], customer_id: str) -> list[BudgetRule]:
    """Per scope (feature, model), the customer's own budget, else the organization's default."""
    chosen: dict[tuple[str, str], BudgetRule] = {}
    for rule in sorted(rows, key=lambda r: r.customer_id == customer_id):  # overrides last: they win
        chosen[rule.scope] = rule
    return list(chosen.values())


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool
    action: str  # allow / warn / block / fallback
    spent_usd: Decimal | None
    cap_usd: Decimal | None
    remaining_usd: Decimal | None
    period: str | None  # "day" / "month"
    period_end: datetime | None
    fallback_model: str | None
    budget: BudgetRule | None = None
    checked: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # why not a plain allow (None when it is one)

    def as_dict(self) -> dict[str, Any]:
        def money(v: Decimal | None) -> float | None:
            return None if v is None else round(float(v), 8)

        return {
            "allowed": self.allowed,
            "spent_usd": money(self.spent_usd),
            "cap_usd": money(self.cap_usd),
            "remaining_usd": money(self.remaining_usd),
            "period": self.period,
            "period_end": self.period_end.isoformat().replace("+00:00", "Z") if self.period_end else None,
            "action": self.action,
            "fallback_model": self.fallback_model,
            "reason": self.reason,
            "budget": (
                {"customer_id": self.budget.customer_id or None, "feature": self.budget.feature or None,
                 "model": self.budget.model or None}
                if self.budget else None
            ),
        }  # fmt: skip


_RANK = {"allow": 0, "warn": 1, "block": 2, "fallback": 2}


def same_model(a: str, b: str) -> bool:
    """Do two model names name the same model (as people type them: case and outer spaces aside)?"""
    return a.strip().casefold() == b.strip().casefold()


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount.normalize():f}"


def _reason(action: str, *, period: str, spent: Decimal, cap: Decimal, estimate: Decimal, warn_at: int,
            share: Decimal, fallback_to_itself: str) -> str | None:  # fmt: skip
    cap_name = "daily" if period == "day" else "monthly"
    if action == "allow":
        return None
    if action == "warn":
        return f"{share:.0f}% of the {cap_name} cap of {_usd(cap)} with this call (warning from {warn_at}%)"
    over = f"{_usd(spent)} spent of the {cap_name} cap of {_usd(cap)}"
    if spent < cap:
        over += f"; this call's estimated {_usd(estimate)} would pass it"
    if fallback_to_itself:
        return (f"{over}; the budget falls back to {fallback_to_itself}, the model this call already uses, "
                "so falling back would not lower the spend: blocked")  # fmt: skip
    return over


def budget_check(
    *,
    organization_id: int,
    customer_id: str,
    feature: str = "",
    model: str = "",
    estimated_cost_usd: Decimal = Decimal(0),
    today: date | None = None,
    schema_name: str | None = None,
) -> BudgetDecision:
    """May this customer make one more LLM call (costing about ``estimated_cost_usd``)?

    Consistency: the spend counters are written in the same transaction as the traces, so a
    check sees every trace whose ingest has committed, and none that has not (a batch in
    flight is at most its own size behind). Checks reserve nothing: N concurrent checks that
    each fit the remaining budget are all allowed, so spend may pass a cap by up to the calls
    already allowed and still running. Reads the organization's schema (``schema_name``, else the
    active one), in one query (budgets and counters together). With no budget applying, the call
    is allowed.

    A budget that falls back answers ``block`` instead when its fallback model is the ``model`` the
    call already uses (same_model: case and outer spaces aside): falling back to it would not lower
    the spend, so the answer is what the budget would give with no fallback set, and ``reason`` says so.
    """
    today = today or utc_now().date()
    month = month_start(today)
    params = {"organization": organization_id, "customer": customer_id, "feature": feature, "model": model,
              "today": today, "month": month}  # fmt: skip
    with raw_connection() as raw, psycopg.Cursor(raw) as cursor:
        cursor.execute(in_schema(_CHECK, schema_name or current_schema()), params, prepare=True)
        found = cursor.fetchall()
    rows = [BudgetRule(i, c, f, m, d, mo, _percents(th), a, fb) for budget, i, c, f, m, d, mo, th, a, fb in found
            if budget]  # fmt: skip
    spend = [(f, m, d, mo) for budget, _, _, f, m, d, mo, *_ in found if not budget]
    rules = applicable_budgets(rows, customer_id)
    if not rules:
        return BudgetDecision(True, "allow", None, None, None, None, None, None)
    decisions: list[tuple[int, Decimal, BudgetDecision]] = []
    for rule in rules:
        spent_day = sum((d for f, m, d, _ in spend if rule.feature in ("", f) and rule.model in ("", m)), Decimal(0))
        spent_month = sum(
            (mo for f, m, _, mo in spend if rule.feature in ("", f) and rule.model in ("", m)), Decimal(0)
        )
        for period, cap, spent, end in (
            ("day", rule.daily_cap_usd, spent_day, midnight(today + timedelta(days=1))),
            ("month", rule.monthly_cap_usd, spent_month, midnight(month_end(today))),
        ):
            if cap is None:
                continue
            over = spent >= cap or spent + estimated_cost_usd > cap
            share = (spent + estimated_cost_usd) / cap * 100 if cap else Decimal(100)
            warn_at = min(rule.thresholds) if rule.thresholds else 80
            action = rule.over_action if over else "warn" if share >= warn_at else "allow"
            # No model to fall back to, or the one the call already uses (following the answer would keep
            # spending past the cap): the budget blocks, as it would with no fallback set.
            itself = action == "fallback" and bool(model) and same_model(rule.fallback_model, model)
            if action == "fallback" and (itself or not rule.fallback_model):
                action = "block"
            remaining = max(cap - spent, Decimal(0))
            decision = BudgetDecision(
                allowed=action in ("allow", "warn"), action=action, spent_usd=spent, cap_usd=cap,
                remaining_usd=remaining, period=period, period_end=end,
                fallback_model=rule.fallback_model if action == "fallback" else None, budget=rule,
                reason=_reason(action, period=period, spent=spent, cap=cap, estimate=estimated_cost_usd,
                               warn_at=warn_at, share=share, fallback_to_itself=rule.fallback_model if itself else ""),
            )  # fmt: skip
            decisions.append((_RANK[action], -remaining, decision))
    if not decisions:
        return BudgetDecision(True, "allow", None, None, None, None, None, None)
    decisions.sort(key=lambda d: (d[0], d[1]))
    return decisions[-1][2]  # the most restrictive: worst action, then least remaining


# --- Spend pages --------------------------------------------------------------------------------


@dataclass
class CustomerSpend:
    customer_id: str
    month_usd: Decimal
    today_usd: Decimal
    traces: int
    forecast_usd: Decimal
    cap_usd: Decimal | None = None
    daily_cap_usd: Decimal | None = None
    budget_customer: str | None = None  # whose budget applies: the customer's own or "" (the default)

    @property
    def share(self) -> float | None:
        if self.cap_usd is None:
            return None
        return float(self.month_usd / self.cap_usd) if self.cap_usd else math.inf

    @property
    def forecast_over(self) -> bool:
        """Still under the monthly budget, but the month-end forecast is past it."""
        return self.cap_usd is not None and self.month_usd < self.cap_usd < self.forecast_usd

    @property
    def status(self) -> str:
        """The spend page's word: "over" and "warn" are the budget check's (spend so far against the
        cap); "forecast over" says the month is on course to exceed a cap it has not reached yet."""
        share = self.share
        if share is None:
            return "no budget"
        if share >= 1:
            return "over"
        if self.forecast_over:
            return "forecast over"
        return "warn" if share >= 0.8 else "ok"


def _forecast(month_usd: Decimal, today_usd: Decimal, elapsed: MonthElapsed, first: date | None = None) -> Decimal:
    """``first``: the first day of the month with spend (a customer that began mid-month)."""
    first_day = first.day if first is not None else None
    return month_forecast(month_to_date=month_usd, today=today_usd, elapsed=elapsed, first_day=first_day).quantize(
        Decimal("0.0001")
    )


def customers_spend(
    *, organization: Organization, now: datetime | None = None, limit: int = 200
) -> list[CustomerSpend]:
    """Every customer with LLM spend this month, against the whole-scope budget that applies to it;
    its forecast is billing.forecast.month_forecast's (the completed days' rate, today not extrapolated).
    Then the customers given a budget of their own who have spent nothing this month, at zero."""
    now = now or utc_now()
    today, elapsed = now.date(), month_elapsed(now)
    month = month_start(today)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id, sum(cost_usd), coalesce(sum(cost_usd) FILTER (WHERE day = %s), 0), sum(traces), "
            "min(day) FILTER (WHERE cost_usd > 0) "
            "FROM feedback_spendcounter WHERE day >= %s AND day <= %s AND customer_id <> '' "
            "GROUP BY customer_id ORDER BY 2 DESC LIMIT %s",
            [today, month, today, limit],
        )
        rows = cursor.fetchall()
    budgets = {b.customer_id: b for b in CustomerBudget.objects.filter(organization=organization, feature="", model="")}
    out = []
    for customer_id, month_usd, today_usd, traces, first in rows:
        budget = budgets.get(customer_id) or budgets.get("")
        out.append(
            CustomerSpend(
                customer_id, month_usd, today_usd, int(traces), _forecast(month_usd, today_usd, elapsed, first),
                cap_usd=budget.monthly_cap_usd if budget else None,
                daily_cap_usd=budget.daily_cap_usd if budget else None,
                budget_customer=budget.customer_id if budget else None,
            )
        )  # fmt: skip
    listed = {row.customer_id for row in out}
    for customer_id, budget in sorted(budgets.items()):
        if customer_id and customer_id not in listed and len(out) < limit:
            out.append(CustomerSpend(customer_id, Decimal(0), Decimal(0), 0, Decimal(0), cap_usd=budget.monthly_cap_usd,
                                     daily_cap_usd=budget.daily_cap_usd, budget_customer=customer_id))  # fmt: skip
    return out


@dataclass(frozen=True)
class PastMonthSpend:
    customer_id: str
    month_usd: Decimal
    traces: int


def customers_spend_in(*, month: date, limit: int = 200) -> list[PastMonthSpend]:
    """Every customer's LLM spend over a past ``month`` (its first day), largest first: what the spend page shows
    for a month that is over (no forecast, no budget state: those are the current month's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id, sum(cost_usd), sum(traces) FROM feedback_spendcounter "
            "WHERE day >= %s AND day < %s AND customer_id <> '' GROUP BY customer_id ORDER BY 2 DESC, 1 LIMIT %s",
            [month, month_end(month), limit],
        )
        return [PastMonthSpend(customer_id, usd, int(traces)) for customer_id, usd, traces in cursor.fetchall()]


def spend_months(*, now: datetime | None = None, back: int = 12) -> list[date]:
    """The first days of the months, newest first, from this one back to the earliest with customer spend (at most
    ``back`` months before this one): what the spend page's month links offer."""
    this = month_start((now or utc_now()).date())
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(day) FROM feedback_spendcounter WHERE customer_id <> '' AND cost_usd > 0")
        (earliest,) = cursor.fetchone()
    months = [this]
    while earliest is not None and len(months) <= back and months[-1] > month_start(earliest):
        months.append(month_start(months[-1] - timedelta(days=1)))
    return months


@dataclass(frozen=True)
class CustomerDetail:
    customer_id: str
    days: list[tuple[date, Decimal, int]]  # every day of the month so far: spend, traces
    by_feature: list[tuple[str, str, Decimal, int]]  # feature, model, month spend, traces
    month_usd: Decimal
    forecast_usd: Decimal
    budgets: list[CustomerBudget]
    check: BudgetDecision
    elapsed: MonthElapsed  # what the forecast had to go on
    rate_days: int  # the completed days its rate averages (from the customer's first day of spend); 0: today's
    month: date | None = None  # a past month shown (its first day); None: this month


def customer_detail(
    *, organization: Organization, customer_id: str, now: datetime | None = None, month: date | None = None
) -> CustomerDetail | None:
    """One customer's spend this month, with its forecast to the month's end (billing.forecast.month_forecast);
    or over a past ``month`` (its first day), whose forecast is what it spent. None when the organization has no
    spend counted for it and no budget of its own (a customer given a budget before its first trace has spent
    nothing yet, against that budget)."""
    now = now or utc_now()
    today, elapsed = now.date(), month_elapsed(now)
    past = month is not None and month < month_start(today)
    if month is None or not past:
        month = month_start(today)
    last = month_end(month) - timedelta(days=1) if past else today
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM feedback_spendcounter WHERE customer_id = %s LIMIT 1", [customer_id])
        if (
            cursor.fetchone() is None
            and not CustomerBudget.objects.filter(organization=organization, customer_id=customer_id).exists()
        ):
            return None
        cursor.execute(
            "SELECT day, sum(cost_usd), sum(traces) FROM feedback_spendcounter "
            "WHERE customer_id = %s AND day >= %s AND day <= %s GROUP BY day",
            [customer_id, month, last],
        )
        per_day = {day: (cost, int(n)) for day, cost, n in cursor.fetchall()}
        cursor.execute(
            "SELECT f.key, c.model, sum(c.cost_usd), sum(c.traces) FROM feedback_spendcounter c "
            "JOIN feedback_feature f ON f.id = c.feature_id "
            "WHERE c.customer_id = %s AND c.day >= %s AND c.day <= %s GROUP BY 1, 2 ORDER BY 3 DESC",
            [customer_id, month, last],
        )
        by_feature = [(f, m, cost, int(n)) for f, m, cost, n in cursor.fetchall()]
    days = [
        (d, *per_day.get(d, (Decimal(0), 0)))
        for d in (month + timedelta(days=i) for i in range((last - month).days + 1))
    ]
    month_usd = sum((cost for _, cost, _ in days), Decimal(0))
    budgets = list(
        CustomerBudget.objects.filter(organization=organization, customer_id__in=[customer_id, ""]).order_by(
            "-customer_id", "feature", "model"
        )
    )
    check = budget_check(organization_id=organization.id, customer_id=customer_id, today=today)
    first = next((d for d, cost, _ in days if cost > 0), None)
    forecast = month_usd if past else _forecast(month_usd, days[-1][1], elapsed, first)
    basis = rate_days(elapsed, first.day if first is not None else None)
    return CustomerDetail(customer_id, days, by_feature, month_usd, forecast, budgets, check, elapsed, basis,
                          month=month if past else None)  # fmt: skip


def budgets_list(*, organization: Organization) -> list[CustomerBudget]:
    return list(CustomerBudget.objects.filter(organization=organization))


def budget_find(*, organization: Organization, budget_id: int) -> CustomerBudget | None:
    return CustomerBudget.objects.filter(organization=organization, id=budget_id).first()
