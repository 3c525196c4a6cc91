"""Rubrics and human labels (POST /api/v1/labels; Candor's queues write the same rows).

A rubric version is immutable: a changed rubric is a new version, and a label belongs to exactly
one version, so labels under different versions never mix. A rubric first seen through the API is
created as version 1 with the label's scale (the ``scale`` sent, else fixed as for scores: 0/1
binary, integers 1-5 ordinal, else continuous; a ``category`` makes it categorical, a ``text`` free
text: such a label carries text and no value). Values off the
rubric's scale are item errors, never clipped. A label may name a trace not received yet: reads
join labels to traces by ``trace_id``, so it counts as soon as the trace lands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from evaluation.judges.scales import infer_scale
from evaluation.models import LabelSource, Rubric, RubricScale
from evaluation.schemas import LabelIn
from evaluation.services.shared import JudgeServiceError, utc_now
from feedback.schemas import ItemError, check_time, decode_body
from feedback.services.shared import IngestResult, raw_cursor

ENRICHED_DESIGNS = ("stratified", "active")

_INSERT = """
INSERT INTO evaluation_label (label_id, trace_id, rubric_id, value, category, text, reviewer, source,
    sampling_design, stratum, inclusion_probability, comment, occurred_at, created_at)
SELECT * FROM unnest(
    %s::text[], %s::text[], %s::bigint[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::text[], %s::float8[], %s::text[], %s::timestamptz[], %s::timestamptz[]
)
ON CONFLICT DO NOTHING
"""


def label_good(value: float, scale: str) -> bool:
    """A label counts as "good" at the same threshold a judge passes (API.md): binary 1, ordinal
    >= 4, continuous >= 0.5."""
    if scale == RubricScale.BINARY:
        return value >= 1
    if scale == RubricScale.ORDINAL:
        return value >= 4
    return value >= 0.5


def value_error(value: float, scale: str) -> str | None:
    """Why ``value`` is not on ``scale`` (None when it is)."""
    if scale == RubricScale.FREE_TEXT:
        return "a free-text rubric takes text, not a value"
    if not math.isfinite(value):
        return "must be a finite number"
    if scale == RubricScale.BINARY and value not in (0, 1):
        return f"{value:g} is not on the binary scale: 1 good or 0 bad"
    if scale == RubricScale.ORDINAL and (value != int(value) or not 1 <= value <= 5):
        return f"{value:g} is not on the ordinal scale: a whole number from 1 to 5"
    if scale == RubricScale.CONTINUOUS and not 0 <= value <= 1:
        return f"{value:g} is not on the continuous scale: from 0 to 1"
    return None


def rubric_latest(name: str) -> Rubric | None:
    return Rubric.objects.filter(name=name).order_by("-version").first()


def rubric_version_create(
    *, name: str, scale: str, categories: Sequence[str] = (), description: str = ""
) -> tuple[Rubric, bool]:
    """The rubric's latest version when it already says this, else a new version (a changed rubric
    is a new version; earlier versions and their labels stay as they were). Returns (rubric, created)."""
    if scale not in RubricScale.values:
        raise JudgeServiceError(f"unknown scale {scale!r}", field="scale")
    if categories and scale != RubricScale.CATEGORICAL:
        raise JudgeServiceError("only a categorical rubric has categories", field="categories")
    if scale == RubricScale.CATEGORICAL:
        rubric_categories_check(categories)
    wanted = {"scale": scale, "categories": list(categories), "description": description}
    for _ in range(3):  # a concurrent writer may take the next number first
        latest = rubric_latest(name)
        if latest is not None and {
            "scale": latest.scale, "categories": latest.categories, "description": latest.description
        } == wanted:  # fmt: skip
            return latest, False
        try:
            with transaction.atomic():
                return Rubric.objects.create(name=name, version=(latest.version + 1) if latest else 1, **wanted), True
        except IntegrityError:
            continue
    raise JudgeServiceError("the rubric is being changed concurrently; try again", field="name")


def rubric_categories_check(categories: Sequence[str]) -> None:
    """A categorical rubric's reviewers choose between its categories: two at least, each named, once;
    or none, and reviewers name the category themselves (as for a rubric a label created through the API).
    JudgeServiceError on the field "categories" otherwise."""
    seen: set[str] = set()
    for category in categories:
        name = category.strip()
        if not name:
            raise JudgeServiceError("one of the categories is blank: each needs a name", field="categories")
        if len(name) > 200 or "\x00" in name:
            raise JudgeServiceError("each category is at most 200 characters, with no NUL", field="categories")
        if name.casefold() in seen:
            raise JudgeServiceError(f"{name!r} is listed twice: each category once", field="categories")
        seen.add(name.casefold())
    if len(seen) == 1:
        raise JudgeServiceError(
            "a categorical rubric needs at least 2 categories to choose between, not 1 "
            "(or none: reviewers then name the category themselves)",
            field="categories",
        )


def _check(item: LabelIn, now: datetime) -> None:
    if [item.value, item.category, item.text].count(None) != 2:
        raise ValueError(
            "value: send exactly one of value (a number), category (categorical rubrics) or text (free-text rubrics)"
        )
    item.occurred_at = check_time(item.occurred_at, "occurred_at", now)
    for name in ("label_id", "trace_id", "category", "text", "reviewer", "comment"):
        if "\x00" in (getattr(item, name) or ""):
            raise ValueError(f"{name}: text must not contain NUL (\\u0000) characters")
    sampling = item.sampling
    if sampling is not None:
        if "\x00" in (sampling.stratum or ""):
            raise ValueError("sampling.stratum: text must not contain NUL (\\u0000) characters")
        if sampling.design in ENRICHED_DESIGNS and sampling.inclusion_probability is None:
            raise ValueError(
                f"sampling.inclusion_probability: required for a {sampling.design} design "
                "(without it the estimate cannot be repaired later)"
            )


def _rubric_for(item: LabelIn, cache: dict[tuple[str, int | None], Rubric]) -> Rubric | ItemError | None:
    """The rubric version the label belongs to; None when the rubric is new (created by the caller)."""
    key = (item.rubric, item.rubric_version)
    if key in cache:
        return cache[key]
    rows = Rubric.objects.filter(name=item.rubric)
    rubric = (rows.filter(version=item.rubric_version) if item.rubric_version else rows.order_by("-version")).first()
    if rubric is None and item.rubric_version is not None and (item.rubric_version != 1 or rows.exists()):
        return ItemError(0, "rubric_version", f"rubric {item.rubric!r} has no version {item.rubric_version}")
    if rubric is not None:
        cache[key] = rubric
    return rubric


def _inferred(value: float) -> str:
    return infer_scale(value) if math.isfinite(value) else RubricScale.CONTINUOUS


def _new_rubric(name: str, scale: str) -> Rubric:
    existing = rubric_latest(name)
    if existing is not None:  # created by a concurrent batch
        return existing
    try:
        with transaction.atomic():
            return Rubric.objects.create(name=name, version=1, scale=scale)
    except IntegrityError:
        return Rubric.objects.get(name=name, version=1)


def _item_error(item: LabelIn, rubric: Rubric) -> tuple[str, str] | None:
    if item.scale is not None and item.scale != rubric.scale:
        return "scale", f"rubric {rubric.name!r} v{rubric.version} is {rubric.scale}, not {item.scale}"
    if rubric.scale == RubricScale.FREE_TEXT:
        if item.text is None:
            return "text", f"rubric {rubric.name!r} is free text: send text, not value or category"
        return None
    if item.text is not None:
        return "text", f"rubric {rubric.name!r} is {rubric.scale}: text belongs to free-text rubrics"
    if rubric.scale == RubricScale.CATEGORICAL:
        if item.category is None:
            return "value", f"rubric {rubric.name!r} is categorical: send category, not value"
        if rubric.categories and item.category not in rubric.categories:
            return "category", f"{item.category!r} is not one of {', '.join(map(repr, rubric.categories))}"
        return None
    if item.value is None:
        return "category", f"rubric {rubric.name!r} is {rubric.scale}: send value, not category"
    problem = value_error(item.value, rubric.scale)
    return ("value", problem) if problem else None


def labels_ingest(*, body: bytes, source: str = LabelSource.API) -> IngestResult:
    """Store human labels; a resent label_id is a duplicate and changes nothing already stored."""
    now = utc_now()
    good, errors = decode_body(body, LabelIn, _check, now)
    result = IngestResult(errors=errors)
    decode_errors = len(errors)
    rubrics: dict[tuple[str, int | None], Rubric] = {}
    rows: dict[str, tuple[Any, ...]] = {}
    for index, item in good:
        found = _rubric_for(item, rubrics)
        if isinstance(found, ItemError):
            result.errors.append(ItemError(index, found.field, found.message))
            continue
        rubric = found
        if rubric is None:
            # Check the value against the scale the new rubric would get before creating it, so a
            # bad first label leaves no rubric behind.
            scale = item.scale or (
                RubricScale.CATEGORICAL
                if item.category is not None
                else RubricScale.FREE_TEXT
                if item.text is not None
                else _inferred(item.value or 0.0)
            )
            problem = _item_error(item, Rubric(name=item.rubric, version=1, scale=scale))
            if problem is None:
                rubric = _new_rubric(item.rubric, scale)
                rubrics[(item.rubric, item.rubric_version)] = rubric
                rubrics[(item.rubric, None)] = rubric
                # A concurrent batch may have made the rubric first, on another scale: checked against the one
                # stored, as any later label is (it was stored unchecked: a binary rubric held a 4).
                problem = _item_error(item, rubric)
        else:
            problem = _item_error(item, rubric)
        if problem is not None or rubric is None:
            field, message = problem or ("rubric", "unknown rubric")
            result.errors.append(ItemError(index, field, message))
            continue
        sampling = item.sampling
        rows.setdefault(
            item.label_id,
            (item.label_id, item.trace_id, rubric.id, item.value, item.category or "", item.text or "",
             item.reviewer or "", source,
             sampling.design if sampling else "manual", (sampling.stratum or "") if sampling else "",
             sampling.inclusion_probability if sampling else None, item.comment or "", item.occurred_at or now, now),
        )  # fmt: skip
    if rows:
        ordered = [rows[key] for key in sorted(rows)]
        with transaction.atomic():
            cursor = raw_cursor()
            cursor.execute(_INSERT, [list(column) for column in zip(*ordered, strict=True)])
            result.accepted = cursor.rowcount
    result.duplicates = len(good) - (len(result.errors) - decode_errors) - result.accepted
    return result
