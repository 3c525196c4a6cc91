"""Wire formats of POST /api/v1/scores and /labels, validated with msgspec (also their OpenAPI schemas' source)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from evaluation.services.judges import MAX_NAME, NAME_PATTERN
from feedback.schemas import MAX_COMMENT, Id, Short

ScaleName = Literal["binary", "ordinal", "continuous"]


class ScoreIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    score_id: Id
    trace_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
    value: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)] | None = None
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] | None = None
    scale: ScaleName | None = None
    judge_version: Short | None = None
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT)] | None = None
    occurred_at: datetime | None = None


LabelScaleName = Literal["binary", "ordinal", "continuous", "categorical", "free_text"]
SamplingDesign = Literal["uniform", "stratified", "active", "manual"]


class SamplingIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    design: SamplingDesign = "manual"
    stratum: Short | None = None
    # (0, 1]: the probability the label's item had of being selected.
    inclusion_probability: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None


class LabelIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    label_id: Id
    trace_id: Id
    rubric: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
    rubric_version: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    scale: LabelScaleName | None = None
    value: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)] | None = None
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_COMMENT)] | None = None
    reviewer: Annotated[str, msgspec.Meta(max_length=254)] | None = None
    sampling: SamplingIn | None = None
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT)] | None = None
    occurred_at: datetime | None = None
