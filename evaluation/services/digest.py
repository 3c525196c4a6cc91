"""The weekly digest: per feature what moved (this week against the one before) and its likely cause
(the latest drift snapshot's top segment), the most-edited outputs, experiments ready to call, and
alerts opened and resolved; rendered as a plain-language email to each PM of the organization."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.template.loader import render_to_string

from evaluation.models import Alert, AlertState, DigestDelivery, DriftSnapshot
from evaluation.reports.selectors import Window, overview
from evaluation.services.drift import days_compared, top_cause
from evaluation.services.experiments import experiments_list
from evaluation.services.shared import utc_now
from feedback.models import FeedbackEvent, Trace
from tenants.selectors import Organization, organization_member_emails

MOST_EDITED = 5


def digest_build(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or utc_now()
    until = datetime.combine(now.astimezone(UTC).date(), time(0), UTC)
    window = Window(until - timedelta(days=7), until)
    features = []
    for f in overview(window=window):
        snapshot = DriftSnapshot.objects.filter(feature__key=f["key"]).order_by("-day").first()
        cause = top_cause(snapshot.result) if snapshot else None
        if cause is not None and snapshot is not None:
            # The drift's own days: its baseline is not the week before the digest's (it ends a week earlier).
            cause = {**cause, **days_compared(snapshot.result)}
        figures, previous = f["figures"], f["previous"]
        features.append(
            {
                "key": f["key"],
                "name": f["name"],
                "traces": figures["traces"],
                "previous_traces": previous["traces"],
                "success": figures["success"]["value"],
                "previous_success": previous["success"]["value"],
                "success_source": figures["success"]["source"],
                "cost_per_success_usd": figures["cost_per_success_usd"],
                "previous_cost_per_success_usd": previous["cost_per_success_usd"],
                "moved": f["reasons"],
                "cause": cause,
                "cause_day": snapshot.day.isoformat() if snapshot else None,
            }
        )
    edits = (
        FeedbackEvent.objects.filter(
            kind="edit", occurred_at__gte=window.since, occurred_at__lt=window.until, edit_distance__isnull=False
        )
        .order_by("-edit_distance")
        .values("trace_id", "edit_distance", "original_text", "edited_text")[:MOST_EDITED]
    )
    traces = {
        t.trace_id: t
        for t in Trace.objects.filter(trace_id__in=[e["trace_id"] for e in edits]).select_related(
            "feature", "prompt_version"
        )
    }
    most_edited = [
        {
            "trace_id": e["trace_id"],
            "edit_distance": e["edit_distance"],
            "feature": traces[e["trace_id"]].feature.key if e["trace_id"] in traces else None,
            "prompt_version": getattr(traces[e["trace_id"]].prompt_version, "label", None)
            if e["trace_id"] in traces
            else None,
            "original": (e["original_text"] or "")[:200],
            "edited": (e["edited_text"] or "")[:200],
        }
        for e in edits
    ]
    experiments = [e for e in experiments_list(now=now) if e["status"] == "running"]
    ready = [e for e in experiments if e["verdict"]["decision"] in ("ship", "stop")]
    opened = list(Alert.objects.filter(opened_at__gte=window.since, opened_at__lt=now).select_related("rule__feature"))
    resolved = list(
        Alert.objects.filter(resolved_at__gte=window.since, resolved_at__lt=now).select_related("rule__feature")
    )
    # Opened before the week and not over: a lasting regression is news every week until it ends.
    still_open = list(
        Alert.objects.filter(state=AlertState.OPEN, opened_at__lt=window.since, rule__enabled=True)
        .select_related("rule__feature")
        .order_by("opened_at")
    )
    return {
        "organization": getattr(connection, "tenant", None),
        "window": window,
        "features": features,
        "most_edited": most_edited,
        "experiments_ready": ready,
        "experiments_running": [e for e in experiments if e not in ready],
        "alerts_opened": opened,
        "alerts_resolved": resolved,
        "alerts_still_open": still_open,
    }


def digest_render(digest: dict[str, Any], *, base_url: str = "") -> tuple[str, str, str]:
    """(subject, plain text, html)."""
    organization = digest["organization"]
    name = getattr(organization, "name", "") or "your organization"
    window = digest["window"]
    subject = f"Candor weekly: {name}, {window.first_day:%b %d} to {window.last_day:%b %d}"
    context = {**digest, "subject": subject, "base_url": base_url}
    return (
        subject,
        render_to_string("evaluation/digest_email.txt", context),
        render_to_string("evaluation/digest_email.html", context),
    )


def digest_recipients(organization: Organization) -> list[str]:
    """The organization's PMs; its owners when it has none."""
    return organization_member_emails(organization.id, "pm") or organization_member_emails(organization.id, "owner")


class DigestNotSent(RuntimeError):
    """Some recipients' digest could not be sent this run: the next run (the task's retry) sends it."""


def digest_send(*, organization: Organization, now: datetime | None = None, base_url: str | None = None) -> int:
    """One email per recipient and week (the ISO week ``now`` falls in), however often this runs: a
    redelivered task, a second beat, a rerun later in the week. Returns how many were sent now. A
    recipient whose email fails is left to the next run, the others are still sent; then
    :class:`DigestNotSent` says who failed. Its links go to ``base_url``, by default ``settings.PUBLIC_URL``
    (CANDOR_PUBLIC_URL); with neither, the email has no links."""
    now = now or utc_now()
    digest = digest_build(now=now)
    today = now.astimezone(UTC).date()
    week = today - timedelta(days=today.weekday())  # its Monday
    subject, text, html = digest_render(digest, base_url=settings.PUBLIC_URL if base_url is None else base_url)
    sent = 0
    failed: list[str] = []
    for email in digest_recipients(organization):
        claim = _claim(week, email)
        if claim is None:
            continue  # sent already this week, or being sent this moment
        message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [email])
        message.attach_alternative(html, "text/html")
        try:
            delivered = message.send()
        except OSError as exc:  # smtplib's SMTPException is one, as are refused or dropped connections
            # Only this run's claim: a claim another run retook meanwhile is that run's.
            DigestDelivery.objects.filter(week=week, email=email, sent_at__isnull=True, claimed_at=claim).delete()
            failed.append(f"{email}: {exc}")
            continue
        DigestDelivery.objects.filter(week=week, email=email, claimed_at=claim).update(sent_at=utc_now())
        sent += delivered
    if failed:
        raise DigestNotSent(f"digest not sent to {len(failed)} recipient(s): " + "; ".join(failed)[:1000])
    return sent


# A claim this old and not marked sent is a send that died (its worker killed between claim and mark).
DIGEST_LEASE = timedelta(minutes=10)


def _claim(week: date, email: str) -> datetime | None:
    """This run's claim on the week's digest to ``email`` (a new one, or a dead send's past its lease),
    stamped with the clock at the claim; None when another run has it or it went out."""
    stamp = utc_now()
    _, created = DigestDelivery.objects.get_or_create(week=week, email=email, defaults={"claimed_at": stamp})
    if created:
        return stamp
    stale = DigestDelivery.objects.filter(
        week=week, email=email, sent_at__isnull=True, claimed_at__lt=stamp - DIGEST_LEASE
    )
    return stamp if stale.update(claimed_at=stamp) == 1 else None
