"""Widget events: the browser's feedback, checked against its public key's origin and token policy."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from feedback import services
from feedback.enums import FeedbackSource
from feedback.models import WidgetRejection
from feedback.schemas import BodyError, FeedbackIn, split_widget_body
from tenants.errors import Refused, Why
from tenants.services import ResolvedKey
from tenants.tokens import verify_trace_token


def widget_rejection_count(*, reason: str, origin: str, count: int) -> None:
    """Count refused widget events per day, reason and origin (shown on the overview)."""
    day = timezone.now().date()
    row, _ = WidgetRejection.objects.get_or_create(day=day, reason=reason, origin=origin[:255])
    # F(): concurrent rejections add up instead of overwriting each other.
    WidgetRejection.objects.filter(pk=row.pk).update(count=F("count") + count, last_at=timezone.now())


def widget_events_ingest(*, key: ResolvedKey, origin: str, body: bytes) -> services.IngestResult:
    """Store the events of one widget request, sent with an admitted public key from `origin`.

    Refuses the whole request when the origin is not one of the key's; with signed tokens
    required, an event without a valid token for its trace is that event's error.
    """
    try:
        _, items = split_widget_body(body)
    except BodyError as exc:
        why = Why.TOO_LARGE if exc.status == 413 else Why.INVALID
        raise Refused(exc.code, exc.message, why=why) from exc
    if not key.origin_allowed(origin):
        widget_rejection_count(reason="origin_not_allowed", origin=origin, count=len(items))
        raise Refused(
            "origin_not_allowed",
            f"Origin '{origin or '(none)'}' is not allowed for this key; add it under Settings > API keys.",
            why=Why.FORBIDDEN,
        )
    if not key.require_signed_tokens:
        return services.feedback_ingest(raw_items=items, source=FeedbackSource.WIDGET)

    rejected: dict[str, int] = {}

    def token_check(item: FeedbackIn) -> None:
        reason = verify_trace_token(key.signing_secret, item.token, item.trace_id, item.user_id or "")
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            raise ValueError(f"token: {reason.replace('_', ' ')} (this organization requires signed tokens)")

    result = services.feedback_ingest(raw_items=items, source=FeedbackSource.WIDGET, extra_check=token_check)
    for reason, count in rejected.items():
        widget_rejection_count(reason=f"token_{reason}", origin=origin, count=count)
    return result
