"""Reads shared by the API and the portal: one trace, and the filtered trace list."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum

from feedback.enums import CHOICE_KINDS, CHOOSER_SQL, EXPLICIT_KINDS, FeedbackKind, sql_list
from feedback.models import Feature, FeedbackEvent, ModelRollup, Outcome, PromptVersion, Span, Trace

# Trace list pages: the default size and the most a caller may ask for (the API's ?limit=).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TraceFilters:
    feature: str = ""
    prompt_version: str = ""
    customer_id: str = ""
    variant: str = ""
    model: str = ""  # the trace's model (its first LLM call's)
    # Variants left out: a report's row leaves its feature's holdback arms out (the non-AI path), so do its traces.
    exclude_variants: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    has_thumbs_down: bool = False
    has_edit: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    search: str = ""
    text: str = ""  # words in the input or output (the portal's; a scan, not an index: narrow it by other filters)

    @classmethod
    def from_query(cls, query: Any, *, until_day_inclusive: bool = False) -> TraceFilters:
        """From request.GET: metadata filters are written metadata.<key>=<value>.

        With ``until_day_inclusive`` (the portal's date picker) an ``until`` that is a day without a time
        means the end of that day; the API keeps its documented "before this time" (a day is its midnight).
        """
        for name, value in query.items():  # PostgreSQL text cannot hold NUL: a clear error, not a database one
            if "\x00" in name or "\x00" in value:
                raise FilterError(name.replace("\x00", "") or "query", "must not contain NUL characters")
        excluded = [value.strip() for value in _values(query, "exclude_variant") if value.strip()]
        if any("\x00" in value for value in excluded):  # items() shows a repeated parameter's last value only
            raise FilterError("exclude_variant", "must not contain NUL characters")
        since = _parse_time(query.get("since", ""), "since")
        until = _parse_time(query.get("until", ""), "until", next_day_if_date=until_day_inclusive)
        return cls(
            feature=query.get("feature", "").strip(),
            prompt_version=query.get("prompt_version", "").strip(),
            customer_id=query.get("customer_id", "").strip(),
            variant=query.get("variant", "").strip(),
            model=query.get("model", "").strip(),
            exclude_variants=tuple(dict.fromkeys(excluded)),
            since=since,
            until=until,
            has_thumbs_down=query.get("has_thumbs_down", "") in {"1", "true", "on", "yes"},
            has_edit=query.get("has_edit", "") in {"1", "true", "on", "yes"},
            metadata={
                k.removeprefix("metadata."): v
                for k, v in query.items()
                if k.startswith("metadata.") and k != "metadata." and v != ""
            },
            search=query.get("q", "").strip(),
            text=_text(query.get("text", "")),
        )


def _values(query: Any, name: str) -> list[str]:
    """Every value of a repeatable parameter (a QueryDict's list; a plain mapping's one value)."""
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    value = query.get(name)
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]


MAX_TEXT_SEARCH = 200


def _text(value: str) -> str:
    value = " ".join(value.split())
    if len(value) > MAX_TEXT_SEARCH:
        raise FilterError("text", f"at most {MAX_TEXT_SEARCH} characters")
    return value


def _is_plain_date(value: str) -> bool:
    """Whether ``value`` is a day with no time (2025-01-31), as a date input sends it."""
    try:
        date.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _parse_time(value: str, name: str, *, next_day_if_date: bool = False) -> datetime | None:
    """``value`` in UTC (no zone means UTC). Converting matters: PostgreSQL refuses offsets past ±15:59
    (a 500), while ISO 8601 allows up to ±23:59; an aware time in UTC never carries an offset at all."""
    value = value.strip()
    if not value:
        return None
    usage = "use ISO 8601, e.g. 2025-01-31 or 2025-01-31T12:00:00Z"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(name, usage) from None
    try:
        in_utc = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if next_day_if_date and _is_plain_date(value):
            in_utc += timedelta(days=1)
    except OverflowError:  # 9999-12-31T23:59-01:00 is past the year 9999 in UTC
        raise FilterError(name, f"{usage}, within the years 1 to 9999 in UTC") from None
    return in_utc


def _json_scalar(text: str) -> int | float | bool | None:
    """The number or boolean ``text`` spells in JSON (``5``, ``2.5``, ``true``), else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, float) and not math.isfinite(value):  # NaN, Infinity: not JSON PostgreSQL reads
        return None
    return value if isinstance(value, int | float | bool) else None


def traces_filtered(filters: TraceFilters) -> QuerySet[Trace]:
    qs = Trace.objects.select_related("feature", "prompt_version")
    if filters.feature:
        qs = qs.filter(feature__key=filters.feature)
    if filters.prompt_version:
        qs = qs.filter(prompt_version__label=filters.prompt_version)
    if filters.customer_id:
        qs = qs.filter(customer_id=filters.customer_id)
    if filters.variant:
        qs = qs.filter(variant=filters.variant)
    if filters.model:
        qs = qs.filter(model=filters.model)
    if filters.exclude_variants:
        qs = qs.exclude(variant__in=filters.exclude_variants)
    if filters.since:
        qs = qs.filter(started_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(started_at__lt=filters.until)
    for key, value in filters.metadata.items():
        # Containment uses the jsonb_path_ops GIN index. A value typed in a URL is text; the metadata sent may
        # hold it as a number or a boolean (the reports' grouping shows both as text): either matches.
        match = Q(metadata__contains={key: value})
        typed = _json_scalar(value)
        if typed is not None:
            match |= Q(metadata__contains={key: typed})
        qs = qs.filter(match)
    if filters.has_thumbs_down:
        qs = qs.filter(
            Exists(FeedbackEvent.objects.filter(trace_id=OuterRef("trace_id"), kind=FeedbackKind.THUMB, value__lt=0))
        )
    if filters.has_edit:
        qs = qs.filter(Exists(FeedbackEvent.objects.filter(trace_id=OuterRef("trace_id"), kind=FeedbackKind.EDIT)))
    if filters.search:
        qs = qs.filter(Q(trace_id=filters.search) | Q(session_id=filters.search) | Q(user_id=filters.search))
    if filters.text:
        # Case-insensitive, the words as one phrase (% and _ are literal). No index serves it (a trigram index would
        # slow every trace written): newest first, it stops at a page of matches, and other filters narrow the scan.
        qs = qs.filter(Q(input__icontains=filters.text) | Q(output__icontains=filters.text))
    return qs


# A cursor is the last row's position, "<started_at in microseconds since 1970>_<id>": any string
# of that shape is a valid place to continue from (the OpenAPI schema states the pattern).
CURSOR_PATTERN = r"^[0-9]{1,17}_[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _encode_cursor(trace: Trace) -> str:
    stamp = trace.started_at - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (stamp.days * 86_400 + stamp.seconds) * 1_000_000 + stamp.microseconds
    return f"{micros}_{trace.pk}"


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    if not _CURSOR.match(cursor):
        raise FilterError("cursor", "not a cursor this API gave out")
    micros, pk = cursor.split("_")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros)), int(pk)


@dataclass(frozen=True)
class TracePage:
    results: list[Trace]
    next_cursor: str | None


def trace_page(filters: TraceFilters, cursor: str = "", limit: int = PAGE_SIZE) -> TracePage:
    """Newest first; keyset pagination on (started_at, id) stays fast on deep pages."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise FilterError("limit", f"from 1 to {MAX_PAGE_SIZE}")
    qs = traces_filtered(filters).order_by("-started_at", "-id")
    if cursor:
        stamp, pk = _decode_cursor(cursor)
        qs = qs.filter(Q(started_at__lt=stamp) | Q(started_at=stamp, id__lt=pk))
    rows = list(qs[: limit + 1])
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return TracePage(rows[:limit], next_cursor)


COUNT_CAP = 10_000


def trace_count(filters: TraceFilters, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many traces the filters match, counted up to ``cap`` (a count past it reads "more than"): whether a
    report row's 3,765 SSO traces are all there, without counting a whole table for an unfiltered list."""
    found = traces_filtered(filters).values("id")[: cap + 1].count()
    return min(found, cap), found > cap


@dataclass(frozen=True)
class PromptLabel:
    """A prompt version label of a feature, with every prompt sent under it (each a content hash of its own)."""

    label: str
    versions: list[PromptVersion]
    # The models its traces ran on, with how many traces each (most first; "" for traces naming none): a version
    # registers the model of the first trace that named it, which later traces need not share.
    models: list[tuple[str, int]] = field(default_factory=list)

    # What changed from the label sent before it on the feature (its newest prompt against that one's): sentences
    # removed ("-") and added ("+"), in order; None for the first label, or where either sent no prompt.
    changes: list[tuple[str, str]] | None = None
    previous: str = ""  # the label it is compared with

    @property
    def removed(self) -> int:
        return sum(op == "-" for op, _ in self.changes or ())

    @property
    def added(self) -> int:
        return sum(op == "+" for op, _ in self.changes or ())

    @property
    def prompts(self) -> int:
        """The different prompts sent under the label (a trace that sent no prompt, hash empty, is none of them)."""
        return len({version.content_hash for version in self.versions if version.content_hash})

    @property
    def reused(self) -> bool:
        """Several different prompts under one label: the reports and the filters read them as one version."""
        return self.prompts > 1


def prompt_labels(feature: Feature | None = None) -> list[tuple[Feature | None, list[PromptLabel]]]:
    """Each feature's prompt version labels (of ``feature`` alone, if given), the last seen first, each with its
    prompts (text, model, parameters), newest first. A version belongs to every feature whose traces name it: one
    label and prompt is one row, registered under the first feature that sent it, whichever feature sends it next."""
    used = ModelRollup.objects.filter(prompt_version__isnull=False)
    own = PromptVersion.objects.all()
    if feature is not None:
        used, own = used.filter(feature=feature), own.filter(feature=feature)
    # What each feature's traces ran on, per version: also which versions a feature's traces name.
    ran: dict[tuple[int | None, int], Counter[str]] = {}
    for row in used.values("feature_id", "prompt_version_id", "model").annotate(n=Sum("traces")).order_by():
        ran.setdefault((row["feature_id"], row["prompt_version_id"]), Counter())[row["model"]] += row["n"]
    pairs = set(ran) | set(own.values_list("feature_id", "id"))
    versions = {v.id: v for v in PromptVersion.objects.filter(id__in={pv for _, pv in pairs})}
    features = {f.id: f for f in Feature.objects.filter(id__in={f for f, _ in pairs if f is not None})}
    grouped: dict[int | None, dict[str, list[PromptVersion]]] = {}
    for owner_id, version_id in pairs:
        version = versions[version_id]
        grouped.setdefault(owner_id, {}).setdefault(version.label, []).append(version)
    out = []
    for listed in sorted(grouped, key=lambda f: (f is None, features[f].key if f is not None else "")):
        # A version named without its prompt has no text: after the prompts (the demo's host page's traces named
        # support-v2.3 without one, and read as its first row, on another model).
        labels = [PromptLabel(label, sorted(found, key=lambda v: (not v.prompt_text, -v.last_seen.timestamp())),
                              _most_first(sum((ran.get((listed, v.id), Counter()) for v in found), Counter())))
                  for label, found in grouped[listed].items()]  # fmt: skip
        labels.sort(key=lambda item: (-max(v.last_seen for v in item.versions).timestamp(), item.label))
        labels = _changes_from_previous(labels)
        out.append((features.get(listed) if listed is not None else None, labels))
    return out


def _changes_from_previous(labels: list[PromptLabel]) -> list[PromptLabel]:
    """The labels, each with its prompt's changes from the label first sent before it (on this list's feature):
    its newest prompt against that one's. A label whose versions sent no prompt is compared with nothing."""
    sent = sorted((item for item in labels if item.versions[0].prompt_text),
                  key=lambda item: (min(v.first_seen for v in item.versions if v.prompt_text), item.label))  # fmt: skip
    compared = {
        after.label: replace(after, changes=prompt_changes(before.versions[0].prompt_text,
                                                           after.versions[0].prompt_text), previous=before.label)
        for before, after in zip(sent, sent[1:], strict=False)
    }  # fmt: skip
    return [compared.get(item.label, item) for item in labels]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def prompt_changes(before: str, after: str) -> list[tuple[str, str]]:
    """The sentences (and lines) ``after`` removed from ``before`` ("-") and added ("+"), in order: a prompt is
    often one paragraph, where a line diff would say the whole of it changed."""
    old = [part.strip() for part in _SENTENCE_END.split(before) if part.strip()]
    new = [part.strip() for part in _SENTENCE_END.split(after) if part.strip()]
    changes: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            changes += [("-", sentence) for sentence in old[i1:i2]]
        if op in ("insert", "replace"):
            changes += [("+", sentence) for sentence in new[j1:j2]]
    return changes


def _most_first(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class TraceFeedback:
    """What people said of one trace, for a list row: thumbs and ratings counted as the reports count them (the
    last choice per person), edits and comments, and how many implicit signals (copy, retry, ...) came in."""

    up: int = 0
    down: int = 0
    ratings: int = 0
    rating_sum: float = 0.0
    edits: int = 0
    comments: int = 0
    implicit: int = 0
    implicit_kinds: str = ""  # which, most first: "copy 2, abandon 1" (a copy is good news, an abandon is not)

    @property
    def rating_mean(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None

    @property
    def any(self) -> bool:
        return bool(self.up or self.down or self.ratings or self.edits or self.comments or self.implicit)


_TRACE_FEEDBACK = f"""
WITH fe AS (
    SELECT f.id, f.trace_id, f.kind, f.value, f.occurred_at, {CHOOSER_SQL} AS who
    FROM feedback_feedbackevent f WHERE f.trace_id = ANY(%s)
),
last_choice AS (
    SELECT DISTINCT ON (trace_id, kind, who) trace_id, kind, value
    FROM fe WHERE kind IN ({sql_list(CHOICE_KINDS)})
    ORDER BY trace_id, kind, who, occurred_at DESC, id DESC
),
choices AS (
    SELECT trace_id,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value > 0) AS up,
           count(*) FILTER (WHERE kind = '{FeedbackKind.THUMB}' AND value < 0) AS down,
           count(*) FILTER (WHERE kind = '{FeedbackKind.RATING}' AND value IS NOT NULL) AS ratings,
           COALESCE(sum(value) FILTER (WHERE kind = '{FeedbackKind.RATING}'), 0) AS rating_sum
    FROM last_choice GROUP BY trace_id
),
others AS (
    SELECT trace_id,
           count(*) FILTER (WHERE kind = '{FeedbackKind.EDIT}') AS edits,
           count(*) FILTER (WHERE kind = '{FeedbackKind.COMMENT}') AS comments,
           count(*) FILTER (WHERE kind NOT IN ({sql_list(EXPLICIT_KINDS)})) AS implicit,
           array_agg(kind) FILTER (WHERE kind NOT IN ({sql_list(EXPLICIT_KINDS)})) AS implicit_kinds
    FROM fe GROUP BY trace_id
)
SELECT o.trace_id, COALESCE(c.up, 0), COALESCE(c.down, 0), COALESCE(c.ratings, 0), COALESCE(c.rating_sum, 0),
       o.edits, o.comments, o.implicit, o.implicit_kinds
FROM others o LEFT JOIN choices c USING (trace_id)
"""


def feedback_by_trace(trace_ids: list[str]) -> dict[str, TraceFeedback]:
    """Each listed trace's feedback in one read (a page of the explorer: through the trace_id index)."""
    if not trace_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_TRACE_FEEDBACK, [trace_ids])
        return {row[0]: TraceFeedback(row[1], row[2], row[3], float(row[4]), row[5], row[6], row[7],
                                      ", ".join(f"{kind} {n}" for kind, n in _most_first(Counter(row[8] or ()))))
                for row in cursor.fetchall()}  # fmt: skip


@dataclass(frozen=True)
class TraceDetail:
    trace: Trace
    spans: list[Span]
    feedback: list[FeedbackEvent]
    outcomes: list[Outcome]


# Sections higher apps add to a trace read (evaluation's scores): registered at their start-up,
# since feedback never imports them. Each is (key, fn(trace_id) -> JSON-able value, portal template).
@dataclass(frozen=True)
class TraceExtra:
    key: str
    load: Callable[[str], Any]
    template: str = ""


_trace_extras: dict[str, TraceExtra] = {}


def trace_extras_register(key: str, load: Callable[[str], Any], *, template: str = "") -> None:
    """Add a section ``key`` to GET /api/v1/traces/{trace_id} and, with a template, to the trace page."""
    _trace_extras[key] = TraceExtra(key, load, template)


def trace_extras(trace_id: str) -> list[tuple[TraceExtra, Any]]:
    return [(extra, extra.load(trace_id)) for extra in _trace_extras.values()]


def trace_detail(trace_id: str) -> TraceDetail | None:
    if "\x00" in trace_id:  # PostgreSQL text cannot hold NUL: no trace has such an ID (404, not a 500)
        return None
    trace = Trace.objects.select_related("feature", "prompt_version").filter(trace_id=trace_id).first()
    if trace is None:
        return None
    return TraceDetail(
        trace=trace,
        # Parents first: by start, the longest first, then a root ("" parent) before its children's ties.
        spans=list(Span.objects.filter(trace_id=trace_id).order_by("start", "-end", "parent_span_id", "span_id")),
        feedback=list(
            FeedbackEvent.objects.filter(trace_id=trace_id)
            .select_related("prompt_version")
            .order_by("occurred_at", "id")
        ),
        # Tied by trace, or by session only: to the session's last trace before it (the rollup worker attributes
        # those within seconds of the traces arriving), as the reports count them.
        outcomes=list(
            Outcome.objects.filter(Q(trace_id=trace_id) | Q(trace_id="", attributed_trace_id=trace_id)).order_by(
                "occurred_at", "id"
            )
        ),
    )


# --- Overview: widget rejections (the feature table itself is evaluation.reports') ---------------


def widget_rejections(*, since: Any) -> list[dict[str, Any]]:
    from django.db.models import Max, Sum

    from feedback.models import WidgetRejection

    return list(
        WidgetRejection.objects.filter(day__gte=since)
        .values("reason", "origin")
        .annotate(count=Sum("count"), last_at=Max("last_at"))
        .order_by("-count")
    )


def filter_choices() -> dict[str, list[str]]:
    from feedback.models import Feature, PromptVersion

    return {
        "features": list(Feature.objects.values_list("key", flat=True)),
        "prompt_versions": sorted(set(PromptVersion.objects.values_list("label", flat=True))),
        # The models traces ran on (an exact name to pick: "haiku" matched nothing as typed text).
        "models": sorted(set(ModelRollup.objects.exclude(model="").values_list("model", flat=True).distinct())),
    }
