"""Wire format of POST /api/v1/scores, validated with msgspec (also the source of its OpenAPI schema)."""

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
