"""Celery tasks of the judges: thin wrappers around evaluation.services (tenant-schemas-celery
carries the organization's schema with each task; beat fans out from one dispatcher)."""

from __future__ import annotations

import dataclasses

from celery import shared_task

from evaluation.selectors import pending_scores_exist
from evaluation.services.backfill import backfills_settle
from evaluation.services.digest import DigestNotSent
from evaluation.services.runs import scores_run
from evaluation.services.sampling import sampling_sweep, scores_join
from tenants.schema import current_schema, send_to_each_organization

RUN_SECONDS = 50.0


@shared_task(time_limit=120, soft_time_limit=100, expires=600, acks_late=True)
def scores_run_task() -> dict[str, int]:
    """Run this organization's queued scores; queue itself again while scores remain due."""
    stats = scores_run(max_seconds=RUN_SECONDS)
    if not stats.skipped_locked and stats.finished and pending_scores_exist():
        schedule_scores_run(current_schema())
    backfills_settle()
    return {"ok": stats.ok, "errors": stats.errors, "deferred": stats.deferred, "max_in_flight": stats.max_in_flight}


@shared_task(time_limit=300, soft_time_limit=270, expires=60)
def sampling_sweep_task() -> int:
    scores_join()
    queued = sampling_sweep()
    if queued or pending_scores_exist():
        schedule_scores_run(current_schema())
    return queued


@shared_task(time_limit=120, expires=14)
def judges_sweep() -> int:
    """Beat: fan out a sampling sweep (and a run of what is due) to every organization."""
    return send_to_each_organization(sampling_sweep_task)


def schedule_scores_run(schema_name: str) -> None:
    scores_run_task.apply_async(headers={"_schema_name": schema_name})


# --- Calibration -------------------------------------------------------------------------------


@shared_task(time_limit=300, soft_time_limit=270, expires=120)
def calibration_sweep_task() -> dict[str, int]:
    """Recompute the calibration of what new labels or scores touched (this organization)."""
    from evaluation.services.calibration_refresh import calibration_sweep

    stats = calibration_sweep()
    return {"labels": stats.labels, "refreshed": stats.refreshed, "failed": stats.failed}


@shared_task(time_limit=60, expires=14)
def calibrations_sweep() -> int:
    """Beat: fan a calibration sweep out to every organization (the net under the nudges)."""
    return send_to_each_organization(calibration_sweep_task)


def schedule_calibration_sweep(schema_name: str, *, countdown: float = 0.0) -> None:
    calibration_sweep_task.apply_async(headers={"_schema_name": schema_name}, countdown=countdown or None)


# --- alerts, drift, digest ---------------------------------------------------------------------------


@shared_task(time_limit=240, soft_time_limit=200, expires=290)
def alerts_evaluate_task() -> dict[str, int]:
    """Evaluate this organization's alert rules; deliveries go out in their own task (a slow
    receiver never holds the evaluation)."""
    from evaluation.services.alerts import alerts_evaluate

    stats = alerts_evaluate()
    deliveries_send_task.apply_async(headers={"_schema_name": current_schema()})
    return dataclasses.asdict(stats)


@shared_task(time_limit=120, soft_time_limit=100, expires=3600)
def deliveries_send_task() -> int:
    """Send due deliveries; schedule itself for the next retry (backoff) when one is pending."""
    from evaluation.services.alerts import deliveries_send
    from evaluation.services.shared import utc_now

    upcoming = deliveries_send()
    if upcoming is not None:
        countdown = max((upcoming - utc_now()).total_seconds(), 1.0)
        deliveries_send_task.apply_async(headers={"_schema_name": current_schema()}, countdown=countdown)
        return int(countdown)
    return 0


@shared_task(time_limit=60, expires=290)
def alerts_sweep() -> int:
    """Beat: fan out an alert evaluation to every organization."""
    return send_to_each_organization(alerts_evaluate_task)


@shared_task(time_limit=1800, soft_time_limit=1700, expires=3600)
def drift_snapshots_task() -> int:
    from evaluation.services.drift import drift_snapshots_daily

    return drift_snapshots_daily()


@shared_task(time_limit=60, expires=3600)
def drift_daily() -> int:
    """Beat, daily: each organization's drift snapshots."""
    return send_to_each_organization(drift_snapshots_task)


@shared_task(
    time_limit=600, soft_time_limit=540, expires=3600, autoretry_for=(DigestNotSent,), retry_backoff=120,
    retry_backoff_max=1200, max_retries=4,
)  # fmt: skip
def digest_send_task() -> int:
    """This organization's weekly digest; recipients whose email failed are retried (the sent are not)."""
    from django.db import connection

    from evaluation.services.digest import digest_send

    return digest_send(organization=connection.tenant)  # type: ignore[attr-defined]


@shared_task(time_limit=60, expires=3600)
def digest_weekly() -> int:
    """Beat, Mondays: each organization's weekly digest to its PMs."""
    return send_to_each_organization(digest_send_task)
