"""Running queued scores: claim a batch of pending scores, keep many provider calls in flight
on one event loop per worker process, write each verdict (or its error) back.

- Idempotent: a score row exists once per (trace, judge version, run index) (unique key, queued
  with ON CONFLICT DO NOTHING), and a result is written only onto the row this runner claimed
  (status running): a rerun of the task never doubles a score nor overwrites a finished one.
- Concurrency cap per organization: one runner per organization at a time (a PostgreSQL
  advisory lock on its schema), holding at most settings.JUDGE_ORG_CONCURRENCY calls in flight.
- Provider calls go through the engine's async client (retries with backoff on 429/5xx and
  timeouts, honouring Retry-After) behind one circuit breaker per organization's provider key
  per process (one tenant's exhausted quota or dead endpoint never pauses another's scores;
  the key's own 401/403/429 never trip it); while a breaker is open the score is deferred
  (pending again, due later), not failed.
- Errors become status=error with the engine's code and message, never a made-up verdict.
- Cost comes from feedback's price book (the organization's prices over the built-in table).

The event loop runs in a thread of its own: Django's ORM refuses to run inside a running loop,
so the task's thread does the database work and hands calls to the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from evaluation.judges.engine import run_judge, run_judge_async
from evaluation.judges.providers import AsyncProviderClient, CircuitBreaker, ProviderClient
from evaluation.judges.results import JudgeError, JudgeResult
from evaluation.judges.secrets import KeyRingError
from evaluation.judges.versions import JudgeVersionSpec
from evaluation.models import Judge, JudgeVersion
from evaluation.selectors import judge_inputs
from evaluation.services import outbound
from evaluation.services.provider_keys import provider_config, provider_key_for
from evaluation.services.shared import utc_now
from feedback.prices import PriceBook
from feedback.services.prices import price_book_load
from tenants.schema import current_schema

CLAIM_BATCH = 200
# A claimed score whose runner died is claimed again after this lease.
LEASE = timedelta(minutes=10)
# A score deferred more often than this (breaker open, long Retry-After) fails with the last reason.
MAX_DEFERRALS = 8
# A score claimed more often than this (its runner died on it each time, the lease ran out) is
# failed instead of being claimed forever. Above MAX_DEFERRALS: deferrals count as attempts too.
MAX_ATTEMPTS = MAX_DEFERRALS + 2


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- The per-process event loop, provider clients and breakers --------------------------------


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="judge-calls", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, JudgeResult]) -> concurrent.futures.Future[JudgeResult]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


_loop: _LoopThread | None = None
_loop_pid: int | None = None
SHARD_CONNECTIONS = 16


class _Shards:
    """Clients to one provider endpoint that share a breaker; calls are spread round-robin."""

    def __init__(self, clients: list[AsyncProviderClient]) -> None:
        self._cycle = itertools.cycle(clients)

    def next(self) -> AsyncProviderClient:
        return next(self._cycle)


_clients: dict[tuple[Any, ...], _Shards] = {}
_breakers: dict[tuple[str, int], CircuitBreaker] = {}
_breaker_clock: Callable[[], float] = time.monotonic
_lock = threading.Lock()


def _event_loop() -> _LoopThread:
    import os

    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked worker child starts its own
            if _loop is not None:
                # Forked: the parent's breakers are not this process's calls. A process's first
                # loop keeps its breakers: another thread may already count failures on one.
                _breakers.clear()
            _loop, _loop_pid = _LoopThread(), os.getpid()
            _clients.clear()  # bound to the previous loop
        return _loop


def breaker_for(key_id: int) -> CircuitBreaker:
    """One breaker per organization's provider key per process: a storm of 5xx stops the calls of
    every judge using that key, and nobody else's (another tenant may share the endpoint)."""
    with _lock:
        key = (current_schema(), key_id)
        if key not in _breakers:
            _breakers[key] = CircuitBreaker(
                failure_threshold=int(_setting("JUDGE_BREAKER_FAILURES", 5)),
                reset_after_s=float(_setting("JUDGE_BREAKER_RESET_S", 30.0)),
                clock=_breaker_clock,
            )
        return _breakers[key]


def breakers_reset(*, clock: Callable[[], float] | None = None) -> None:
    """Forget every breaker's state and cached client (what a fresh worker process starts with).
    ``clock`` replaces the breakers' monotonic clock (tests: a clock that moves only when told)."""
    global _breaker_clock
    with _lock:
        _breaker_clock = clock or time.monotonic
        _breakers.clear()
        _clients.clear()


def _client_settings() -> dict[str, Any]:
    return {
        "timeout_s": float(_setting("JUDGE_PROVIDER_TIMEOUT_S", 60.0)),
        "max_retries": int(_setting("JUDGE_PROVIDER_MAX_RETRIES", 3)),
        "max_connections": int(_setting("JUDGE_ORG_CONCURRENCY", 128)),
    }


def _async_client(judge: Judge, provider: str, keys: dict[tuple[int, str], Any]) -> AsyncProviderClient | JudgeError:
    # The key is looked up once per judge and provider per run, not per score.
    if (judge.id, provider) not in keys:
        keys[(judge.id, provider)] = provider_key_for(judge, provider)
    key = keys[(judge.id, provider)]
    if key is None:
        return JudgeError(f"no {provider} key: add one under Settings > Judge provider keys", code="config")
    options = _client_settings()
    cache_key = (
        current_schema(),
        key.id,
        key.provider,
        key.base_url,
        key.secret_encrypted,
        key.azure_api_version,
        *options.values(),
    )
    cached = _clients.get(cache_key)
    if cached is not None:
        return cached.next()
    try:
        config = provider_config(key, **options)
    except KeyRingError as exc:
        return JudgeError(str(exc), code="config")
    # httpx's connection pool schedules every waiting request against every connection: with
    # a hundred calls in flight through one client that costs ~20 ms of CPU per call. Shards of
    # SHARD_CONNECTIONS connections each keep it near 1.5 ms (bench/judges.py).
    shards = max(1, -(-config.max_connections // SHARD_CONNECTIONS))
    breaker = breaker_for(key.id)
    shard_config = replace(config, max_connections=min(config.max_connections, SHARD_CONNECTIONS))
    refuse = outbound.connect_refusal("JUDGE_ALLOWED_HOSTS")
    client = _Shards([AsyncProviderClient(shard_config, breaker=breaker, refuse=refuse) for _ in range(shards)])
    _clients[cache_key] = client
    return client.next()


def sync_client_for(judge: Judge | None, provider: str) -> ProviderClient:
    """A blocking client for one call from a web request (the portal's test run): short timeout, no retries."""
    from evaluation.models import ProviderKey
    from evaluation.services.shared import JudgeServiceError

    key = provider_key_for(judge, provider) if judge is not None else None
    key = key or ProviderKey.objects.filter(provider=provider).order_by("-created_at").first()
    if key is None:
        raise JudgeServiceError(f"no {provider} key yet: add one under Settings > Judge provider keys")
    try:
        config = provider_config(key, timeout_s=20.0, max_retries=0, max_connections=2)
    except KeyRingError as exc:
        raise JudgeServiceError(str(exc)) from None
    return ProviderClient(config, breaker=breaker_for(key.id), refuse=outbound.connect_refusal("JUDGE_ALLOWED_HOSTS"))


# --- Claiming and writing ---------------------------------------------------------------------

# The batch is picked in a MATERIALIZED CTE: evaluated once. As a subquery in UPDATE ... FROM, the
# planner may put it on the inner side of a nested loop and run it again for every row of the
# table (it does when the statistics say the table is empty: an organization whose scores were
# deleted or rolled back, then analyzed); each run skips the rows already claimed and locks the
# next one, so LIMIT held per run, not per claim, and one claim took every pending score.
_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM evaluation_score
    WHERE (status = 'pending' AND due_at <= %s) OR (status = 'running' AND due_at < %s)
    ORDER BY due_at, id LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE evaluation_score s SET status = 'running', due_at = %s, attempts = s.attempts + 1
FROM c
WHERE s.id = c.id
RETURNING s.id, s.trace_id, s.judge_id, s.judge_version_id, s.attempts
"""
_WRITE = """
UPDATE evaluation_score SET status = %s, raw_score = %s, score = %s, passed = %s, rationale = %s,
    verdict_probability = %s, pass_probability = %s, raw_response = %s, error_code = %s, error_message = %s,
    model = %s, cost_usd = %s, latency_ms = %s, input_tokens = %s, output_tokens = %s, scored_at = %s
WHERE id = %s AND status = 'running'
"""
# The middle parameter takes the claim back off ``attempts`` (1 while the judge is paused: waiting is no attempt).
_DEFER = (
    "UPDATE evaluation_score SET status = 'pending', due_at = %s, attempts = greatest(attempts - %s, 0) "
    "WHERE id = %s AND status = 'running'"
)


@dataclass(frozen=True)
class Claimed:
    id: int
    trace_id: str
    judge_id: int
    judge_version_id: int
    attempts: int


def _claim(limit: int) -> list[Claimed]:
    now = utc_now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM, [now, now, limit, now + LEASE])
        return [Claimed(*row) for row in cursor.fetchall()]


def _cost(book: PriceBook, provider: str, result: JudgeResult, at: datetime) -> Decimal | None:
    if result.input_tokens is None and result.output_tokens is None:
        return Decimal(0) if provider in ("offline", "") else None
    price = book.find(provider, result.model, at)
    if price is None:
        return None
    return price.cost(result.input_tokens or 0, result.output_tokens or 0, 0)


def _clip(text: str, limit: int = 20_000) -> str:
    return text.replace("\x00", "")[:limit]


@dataclass
class RunStats:
    ok: int = 0
    errors: int = 0
    deferred: int = 0
    max_in_flight: int = 0
    skipped_locked: bool = False
    seconds: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.ok + self.errors


class _Writer:
    def __init__(self, book: PriceBook, stats: RunStats) -> None:
        self.book = book
        self.stats = stats
        self.rows: list[tuple[Any, ...]] = []
        self.deferrals: list[tuple[datetime, int, int]] = []

    def add(self, claimed: Claimed, provider: str, scale: Any, result: JudgeResult) -> None:
        now = utc_now()
        # The breaker refused the call: nothing is known about this trace yet, so it waits.
        if result.error_code == "circuit_open" and claimed.attempts < MAX_DEFERRALS:
            wait = float(_setting("JUDGE_BREAKER_RESET_S", 30.0))
            self.deferrals.append((now + timedelta(seconds=max(wait, 0.05)), 0, claimed.id))
            self.stats.deferred += 1
            return
        if result.ok:
            self.stats.ok += 1
        else:
            self.stats.errors += 1
            code = result.error_code or "error"
            self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
        pass_probability = scale.pass_probability(result) if scale is not None and result.ok else None
        self.rows.append(
            (
                "ok" if result.ok else "error", result.raw_score, result.score, result.passed, _clip(result.rationale),
                result.verdict_probability, pass_probability, _clip(result.raw_response), result.error_code or "",
                _clip(result.error or "", 2000), result.model[:200], _cost(self.book, provider, result, now),
                result.latency_ms, result.input_tokens, result.output_tokens, now, claimed.id,
            )
        )  # fmt: skip

    def flush(self) -> None:
        if not self.rows and not self.deferrals:
            return
        with transaction.atomic(), connection.cursor() as cursor:
            if self.rows:
                cursor.executemany(_WRITE, self.rows)
            if self.deferrals:
                cursor.executemany(_DEFER, self.deferrals)
        self.rows, self.deferrals = [], []


def _org_lock_key() -> int:
    digest = hashlib.sha256(f"candor-judges:{current_schema()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def scores_run(*, max_seconds: float = 50.0, concurrency: int | None = None) -> RunStats:
    """Run queued scores of the current organization until none is due or ``max_seconds`` pass."""
    started = time.monotonic()
    stats = RunStats()
    cap = max(1, concurrency or int(_setting("JUDGE_ORG_CONCURRENCY", 128)))
    lock = _org_lock_key()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        if not cursor.fetchone()[0]:
            stats.skipped_locked = True  # another runner holds this organization's cap
            return stats
    try:
        _run_locked(stats, cap, started, max_seconds)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
    stats.seconds = time.monotonic() - started
    return stats


def _run_locked(stats: RunStats, cap: int, started: float, max_seconds: float) -> None:
    with connection.cursor() as cursor:
        book = price_book_load(cursor.cursor)
    writer = _Writer(book, stats)
    versions: dict[int, tuple[JudgeVersion, JudgeVersionSpec]] = {}
    judges: dict[int, Judge] = {}
    in_flight: dict[concurrent.futures.Future[JudgeResult], tuple[Claimed, str, Any]] = {}
    loop: _LoopThread | None = None
    keys: dict[tuple[int, str], Any] = {}
    exhausted = False
    last_flush = time.monotonic()
    while True:
        out_of_time = time.monotonic() - started > max_seconds
        free = cap - len(in_flight)
        if not exhausted and not out_of_time and free >= min(cap, CLAIM_BATCH) // 4 + 1:
            claimed = _claim(min(free, CLAIM_BATCH))
            exhausted = len(claimed) < min(free, CLAIM_BATCH)
            if claimed:
                _load(claimed, versions, judges)
                inputs = judge_inputs(list({c.trace_id for c in claimed}))
                for item in claimed:
                    version, spec = versions[item.judge_version_id]
                    judge = judges[item.judge_id]
                    scale = spec.scale_spec if spec.kind != "external" else None
                    judge_input = inputs.get(item.trace_id)
                    if judge.paused:
                        writer.deferrals.append((utc_now() + timedelta(minutes=5), 1, item.id))
                        stats.deferred += 1
                        continue
                    if item.attempts > MAX_ATTEMPTS:  # a poison score: every runner before stopped on it
                        reason = (
                            f"gave up after {item.attempts - 1} attempts: the runner stopped on this score each time"
                        )
                        writer.add(
                            item, spec.provider, scale, JudgeResult.failure(JudgeError(reason, code="transport"))
                        )
                        continue
                    if judge_input is None:
                        result = JudgeResult.failure(JudgeError("the trace is not stored (yet)", code="missing_input"))
                        writer.add(item, spec.provider, scale, result)
                        continue
                    if spec.kind != "llm" or spec.provider == "offline":
                        writer.add(item, spec.provider, scale, _run_sync(spec, judge_input))
                        continue
                    loop = loop or _event_loop()  # first: a new loop (a forked worker) resets the clients
                    client = _async_client(judge, spec.provider, keys)
                    if isinstance(client, JudgeError):
                        writer.add(item, spec.provider, scale, JudgeResult.failure(client, model=spec.model))
                        continue
                    future = loop.submit(run_judge_async(spec, judge_input, client=client))
                    in_flight[future] = (item, spec.provider, scale)
                stats.max_in_flight = max(stats.max_in_flight, len(in_flight))
        if in_flight:
            done, _ = concurrent.futures.wait(list(in_flight), timeout=0.05, return_when="FIRST_COMPLETED")
            for future in done:
                item, provider, scale = in_flight.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the engine returns failures; anything else is our bug, kept as the reason
                    result = JudgeResult.failure(JudgeError(f"internal error: {type(exc).__name__}", code="transport"))
                writer.add(item, provider, scale, result)
        if len(writer.rows) + len(writer.deferrals) >= 100 or time.monotonic() - last_flush > 0.25:
            writer.flush()
            last_flush = time.monotonic()
        if not in_flight and (exhausted or out_of_time):
            writer.flush()
            if out_of_time or not _due_now():
                return
            exhausted = False


def _run_sync(spec: JudgeVersionSpec, judge_input: Any) -> JudgeResult:
    """A code or offline judge in this thread. The engine returns failures; anything it raises is
    our bug, stored as this score's error (as on the async path) instead of stopping the runner."""
    try:
        return run_judge(spec, judge_input)
    except Exception as exc:
        detail = str(exc).replace("\n", " ")[:200]
        message = f"internal error: {type(exc).__name__}" + (f": {detail}" if detail else "")
        return JudgeResult.failure(JudgeError(message, code="config"), model=spec.model)


def _due_now() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM evaluation_score WHERE status = 'pending' AND due_at <= now())")
        return bool(cursor.fetchone()[0])


def _load(
    claimed: list[Claimed], versions: dict[int, tuple[JudgeVersion, JudgeVersionSpec]], judges: dict[int, Judge]
) -> None:
    missing_versions = {c.judge_version_id for c in claimed} - set(versions)
    for version in JudgeVersion.objects.filter(id__in=missing_versions):
        versions[version.id] = (version, version.spec)
    # Judges are re-read per claim: a pause flipped by billing takes effect within a batch.
    for judge in Judge.objects.filter(id__in={c.judge_id for c in claimed}).select_related("provider_key"):
        judges[judge.id] = judge


def score_rerun(*, score_id: str) -> str | None:
    """Queue another run of a finished score's trace and version (the next run index); the new score_id."""
    from evaluation.models import Score
    from evaluation.services.sampling import QueuedScore, scores_queue

    score = Score.objects.filter(score_id=score_id).first()
    if score is None:
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(run_index), 0) + 1 FROM evaluation_score "
            "WHERE trace_id = %s AND judge_version_id = %s",
            [score.trace_id, score.judge_version_id],
        )
        (run_index,) = cursor.fetchone()
        row = QueuedScore(
            score.trace_id, score.judge_id, score.judge_version_id, "manual", score.stratum,
            score.inclusion_probability or 1.0, score.feature_id, score.trace_day, None, run_index,
        )  # fmt: skip
        scores_queue(cursor, [row], now=utc_now())
    new = Score.objects.filter(
        trace_id=score.trace_id, judge_version_id=score.judge_version_id, run_index=run_index
    ).first()
    return new.score_id if new else None
