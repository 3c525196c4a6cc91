"""Portal pages of billing. The organization's **Candor bill** (Settings > Plan and billing: plan,
Stripe subscription, monthly cap with its projection, ledger against reported) and its
customers' **LLM spend** (Spend: per customer against budget with trend and forecast, budgets,
per feature cost and ROI from evaluation's report selectors). Thin: forms validate, services
write, selectors read."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from billing import gateway
from billing.forecast import month_elapsed
from billing.models import OverAction
from billing.plans import PLANS
from billing.selectors import (
    bill_projection,
    budget_find,
    budgets_list,
    customer_detail,
    customers_spend,
    customers_spend_in,
    reconciliation,
    spend_months,
)
from billing.services.accounts import account_get, cap_set, checkout_start, notify_webhook_set, portal_start
from billing.services.budgets import budget_delete, budget_set
from billing.services.shared import utc_now
from evaluation.reports.selectors import ReportError, overview, window_from
from feedback.models import Feature
from tenants.access import Role, org_url, role_required


def _error_text(exc: ValidationError) -> str:
    return " ".join(m for messages_ in (exc.message_dict.values() if hasattr(exc, "error_dict") else [exc.messages])
                    for m in messages_)  # fmt: skip


# --- The Candor bill ---------------------------------------------------------------------------


class CapForm(forms.Form):
    monthly_cap_usd = forms.CharField(
        required=False,
        max_length=20,
        label="Monthly cap (USD)",
        help_text="Empty: no cap. At the cap, judges pause and ingestion answers 429.",
    )


class WebhookForm(forms.Form):
    notify_webhook_url = forms.CharField(
        required=False,
        max_length=500,
        label="Warning webhook URL",
        help_text="Cap and budget warnings are POSTed here as JSON (https).",
    )


@role_required(Role.ADMIN)
def plan(request: HttpRequest) -> HttpResponse:
    organization = request.tenant  # type: ignore[attr-defined]
    account = account_get(organization=organization)
    cap_form = CapForm(initial={"monthly_cap_usd": account.monthly_cap_usd or ""})
    hook_form = WebhookForm(initial={"notify_webhook_url": account.notify_webhook_url})
    if request.method == "POST":
        if not request.membership.at_least(Role.OWNER):  # type: ignore[attr-defined]
            messages.error(request, "Only an owner can change the spend cap or the warning webhook.")
            return redirect(org_url(request, "billing:plan"))
        if "notify_webhook_url" in request.POST:
            hook_form = WebhookForm(request.POST)
            if hook_form.is_valid():
                try:
                    notify_webhook_set(organization=organization, url=hook_form.cleaned_data["notify_webhook_url"])
                    messages.success(request, "Warning webhook saved.")
                    return redirect(org_url(request, "billing:plan"))
                except ValidationError as exc:
                    hook_form.add_error("notify_webhook_url", _error_text(exc))
        else:
            cap_form = CapForm(request.POST)
            if cap_form.is_valid():
                try:
                    change = cap_set(organization=organization, cap_usd=cap_form.cleaned_data["monthly_cap_usd"])
                    text = "Cap removed." if change.cap_usd is None else f"Cap set to ${change.cap_usd:,.2f}."
                    messages.success(request, f"{text} State: {change.state}.")
                    return redirect(org_url(request, "billing:plan"))
                except ValidationError as exc:
                    cap_form.add_error("monthly_cap_usd", _error_text(exc))
    # Back from Stripe Checkout: the plan changes when Stripe's subscription event arrives (usually before
    # the owner is back here; the page says so when it has not). The message goes with a redirect to the
    # plain page, so a reload (which the message itself suggests) does not say it again.
    returned = request.GET.get("checkout")
    if request.method == "GET" and returned in ("done", "canceled"):
        if returned == "done":
            messages.success(request, "Checkout complete. The plan below changes as soon as Stripe confirms the "
                                      "subscription (usually within seconds): reload if it has not yet.")  # fmt: skip
        else:
            messages.info(request, "Checkout canceled: nothing was bought, the plan is unchanged.")
        return redirect(org_url(request, "billing:plan"))
    now = utc_now()
    today = now.date()
    account.refresh_from_db()
    return TemplateResponse(request, "billing/plan.html", {
        "nav": "billing", "account": account, "projection": bill_projection(account=account, now=now),
        "plans": PLANS.values(), "stripe_configured": gateway.configured(), "cap_form": cap_form,
        "hook_form": hook_form, "ledger": reconciliation(organization=organization, since=today - timedelta(days=14)),
        "is_owner": request.membership.at_least(Role.OWNER),  # type: ignore[attr-defined]
    })  # fmt: skip


def _return_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(org_url(request, "billing:plan"))


@require_POST
@role_required(Role.OWNER)
def checkout(request: HttpRequest) -> HttpResponse:
    if not gateway.configured():
        messages.error(request, "Stripe is not configured on this installation: plans cannot be bought here.")
        return redirect(org_url(request, "billing:plan"))
    try:
        url = checkout_start(organization=request.tenant, plan=request.POST.get("plan", ""),  # type: ignore[attr-defined]
                             email=request.user.email, return_url=_return_url(request))  # type: ignore[union-attr]  # fmt: skip
    except (ValidationError, gateway.GatewayError) as exc:
        messages.error(request, _error_text(exc) if isinstance(exc, ValidationError) else str(exc))
        return redirect(org_url(request, "billing:plan"))
    return HttpResponseRedirect(url)


@require_POST
@role_required(Role.OWNER)
def manage(request: HttpRequest) -> HttpResponse:
    if not gateway.configured():
        messages.error(request, "Stripe is not configured on this installation.")
        return redirect(org_url(request, "billing:plan"))
    try:
        url = portal_start(organization=request.tenant, return_url=_return_url(request))  # type: ignore[attr-defined]
    except (ValidationError, gateway.GatewayError) as exc:
        messages.error(request, _error_text(exc) if isinstance(exc, ValidationError) else str(exc))
        return redirect(org_url(request, "billing:plan"))
    return HttpResponseRedirect(url)


# --- Customers' LLM spend -------------------------------------------------------------------------


def _month(asked: str) -> date | None:
    """?month=YYYY-MM as its first day; None when absent or not a month (the page shows this month)."""
    try:
        return datetime.strptime(asked, "%Y-%m").date() if asked else None
    except ValueError:
        return None


@role_required(Role.VIEWER)
def spend(request: HttpRequest) -> HttpResponse:
    now = utc_now()
    months = spend_months(now=now)
    this = months[0]
    asked = request.GET.get("month", "")
    month = _month(asked)
    error = None
    if asked and (month is None or month > this):
        error = f"Month {asked!r} not shown: use YYYY-MM, this month or one before it. This month is shown."
    elif month is not None and month != this:
        # A month that is over (the page had no way to last month's), empty if nothing was spent then.
        return TemplateResponse(request, "billing/spend.html", {
            "nav": "spend", "past": customers_spend_in(month=month), "month": month, "months": months,
        })  # fmt: skip
    rows = customers_spend(organization=request.tenant, now=now)  # type: ignore[attr-defined]
    return TemplateResponse(request, "billing/spend.html", {
        "nav": "spend", "customers": rows, "past": None, "month": this, "months": months, "elapsed": month_elapsed(now),
        "over": [c for c in rows if c.status == "over"], "error": error,
    })  # fmt: skip


@role_required(Role.VIEWER)
def customer(request: HttpRequest, customer_id: str) -> HttpResponse:
    if len(customer_id) > 200 or "\x00" in customer_id:
        raise Http404("No such customer.")
    month = _month(request.GET.get("month", ""))
    detail = customer_detail(organization=request.tenant, customer_id=customer_id, month=month)  # type: ignore[attr-defined]
    if detail is None:
        raise Http404("No such customer.")
    peak = max((c for _, c, _ in detail.days), default=Decimal(0)) or Decimal(1)
    return TemplateResponse(request, "billing/customer.html", {
        "nav": "spend", "detail": detail,
        "bars": [(d, c, n, float(c / peak) * 100) for d, c, n in detail.days],
    })  # fmt: skip


class BudgetForm(forms.Form):
    customer_id = forms.CharField(required=False, max_length=200, help_text="Empty: the default for every customer")
    feature = forms.CharField(required=False, max_length=100, help_text="Empty: every feature")
    model = forms.CharField(required=False, max_length=200, help_text="Empty: every model")
    daily_cap_usd = forms.CharField(required=False, max_length=20, label="Daily cap (USD)")
    monthly_cap_usd = forms.CharField(required=False, max_length=20, label="Monthly cap (USD)")
    thresholds = forms.CharField(required=False, max_length=40, initial="80, 90, 100",
                                 help_text="Percents that send a warning (email and webhook)")  # fmt: skip
    over_action = forms.ChoiceField(choices=OverAction.choices, label="When over")
    fallback_model = forms.CharField(required=False, max_length=200, help_text="For 'fall back': the cheaper model")


@role_required(Role.VIEWER)
def budgets(request: HttpRequest) -> HttpResponse:
    organization = request.tenant  # type: ignore[attr-defined]
    can_edit = request.membership.at_least(Role.PM)  # type: ignore[attr-defined]
    form = BudgetForm()
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Budgets need the pm role or higher.")
        form = BudgetForm(request.POST)
        if form.is_valid():
            try:
                budget = budget_set(organization=organization, **form.cleaned_data)
                messages.success(request, "Budget saved.")
                if budget.feature and not Feature.objects.filter(key=budget.feature).exists():
                    messages.warning(request, f"No trace names the feature '{budget.feature}' yet: the budget "
                                     "applies once traces and budget checks name it.")  # fmt: skip
                return redirect(org_url(request, "billing:budgets"))
            except ValidationError as exc:
                for name, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                    form.add_error(name if name in form.fields else None, " ".join(errors))
    return TemplateResponse(request, "billing/budgets.html", {
        "nav": "spend", "budgets": budgets_list(organization=organization), "form": form, "can_edit": can_edit,
    })  # fmt: skip


@require_POST
@role_required(Role.PM)
def budget_remove(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = budget_find(organization=request.tenant, budget_id=budget_id)  # type: ignore[attr-defined]
    if budget is None:
        raise Http404("No such budget.")
    budget_delete(budget=budget)
    messages.success(request, "Budget removed.")
    return redirect(org_url(request, "billing:budgets"))


@role_required(Role.VIEWER)
def features(request: HttpRequest) -> HttpResponse:
    """The last 30 days, or ?since=&until= (a bad window: the last 30 days, and a message saying why)."""
    default = (utc_now() - timedelta(days=29)).date().isoformat()
    error = ""
    try:
        window = window_from(since=request.GET.get("since", "") or default, until=request.GET.get("until", ""))
    except ReportError as exc:
        window, error = window_from(since=default), f"{exc.field}: {exc.message}"
    return TemplateResponse(request, "billing/features.html", {
        "nav": "spend", "window": window, "features": overview(window=window), "error": error,
    })  # fmt: skip


urlpatterns: list[URLPattern] = [
    path("billing/", plan, name="plan"),
    path("billing/checkout/", checkout, name="checkout"),
    path("billing/manage/", manage, name="manage"),
    path("spend/", spend, name="spend"),
    path("spend/customers/<text:customer_id>/", customer, name="customer"),
    path("spend/budgets/", budgets, name="budgets"),
    path("spend/budgets/<int:budget_id>/remove/", budget_remove, name="budget-remove"),
    path("spend/features/", features, name="features"),
]
