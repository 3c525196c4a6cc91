"""Stripe's webhook door: POST /billing/stripe/webhook, verified by its Stripe-Signature on the raw body."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import gateway
from billing.services.webhooks import stripe_event_receive

logger = logging.getLogger("candor.billing")
MAX_BODY = 1024 * 1024


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY:
        return JsonResponse({"error": {"code": "too_large", "message": "Body over 1 MB.", "details": None}}, status=413)
    try:
        event = stripe_event_receive(payload=request.body, signature=request.META.get("HTTP_STRIPE_SIGNATURE", ""))
    except gateway.StripeNotConfigured as exc:
        return JsonResponse({"error": {"code": "not_configured", "message": str(exc), "details": None}}, status=503)
    except gateway.BadSignature as exc:
        return JsonResponse(
            {"error": {"code": "bad_signature", "message": f"Signature check failed: {exc}", "details": None}},
            status=400,
        )
    except Exception:
        # Stored before processing: Stripe's redelivery (and the sweep) will process it again.
        logger.exception("stripe webhook processing failed")
        return JsonResponse({"error": {"code": "internal_error", "message": "Stored; will retry.", "details": None}},
                            status=500)  # fmt: skip
    return JsonResponse({"received": event.stripe_id, "processed": event.processed_at is not None,
                         "outcome": event.outcome, "deliveries": event.deliveries})  # fmt: skip
