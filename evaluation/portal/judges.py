"""Portal pages of evaluation's judges: list with last-24h numbers, create from a built-in
template, edit (a new version, with the diff), test on a trace, enable at a sample rate, run
history, backfill with estimate / progress / cancel, and the provider keys page. Thin: forms
validate, services write, selectors read."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from evaluation.judges.sampling import MAX_DELAY_S, MAX_MULTIPLIER
from evaluation.judges.templates import BUILTIN_TEMPLATES
from evaluation.judges.versions import JudgeVersionSpec, version_diff
from evaluation.models import BackfillRun, Judge, ProviderKey
from evaluation.selectors import (
    backfill_progress,
    judge_awaiting_output,
    judge_failure_reasons,
    judge_find,
    judge_runs,
    judge_stats,
    judges_last_day,
)
from evaluation.services import backfill as backfills
from evaluation.services.judges import judge_create, judge_disable, judge_enable, judge_try, judge_version_create
from evaluation.services.provider_keys import provider_key_create, provider_key_delete
from evaluation.services.shared import JudgeServiceError, utc_now
from feedback.models import Feature, Trace
from tenants.access import Role, org_url, role_required

PROVIDERS = [("offline", "Offline (built-in heuristics, no network)"), ("openai", "OpenAI-compatible"),
             ("anthropic", "Anthropic")]  # fmt: skip
SCALES = [("binary", "Binary pass / fail"), ("ordinal", "Ordinal 1-5"), ("continuous", "Continuous 0-1")]


class JudgeVersionForm(forms.Form):
    kind = forms.ChoiceField(choices=[("llm", "LLM rubric"), ("code", "Code check")])
    provider = forms.ChoiceField(choices=PROVIDERS, required=False)
    model = forms.CharField(max_length=200, required=False, help_text="e.g. gpt-4o-mini; empty for offline")
    scale = forms.ChoiceField(choices=SCALES)
    prompt_template = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14}), required=False,
        help_text="Variables: {{ input }}, {{ output }}, {{ context }}, {{ reference }}, {{ metadata }}, "
        "{{ metadata.<key> }}, {{ feedback }}",
    )  # fmt: skip
    parameters = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False,
        help_text='JSON, e.g. {"temperature": 0}; a code check: {"check": "pii"} or '
        '{"check": "length", "max_chars": 800}',
    )  # fmt: skip

    def clean_parameters(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("parameters") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("a JSON object, e.g. {}")
        return value

    def spec(self) -> JudgeVersionSpec:
        data = self.cleaned_data
        if data["kind"] == "code":
            return JudgeVersionSpec(kind="code", scale=data["scale"], parameters=data["parameters"])
        return JudgeVersionSpec(
            kind="llm", scale=data["scale"], provider=data["provider"] or "offline", model=data["model"].strip(),
            prompt_template=data["prompt_template"], parameters=data["parameters"],
        )  # fmt: skip

    @classmethod
    def initial_from(cls, spec: JudgeVersionSpec) -> dict[str, Any]:
        return {
            "kind": spec.kind, "provider": spec.provider, "model": spec.model, "scale": spec.scale,
            "prompt_template": spec.prompt_template, "parameters": json.dumps(dict(spec.parameters), indent=1),
        }  # fmt: skip


class JudgeForm(JudgeVersionForm):
    provider = forms.ChoiceField(
        choices=PROVIDERS, required=False,
        # Re-rendered on change: the form says when the organization has no key for the provider yet.
        widget=forms.Select(attrs={"hx-trigger": "change", "hx-target": "#provider-warning", "hx-swap": "outerHTML"}),
    )  # fmt: skip

    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    feature = forms.ChoiceField(required=False, help_text="Only traces of this feature; empty for all")

    field_order = ["name", "description", "feature", "kind", "provider", "model", "scale", "prompt_template",
                   "parameters"]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keys = list(Feature.objects.values_list("key", flat=True))
        self.fields["feature"].choices = [("", "All features"), *((k, k) for k in keys)]  # type: ignore[attr-defined]


class EnableForm(forms.Form):
    sample_percent = forms.FloatField(min_value=0, max_value=100, initial=10, label="Sample %")
    all_thumbs_down = forms.BooleanField(required=False, initial=True, label="Plus every thumbs-down")
    edited_multiplier = forms.FloatField(
        min_value=1, max_value=MAX_MULTIPLIER, initial=1, label="Edited traces × (oversampling)"
    )
    delay_minutes = forms.FloatField(
        min_value=0, max_value=MAX_DELAY_S / 60, initial=0, label="Delay (minutes), so late feedback is seen first"
    )


# As long as a stored trace ID can be: a longer one names no trace, and says so rather than asking the database.
TRACE_ID_MAX = Trace._meta.get_field("trace_id").max_length or 200


class TestForm(forms.Form):
    trace_id = forms.CharField(
        max_length=TRACE_ID_MAX,
        error_messages={
            "required": "enter the ID of a trace to run the judge on",
            "max_length": "a trace ID has at most %(limit_value)d characters (this one has %(show_value)d)",
        },
    )

    def error(self) -> str:
        """What the result box says when the form is invalid: every problem, in words."""
        return "; ".join(str(message) for messages_ in self.errors.values() for message in messages_)


class BackfillForm(forms.Form):
    since = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until:
            if since.year < 1970 or until > date.today() + timedelta(days=1):
                raise forms.ValidationError("A backfill covers days from 1970 up to today.")
            if since > until:
                raise forms.ValidationError("The first day comes before the last.")
        return data


class ProviderKeyForm(forms.Form):
    provider = forms.ChoiceField(choices=[("openai", "OpenAI-compatible"), ("anthropic", "Anthropic")])
    name = forms.CharField(max_length=100, initial="default")
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Empty for the provider's own API; vLLM, Ollama, LiteLLM, Azure (https; a local or plain "
        "http endpoint only if its host is in JUDGE_ALLOWED_HOSTS)",
    )
    azure_api_version = forms.CharField(required=False, max_length=40, help_text="Azure OpenAI only")
    secret = forms.CharField(
        widget=forms.PasswordInput, label="API key", help_text="Stored encrypted; never shown again"
    )


def _judge_or_404(name: str) -> Judge:
    judge = judge_find(name)
    if judge is None:
        raise Http404("No such judge.")
    return judge


def _email(request: HttpRequest) -> str:
    return str(getattr(request.user, "email", ""))


def _can_edit(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.at_least(Role.PM)


def _add_error(form: forms.Form, exc: JudgeServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


# --- List and create ------------------------------------------------------------------------


def judges_list(request: HttpRequest) -> HttpResponse:
    rows = judges_last_day()
    return TemplateResponse(
        request, "evaluation/judges.html", {"nav": "judges", "rows": rows, "templates": BUILTIN_TEMPLATES.values()}
    )


def _free_name(base: str) -> str:
    """``base``, or the first of base-2, base-3... no judge has: the prefilled form submits as it is."""
    taken = set(Judge.objects.filter(name__startswith=base).values_list("name", flat=True))
    return next(name for name in (base, *(f"{base}-{n}" for n in range(2, len(taken) + 3))) if name not in taken)


def _provider_without_key(provider: str) -> str | None:
    """The provider's name when it needs a key and the organization has none yet (a judge may still
    be created before its key: its runs fail until one is added)."""
    if provider in ("", "offline") or provider not in dict(PROVIDERS):
        return None
    return None if ProviderKey.objects.filter(provider=provider).exists() else dict(PROVIDERS)[provider]


@role_required(Role.PM)
def judge_new(request: HttpRequest) -> HttpResponse:
    template = BUILTIN_TEMPLATES.get(request.GET.get("template", "helpfulness"))
    initial: dict[str, Any] = {}
    if template is not None:
        initial = JudgeVersionForm.initial_from(template.spec()) | {
            "name": _free_name(template.key.replace("_", "-")), "description": template.description,
        }  # fmt: skip
    if request.GET.get("provider") in dict(PROVIDERS):
        initial["provider"] = request.GET["provider"]
    provider = request.POST.get("provider") if request.method == "POST" else initial.get("provider", "")
    missing_key = _provider_without_key(str(provider or ""))
    if request.htmx and request.method == "GET":  # type: ignore[attr-defined]
        # The provider select asks again on change: the warning follows the choice before creating.
        return TemplateResponse(request, "evaluation/judge_new.html#provider-warning", {"missing_key": missing_key})
    form = JudgeForm(request.POST or None, initial=initial)
    form.fields["provider"].widget.attrs["hx-get"] = request.path
    if request.method == "POST" and form.is_valid():
        feature = Feature.objects.filter(key=form.cleaned_data["feature"]).first()
        try:
            judge = judge_create(
                name=form.cleaned_data["name"], spec=form.spec(), description=form.cleaned_data["description"],
                feature=feature, created_by=_email(request),
            )  # fmt: skip
        except JudgeServiceError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"Judge {judge.name} created (version 1). Test it on a trace, then enable it.")
            return redirect(org_url(request, "evaluation:judge-detail", judge.name))
    context = {
        "nav": "judges", "form": form, "templates": BUILTIN_TEMPLATES.values(), "chosen": template,
        "missing_key": missing_key,
    }  # fmt: skip
    return TemplateResponse(request, "evaluation/judge_new.html", context)


# --- One judge --------------------------------------------------------------------------------


def _detail_context(request: HttpRequest, judge: Judge, **forms_: Any) -> dict[str, Any]:
    versions = sorted(judge.versions.all(), key=lambda v: -v.number)
    history = []
    for newer, older in zip(versions, [*versions[1:], None], strict=True):
        diff = (
            version_diff(older.spec, newer.spec, old_label=f"v{older.number}", new_label=f"v{newer.number}")
            if older
            else None
        )
        history.append({"version": newer, "diff": diff})
    current = judge.current_version
    since = utc_now() - timedelta(hours=24)
    rule = getattr(current, "sampling", None) if current else None
    status = request.GET.get("status", "")
    return {
        "nav": "judges",
        "judge": judge,
        # Viewers and reviewers see the judge, not the PM's controls (their POSTs are refused anyway).
        "can_edit": _can_edit(request),
        "current": current,
        "rule": rule,
        "history": history,
        "stats": judge_stats(since=since, judge_ids=[judge.id]).get(judge.id),
        "failures": judge_failure_reasons(judge=judge, since=since),
        "awaiting_output": judge_awaiting_output(judge=judge),
        "runs": judge_runs(judge=judge, status=status),
        "status": status,
        "backfills": [backfill_progress(run) for run in BackfillRun.objects.filter(judge_version__judge=judge)[:5]],
        "edit_form": forms_.get("edit_form")
        or (JudgeVersionForm(initial=JudgeVersionForm.initial_from(current.spec)) if current else None),
        "enable_form": forms_.get("enable_form") or EnableForm(initial=_enable_initial(rule)),
        "test_form": forms_.get("test_form") or TestForm(),
        "backfill_form": forms_.get("backfill_form")
        or BackfillForm(initial={"since": (utc_now() - timedelta(days=7)).date(), "until": utc_now().date()}),
    }


def _enable_initial(rule: Any) -> dict[str, Any]:
    if rule is None:
        return {}
    return {
        "sample_percent": round(rule.base_rate * 100, 4),
        "all_thumbs_down": rule.base_rate * rule.thumbs_down_multiplier >= 1,
        "edited_multiplier": rule.edited_multiplier,
        "delay_minutes": rule.delay_s / 60,
    }


def judge_detail(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    context = _detail_context(request, judge)
    template = "evaluation/judge_detail.html#runs" if request.htmx else "evaluation/judge_detail.html"  # type: ignore[attr-defined]
    return TemplateResponse(request, template, context)


@require_POST
@role_required(Role.PM)
def judge_edit(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    form = JudgeVersionForm(request.POST)
    if form.is_valid():
        try:
            version, created = judge_version_create(judge=judge, spec=form.spec(), created_by=_email(request))
        except JudgeServiceError as exc:
            _add_error(form, exc)
        else:
            if created:
                messages.success(request, f"Saved as version {version.number}; sampling carries over to it.")
            else:
                messages.info(request, f"Nothing changed: this is version {version.number}.")
            return redirect(org_url(request, "evaluation:judge-detail", judge.name))
    judge = _judge_or_404(name)
    return TemplateResponse(request, "evaluation/judge_detail.html", _detail_context(request, judge, edit_form=form))


@require_POST
@role_required(Role.PM)
def judge_test(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    form = TestForm(request.POST)
    result, error = None, None
    if not form.is_valid():
        error = form.error()
    elif judge.current_version is None:
        error = "this judge has no version to run yet"
    else:
        try:
            result = judge_try(
                spec=judge.current_version.spec, trace_id=form.cleaned_data["trace_id"].strip(), judge=judge
            )
        except JudgeServiceError as exc:
            error = exc.message
    context = {"judge": judge, "result": result, "error": error, "trace_id": request.POST.get("trace_id", "")}
    if request.htmx:  # type: ignore[attr-defined]
        return TemplateResponse(request, "evaluation/judge_detail.html#test-result", context)
    return TemplateResponse(
        request, "evaluation/judge_detail.html", _detail_context(request, judge, test_form=form) | context
    )


@require_POST
@role_required(Role.PM)
def judge_enable_view(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    form = EnableForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            judge_enable(
                judge=judge, base_rate=data["sample_percent"] / 100, all_thumbs_down=data["all_thumbs_down"],
                edited_multiplier=data["edited_multiplier"], delay_s=data["delay_minutes"] * 60,
            )  # fmt: skip
        except JudgeServiceError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"{judge.name} is enabled; scores arrive as traces land.")
            return redirect(org_url(request, "evaluation:judge-detail", judge.name))
    return TemplateResponse(request, "evaluation/judge_detail.html", _detail_context(request, judge, enable_form=form))


@require_POST
@role_required(Role.PM)
def judge_disable_view(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    judge_disable(judge=judge)
    messages.success(request, f"{judge.name} is disabled; no new traces are sampled.")
    return redirect(org_url(request, "evaluation:judge-detail", judge.name))


# --- Backfill ---------------------------------------------------------------------------------


def _day_start(day: Any) -> datetime:
    from datetime import UTC

    return datetime.combine(day, time.min, tzinfo=UTC)


@require_POST
@role_required(Role.PM)
def backfill_estimate_view(request: HttpRequest, name: str) -> HttpResponse:
    judge = _judge_or_404(name)
    form = BackfillForm(request.POST)
    if form.is_valid():
        try:
            backfills.backfill_estimate(
                judge=judge, since=_day_start(form.cleaned_data["since"]),
                until=_day_start(form.cleaned_data["until"]) + timedelta(days=1), created_by=_email(request),
            )  # fmt: skip
        except JudgeServiceError as exc:
            _add_error(form, exc)
        else:
            return redirect(org_url(request, "evaluation:judge-detail", judge.name) + "#backfill")
    return TemplateResponse(
        request, "evaluation/judge_detail.html", _detail_context(request, judge, backfill_form=form)
    )


def _backfill_or_404(judge: Judge, run_id: int) -> BackfillRun:
    return get_object_or_404(BackfillRun, id=run_id, judge_version__judge=judge)


@require_POST
@role_required(Role.PM)
def backfill_start_view(request: HttpRequest, name: str, run_id: int) -> HttpResponse:
    judge = _judge_or_404(name)
    run = _backfill_or_404(judge, run_id)
    try:
        queued = backfills.backfill_start(run=run)
    except JudgeServiceError as exc:
        messages.error(request, exc.message)
    else:
        from evaluation.tasks import schedule_scores_run
        from tenants.schema import current_schema

        schedule_scores_run(current_schema())
        messages.success(request, f"Backfill started: {queued:,} traces queued.")
    return redirect(org_url(request, "evaluation:judge-detail", judge.name) + "#backfill")


@require_POST
@role_required(Role.PM)
def backfill_cancel_view(request: HttpRequest, name: str, run_id: int) -> HttpResponse:
    judge = _judge_or_404(name)
    run = _backfill_or_404(judge, run_id)
    dropped = backfills.backfill_cancel(run=run)
    messages.success(request, f"Backfill cancelled; {dropped:,} queued traces dropped.")
    return redirect(org_url(request, "evaluation:judge-detail", judge.name) + "#backfill")


def backfill_progress_view(request: HttpRequest, name: str, run_id: int) -> HttpResponse:
    judge = _judge_or_404(name)
    progress = backfill_progress(_backfill_or_404(judge, run_id))
    context = {"judge": judge, "b": progress, "can_edit": _can_edit(request)}
    return TemplateResponse(request, "evaluation/judge_detail.html#backfill-row", context)


# --- Provider keys ------------------------------------------------------------------------------


@role_required(Role.ADMIN)
def provider_keys(request: HttpRequest) -> HttpResponse:
    form = ProviderKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            key = provider_key_create(
                provider=data["provider"], name=data["name"], secret=data["secret"], base_url=data["base_url"],
                azure_api_version=data["azure_api_version"], created_by=_email(request),
            )  # fmt: skip
        except JudgeServiceError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"Key {key.name} saved ({key.hint}).")
            return redirect(org_url(request, "evaluation:provider-keys"))
    return TemplateResponse(
        request, "evaluation/provider_keys.html", {"nav": "judge-keys", "form": form, "keys": ProviderKey.objects.all()}
    )


@require_POST
@role_required(Role.ADMIN)
def provider_key_delete_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ProviderKey, id=key_id)
    provider_key_delete(key=key)
    messages.success(request, f"Key {key.name} removed.")
    return redirect(org_url(request, "evaluation:provider-keys"))


urlpatterns: list[URLPattern] = [
    path("judges/", judges_list, name="judge-list"),
    path("judges/new/", judge_new, name="judge-new"),
    path("judges/<str:name>/", judge_detail, name="judge-detail"),
    path("judges/<str:name>/edit/", judge_edit, name="judge-edit"),
    path("judges/<str:name>/test/", judge_test, name="judge-test"),
    path("judges/<str:name>/enable/", judge_enable_view, name="judge-enable"),
    path("judges/<str:name>/disable/", judge_disable_view, name="judge-disable"),
    path("judges/<str:name>/backfills/", backfill_estimate_view, name="backfill-estimate"),
    path("judges/<str:name>/backfills/<int:run_id>/start/", backfill_start_view, name="backfill-start"),
    path("judges/<str:name>/backfills/<int:run_id>/cancel/", backfill_cancel_view, name="backfill-cancel"),
    path("judges/<str:name>/backfills/<int:run_id>/", backfill_progress_view, name="backfill-progress"),
    path("settings/judge-keys/", provider_keys, name="provider-keys"),
    path("settings/judge-keys/<int:key_id>/delete/", provider_key_delete_view, name="provider-key-delete"),
]
