"""Warnings sent once per key (a cap level in a month, a budget threshold in a period): a row,
an email to the organization's owners and admins, and a webhook when the organization set one."""

from __future__ import annotations

import logging
from typing import Any

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import BillingAccount, Notice
from tenants.selectors import Organization, organization_admin_emails

logger = logging.getLogger("candor.billing")


def notice_send(*, organization: Organization, key: str, kind: str, subject: str, payload: dict[str, Any]) -> bool:
    """Record and send a warning unless this key was sent before; True when it is new."""
    try:
        with transaction.atomic():
            notice = Notice.objects.create(organization=organization, key=key[:400], kind=kind, payload=payload)
    except IntegrityError:
        return False
    recipients = organization_admin_emails(organization.id)
    if recipients:
        body = f"{subject}\n\n" + "\n".join(f"{k}: {v}" for k, v in payload.items())
        try:
            send_mail(f"[Candor] {subject}", body, None, recipients)
        except OSError:
            logger.exception("could not email notice %s", notice.key)
    url = BillingAccount.objects.filter(organization=organization).values_list("notify_webhook_url", flat=True).first()
    if url:
        from billing.tasks import notice_deliver

        transaction.on_commit(lambda: notice_deliver.delay(notice.id))
    return True


def notice_deliver(*, notice: Notice) -> None:
    """POST the notice to the organization's webhook URL (checked again: DNS may have changed)."""
    import httpx

    from evaluation.services.webhooks import url_problem

    url = (
        BillingAccount.objects.filter(organization_id=notice.organization_id)
        .values_list("notify_webhook_url", flat=True)
        .first()
    )
    if not url or notice.delivered_at is not None:
        return
    problem = url_problem(url)
    if problem:
        notice.delivery_error = problem
        notice.save(update_fields=["delivery_error"])
        return
    body = {"type": f"{notice.kind}.warning", "key": notice.key, "created_at": notice.created_at.isoformat(),
            **notice.payload}  # fmt: skip
    try:
        response = httpx.post(url, json=body, timeout=5.0, follow_redirects=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        notice.delivery_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        notice.save(update_fields=["delivery_error"])
        raise
    notice.delivered_at = timezone.now()
    notice.delivery_error = ""
    notice.save(update_fields=["delivered_at", "delivery_error"])
