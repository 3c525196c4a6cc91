"""Writes to a feature's declarations: its value per success (ROI) and its segment keys."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection, transaction

from feedback.models import Feature


def feature_value_set(*, feature: Feature, value_per_success_usd: Decimal | None) -> Feature:
    """Reports read the value at query time, so nothing is recomputed."""
    feature.value_per_success_usd = value_per_success_usd
    feature.save(update_fields=["value_per_success_usd"])
    return feature


def feature_segments_set(*, feature: Feature, keys: list[str]) -> Feature:
    """Declare the metadata keys the rollups count per value; every day the feature has traces is
    marked dirty so the worker backfills the segment rows."""
    keys = sorted({k for k in keys if k})
    with transaction.atomic():
        feature.segment_keys = keys
        feature.save(update_fields=["segment_keys"])
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO feedback_rollupdirty (day, feature_id, marked_at)
                SELECT DISTINCT day, feature_id, now() FROM feedback_dailyrollup WHERE feature_id = %s
                ORDER BY day, feature_id
                ON CONFLICT (day, feature_id) DO UPDATE SET marked_at = EXCLUDED.marked_at
                """,
                [feature.id],
            )
    return feature
