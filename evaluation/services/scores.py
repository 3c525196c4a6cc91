"""External scores (POST /api/v1/scores): a team's own evaluator results, stored as scores of a
judge of kind ``external`` (one per distinct name), so calibration treats them like any judge.

A name's scale is fixed by its first score (shared/API.md): the ``scale`` sent, else 0/1 binary,
integers 1-5 ordinal, anything else continuous. Values are parsed as strictly as an LLM verdict:
off the scale is an item error, never clipped. A score for a trace not received yet is kept and
joined when the trace lands (evaluation.services.sampling.scores_join), as feedback is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from evaluation.judges.engine import external_result
from evaluation.judges.scales import get_scale, infer_scale
from evaluation.judges.versions import JudgeVersionSpec
from evaluation.models import Judge, JudgeKind, JudgeVersion
from evaluation.schemas import ScoreIn
from evaluation.services.judges import judge_version_create
from evaluation.services.shared import utc_now
from feedback.schemas import ItemError, check_time, decode_body
from feedback.services.shared import IngestResult, raw_cursor

_INSERT = """
INSERT INTO evaluation_score (score_id, trace_id, judge_id, judge_version_id, run_index, status, raw_score, score,
    passed, rationale, raw_response, error_code, error_message, sampling_design, stratum, model, attempts, comment,
    due_at, created_at, scored_at, feature_id, trace_day)
SELECT s.*, t.feature_id, t.day FROM unnest(
    %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::smallint[], %s::text[], %s::float8[], %s::float8[],
    %s::bool[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::smallint[],
    %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[]
) AS s(score_id, trace_id, judge_id, judge_version_id, run_index, status, raw_score, score, passed, rationale,
       raw_response, error_code, error_message, sampling_design, stratum, model, attempts, comment, due_at,
       created_at, scored_at)
LEFT JOIN LATERAL (SELECT feature_id, day FROM feedback_trace WHERE trace_id = s.trace_id LIMIT 1) t ON true
ON CONFLICT DO NOTHING
RETURNING score_id
"""


def _already_scored(cursor: Any, skipped: dict[str, tuple[int, ScoreIn, str]]) -> list[ItemError]:
    """Skipped items whose score_id is new: their trace has a score of that judge version already (one score
    per trace and judge version: one stored before, or another of this batch). Refused, as any item not stored
    is: a rerun with fresh IDs is no retry (a duplicate is a resent score_id), and its verdicts were not taken."""
    if not skipped:
        return []
    cursor.execute("SELECT score_id FROM evaluation_score WHERE score_id = ANY(%s)", [list(skipped)])
    resent = {row[0] for row in cursor.fetchall()}
    return [
        ItemError(index, "trace_id", _scored_twice(item, version))
        for score_id, (index, item, version) in sorted(skipped.items(), key=lambda kv: kv[1][0])
        if score_id not in resent
    ]  # fmt: skip


def _scored_twice(item: ScoreIn, version: str) -> str:
    return (f"trace {item.trace_id!r} already has a score from {item.name!r} version {version!r}: this one is not "
            "stored (one score per trace and judge version); send a new judge_version to score it again")  # fmt: skip


def _check(item: ScoreIn, now: datetime) -> None:
    if (item.value is None) == (item.label is None):
        raise ValueError("value: send either value (a number) or label (e.g. pass / fail), not both or neither")
    item.occurred_at = check_time(item.occurred_at, "occurred_at", now)
    for name in ("score_id", "trace_id", "judge_version", "comment", "label"):
        if "\x00" in (getattr(item, name) or ""):
            raise ValueError(f"{name}: text must not contain NUL (\\u0000) characters")


def _external_judge(name: str, scale: str, label: str) -> Judge:
    judge = Judge.objects.filter(name=name).first()
    if judge is not None:
        return judge
    try:
        with transaction.atomic():
            judge = Judge.objects.create(
                name=name, kind=JudgeKind.EXTERNAL, description="Scores posted through the API."
            )
            judge_version_create(judge=judge, spec=JudgeVersionSpec(kind="external", scale=scale), label=label)  # type: ignore[arg-type]
    except IntegrityError:  # created by a concurrent batch
        judge = Judge.objects.get(name=name)
    judge.refresh_from_db()
    return judge


# Each distinct judge_version label is a version (with its own calibration): beyond this many, a label
# is more likely a run ID or a timestamp than a version, and every judges listing would grow with it.
MAX_EXTERNAL_VERSIONS = 100


def _version_would_exceed_cap(judge: Judge, label: str, cache: dict[tuple[int, str], JudgeVersion]) -> bool:
    if (judge.id, label) in cache:
        return False
    versions = JudgeVersion.objects.filter(judge=judge)
    return not versions.filter(label=label).exists() and versions.count() >= MAX_EXTERNAL_VERSIONS


def _version(judge: Judge, label: str, cache: dict[tuple[int, str], JudgeVersion]) -> JudgeVersion:
    key = (judge.id, label)
    if key not in cache:
        assert judge.current_version is not None
        scale = judge.current_version.content["scale"]
        spec = JudgeVersionSpec(kind="external", scale=scale)
        cache[key] = judge_version_create(judge=judge, spec=spec, label=label)[0]
    return cache[key]


def scores_ingest(*, body: bytes) -> IngestResult:
    """Store external scores; a resent score_id is a duplicate, a new one for a trace that judge version scored
    already is an item error."""
    now = utc_now()
    good, errors = decode_body(body, ScoreIn, _check, now)
    result = IngestResult(errors=errors)
    decode_errors = len(errors)
    judges: dict[str, Judge] = {}
    versions: dict[tuple[int, str], JudgeVersion] = {}
    rows: dict[str, tuple[Any, ...]] = {}
    sent: dict[str, tuple[int, ScoreIn, str]] = {}  # score_id -> its first item (index, item, version named)
    taken: dict[tuple[str, int], str] = {}  # (trace_id, judge version) -> the score_id of this batch scoring it
    for index, item in good:
        value = item.value if item.value is not None else item.label
        judge = judges.get(item.name) or Judge.objects.select_related("current_version").filter(name=item.name).first()
        if judge is not None and judge.kind != JudgeKind.EXTERNAL:
            result.errors.append(
                ItemError(index, "name", f"{item.name!r} is a Candor {judge.kind} judge, not external")
            )
            continue
        field = "value" if item.value is not None else "label"
        if judge is None:
            scale = item.scale or (infer_scale(item.value) if item.value is not None else "binary")
            verdict = external_result(value, get_scale(scale), comment=item.comment or "")
            if not verdict.ok:  # no judge is made for a score it would refuse
                result.errors.append(ItemError(index, field, f"not on the {scale} scale: {verdict.error}"))
                continue
            # A concurrent batch may have made the judge first, on another scale: the score is checked against the
            # scale stored, below, as any later score is (it was stored unchecked: a binary judge held a 4).
            judge = _external_judge(item.name, scale, item.judge_version or "")
        assert judge.current_version is not None
        scale = judge.current_version.content["scale"]
        if item.scale is not None and item.scale != scale:
            result.errors.append(
                ItemError(index, "scale", f"{item.name!r} is {scale} (fixed by its first score), not {item.scale}")
            )
            continue
        verdict = external_result(value, get_scale(scale), comment=item.comment or "")
        if not verdict.ok:
            result.errors.append(ItemError(index, field, f"not on the {scale} scale: {verdict.error}"))
            continue
        judges[item.name] = judge
        if _version_would_exceed_cap(judge, item.judge_version or "", versions):
            result.errors.append(
                ItemError(index, "judge_version", f"{item.name!r} already has {MAX_EXTERNAL_VERSIONS} versions: "
                          "send one of them, or a new name for a new evaluator")
            )  # fmt: skip
            continue
        version = _version(judge, item.judge_version or "", versions)
        named = item.judge_version or str(version.number)
        if taken.setdefault((item.trace_id, version.id), item.score_id) != item.score_id:
            # A second score of this batch for the trace and judge version: the first item stands.
            result.errors.append(ItemError(index, "trace_id", _scored_twice(item, named)))
            continue
        at = item.occurred_at or now
        sent.setdefault(item.score_id, (index, item, named))
        rows.setdefault(
            item.score_id,
            (item.score_id, item.trace_id, judge.id, version.id, 0, "ok", verdict.raw_score, verdict.score,
             verdict.passed, item.comment or "", "", "", "", "external", "", "", 1, item.comment or "", at, now, at),
        )  # fmt: skip
    if rows:
        ordered = [rows[key] for key in sorted(rows)]
        with transaction.atomic():
            cursor = raw_cursor()
            cursor.execute(_INSERT, [list(column) for column in zip(*ordered, strict=True)])
            inserted = {row[0] for row in cursor.fetchall()}
            result.accepted = len(inserted)
            result.errors += _already_scored(cursor, {k: v for k, v in sent.items() if k not in inserted})
    result.errors.sort(key=lambda error: error.index)
    result.duplicates = len(good) - (len(result.errors) - decode_errors) - result.accepted
    return result
