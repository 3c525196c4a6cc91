"""Celery tasks for ingestion's after-work: thin wrappers around feedback.rollups."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection

from feedback import services
from feedback.rollups import rollups_refresh
from feedback.services.shared import utc_now
from tenants.schema import send_to_each_organization
from tenants.selectors import organizations_each


@shared_task(time_limit=600, soft_time_limit=540, expires=300)
def rollups_refresh_task() -> int:
    """Runs in the schema it was sent from (tenant-schemas-celery)."""
    return rollups_refresh()


@shared_task(time_limit=120, expires=55)
def rollups_sweep() -> int:
    """Beat: fan out a refresh to every organization with dirty partitions."""
    sent = 0
    for organization in organizations_each():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM feedback_rollupdirty) OR EXISTS (SELECT 1 FROM "
                "feedback_feedbackevent f JOIN feedback_trace t USING (trace_id) WHERE f.feature_id IS NULL "
                "AND f.received_at > now() - interval '7 days')"
            )
            (dirty,) = cursor.fetchone()
        if dirty:
            schedule_rollups(organization.schema_name)
            sent += 1
    return sent


@shared_task(time_limit=600, soft_time_limit=540, expires=3600)
def genai_messages_prune_task() -> int:
    """This organization's GenAI log messages received more than GENAI_MESSAGE_RETENTION_DAYS ago: deleted.
    Runs in the schema it was sent from (tenant-schemas-celery)."""
    return services.genai_messages_prune(before=utc_now() - timedelta(days=settings.GENAI_MESSAGE_RETENTION_DAYS))


@shared_task(time_limit=120, expires=3600)
def genai_messages_prune_sweep() -> int:
    """Beat, daily: fan a prune out to every organization (one slow organization holds up no other)."""
    return send_to_each_organization(genai_messages_prune_task)


def schedule_rollups(schema_name: str) -> None:
    rollups_refresh_task.apply_async(headers={"_schema_name": schema_name})


services.on_rollups_dirty(schedule_rollups)
