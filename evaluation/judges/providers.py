"""LLM provider clients for judges: OpenAI-compatible Chat Completions and Anthropic Messages.

Sans-IO at the core: ``build_request`` makes the HTTP request for a ``JudgeCall`` and
``parse_response`` turns the provider's answer into a verdict or a ``JudgeError``; the sync
and async clients only add the transport, retries (429/5xx/timeouts, honouring
``Retry-After``) and an optional circuit breaker. Parsing is strict: an answer that is not
the structured verdict asked for is an error that keeps the raw text, never a default.

OpenAI-compatible covers OpenAI, Azure OpenAI (``azure_api_version`` set), vLLM, Ollama and
LiteLLM proxies through ``base_url``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from evaluation.judges.network import REFUSED, Refuse, async_checked_transport, checked_transport
from evaluation.judges.results import RAW_LIMIT, JudgeError, JudgeResult
from evaluation.judges.scales import Scale, VerdictError
from evaluation.judges.secrets import SecretStr

ProviderKind = Literal["openai", "anthropic"]
TOOL_NAME = "record_verdict"
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# The key's own trouble (rejected, not allowed, out of quota): the endpoint answered, so these
# never trip a breaker (a breaker shared wider than one key would let one tenant pause others).
KEY_STATUS = frozenset({401, 403, 429})


def is_endpoint_failure(error: JudgeError) -> bool:
    """Whether a failed call says the endpoint is in trouble (what a circuit breaker counts)."""
    return error.retryable and error.status_code not in KEY_STATUS


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """An organization's connection to one provider (not part of the judge version's hash)."""

    provider: ProviderKind
    base_url: str  # e.g. https://api.openai.com/v1, http://localhost:11434/v1, https://api.anthropic.com
    api_key: SecretStr | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    # A Retry-After longer than this is not slept through in a worker: the call fails as
    # retryable with ``retry_after_s`` so the task layer can reschedule it.
    max_retry_after_s: float = 30.0
    azure_api_version: str | None = None  # Azure OpenAI: deployments URL and api-key header
    anthropic_version: str = "2023-06-01"
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    # Connections kept open to the provider: the cap on calls in flight from one client.
    max_connections: int = 100


@dataclass(frozen=True, slots=True)
class JudgeCall:
    """One rendered prompt to judge, with the version's model and parameters."""

    model: str
    system: str
    user: str
    scale: Scale
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float | None = None
    seed: int | None = None
    logprobs: bool = True  # OpenAI-compatible only; Anthropic returns none
    top_logprobs: int = 5
    response_format: Literal["json_schema", "json_object"] = "json_schema"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


# ---------------------------------------------------------------------- requests


def build_request(config: ProviderConfig, call: JudgeCall) -> HttpRequest:
    """The HTTP request asking the provider for a structured verdict."""
    base = config.base_url.rstrip("/")
    headers = {"content-type": "application/json", **config.extra_headers}
    key = config.api_key.reveal() if config.api_key else None
    schema = call.scale.output_schema()
    if config.provider == "anthropic":
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = config.anthropic_version
        body: dict[str, Any] = {
            "model": call.model,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "system": call.system,
            "messages": [{"role": "user", "content": call.user}],
            "tools": [
                {
                    "name": TOOL_NAME,
                    "description": "Record the verdict on the output, with its rationale.",
                    "input_schema": schema,
                }
            ],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        }
        if call.top_p is not None:
            body["top_p"] = call.top_p
        url = base + "/messages" if base.endswith("/v1") else base + "/v1/messages"
        return HttpRequest("POST", url, headers, body)

    if config.azure_api_version:
        if key:
            headers["api-key"] = key
        url = f"{base}/openai/deployments/{call.model}/chat/completions?api-version={config.azure_api_version}"
    else:
        if key:
            headers["authorization"] = f"Bearer {key}"
        url = base + "/chat/completions"
    body = {
        "model": call.model,
        "messages": [{"role": "system", "content": call.system}, {"role": "user", "content": call.user}],
        "temperature": call.temperature,
        "max_tokens": call.max_tokens,
    }
    if call.response_format == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "verdict", "strict": True, "schema": schema},
        }
    else:
        body["response_format"] = {"type": "json_object"}
    if call.logprobs:
        body["logprobs"] = True
        if call.top_logprobs:
            body["top_logprobs"] = call.top_logprobs
    if call.top_p is not None:
        body["top_p"] = call.top_p
    if call.seed is not None:
        body["seed"] = call.seed
    return HttpRequest("POST", url, headers, body)


# ---------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class ParsedVerdict:
    raw_score: float
    rationale: str
    verdict_probability: float | None
    verdict_distribution: tuple[tuple[float, float], ...]
    input_tokens: int | None
    output_tokens: int | None
    model: str


def non_json_summary(body: str, content_type: str | None) -> str:
    """What a non-JSON answer was, never its content: the endpoint may be anything (an internal
    page a misconfigured base URL reaches) and errors are shown to the organization."""
    size = len(body.encode("utf-8", "replace"))
    return f"the provider answered non-JSON ({size} bytes, content-type {content_type or 'none'})"


def parse_response(
    config: ProviderConfig, call: JudgeCall, status: int, body: str, content_type: str | None = None
) -> ParsedVerdict:
    """The verdict in a provider's answer, or a JudgeError saying precisely what was wrong."""
    if status >= 400:
        raise _http_error(status, body, content_type)
    try:
        document = json.loads(body)
    except ValueError:
        raise JudgeError(non_json_summary(body, content_type), code="bad_response", raw="")
    if not isinstance(document, dict):
        raise JudgeError("the provider's response is not a JSON object", code="bad_response", raw="")
    if "error" in document and document["error"]:
        raise JudgeError(f"the provider reported an error: {_error_message(document)}", code="http", raw=body)
    if config.provider == "anthropic":
        return _parse_anthropic(call, document, body)
    return _parse_openai(call, document, body)


def _parse_openai(call: JudgeCall, document: dict[str, Any], body: str) -> ParsedVerdict:
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise JudgeError("the response has no choices", code="bad_response", raw=body)
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        raise JudgeError(f"the model refused: {message['refusal']}", code="refusal", raw=str(message["refusal"]))
    content = message.get("content")
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise JudgeError("the provider's content filter stopped the answer", code="refusal", raw=body)
    if finish == "length":
        raise JudgeError("the answer was cut off at max_tokens", code="truncated", raw=content or body)
    if not isinstance(content, str) or not content.strip():
        raise JudgeError("the model answered with no content", code="malformed", raw=body)
    raw_score, rationale = _verdict_from(call.scale, _json_object(content), content)
    probability: float | None = None
    distribution: tuple[tuple[float, float], ...] = ()
    logprobs = (choice.get("logprobs") or {}).get("content")
    if isinstance(logprobs, list) and logprobs:
        probability, distribution = verdict_token_probability(content, logprobs, call.scale)
    usage = document.get("usage") or {}
    return ParsedVerdict(
        raw_score=raw_score,
        rationale=rationale,
        verdict_probability=probability,
        verdict_distribution=distribution,
        input_tokens=_int_or_none(usage.get("prompt_tokens")),
        output_tokens=_int_or_none(usage.get("completion_tokens")),
        model=str(document.get("model") or call.model),
    )


def _parse_anthropic(call: JudgeCall, document: dict[str, Any], body: str) -> ParsedVerdict:
    blocks = document.get("content")
    if not isinstance(blocks, list):
        raise JudgeError("the response has no content blocks", code="bad_response", raw=body)
    stop = document.get("stop_reason")
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    if stop == "refusal":
        raise JudgeError("the model refused", code="refusal", raw=text or body)
    if stop == "max_tokens":
        raise JudgeError("the answer was cut off at max_tokens", code="truncated", raw=body)
    tool_uses = [
        b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == TOOL_NAME
    ]
    if not tool_uses:
        said = f": {text[:200]!r}" if text else ""
        raise JudgeError(f"the model did not call {TOOL_NAME}{said}", code="malformed", raw=text or body)
    arguments = tool_uses[0].get("input")
    if not isinstance(arguments, dict):
        raise JudgeError(f"the {TOOL_NAME} input is not an object", code="malformed", raw=body)
    raw_score, rationale = _verdict_from(call.scale, arguments, json.dumps(arguments, ensure_ascii=False))
    usage = document.get("usage") or {}
    return ParsedVerdict(
        raw_score=raw_score,
        rationale=rationale,
        verdict_probability=None,
        verdict_distribution=(),
        input_tokens=_int_or_none(usage.get("input_tokens")),
        output_tokens=_int_or_none(usage.get("output_tokens")),
        model=str(document.get("model") or call.model),
    )


def _json_object(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise JudgeError(f"the answer is not valid JSON ({exc})", code="malformed", raw=content)
    if not isinstance(value, dict):
        raise JudgeError("the answer is JSON but not an object", code="malformed", raw=content)
    return value


def _verdict_from(scale: Scale, answer: dict[str, Any], raw: str) -> tuple[float, str]:
    extra = sorted(set(answer) - {"verdict", "rationale"})
    if "verdict" not in answer:
        raise JudgeError("the answer has no verdict", code="malformed", raw=raw)
    if extra:
        raise JudgeError(f"the answer has unexpected fields: {', '.join(extra)}", code="malformed", raw=raw)
    rationale = answer.get("rationale", "")
    if not isinstance(rationale, str):
        raise JudgeError("the rationale is not a string", code="malformed", raw=raw)
    try:
        return scale.parse_verdict(answer["verdict"]), rationale.strip()
    except VerdictError as exc:
        raise JudgeError(str(exc), code="malformed", raw=raw)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_message(document: Mapping[str, Any]) -> str:
    error = document.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)[:300]
    return str(error)[:300]


def _http_error(status: int, body: str, content_type: str | None = None) -> JudgeError:
    try:
        detail = _error_message(json.loads(body))
    except (ValueError, AttributeError):
        detail = non_json_summary(body, content_type) if body.strip() else "no body"
        body = ""  # not kept either: raw_response is shown too
    meaning = {
        401: "the provider rejected the API key",
        403: "the API key may not use this model",
        404: "unknown model or endpoint (check the base URL and model name)",
        429: "rate limited by the provider",
    }.get(status, "server error at the provider" if status >= 500 else "the provider refused the request")
    return JudgeError(
        f"HTTP {status}: {meaning} ({detail})",
        code="http",
        raw=body,
        status_code=status,
        retryable=status in RETRYABLE_STATUS,
    )


# ---------------------------------------------------------------------- logprobs


def top_level_value_span(content: str, key: str) -> tuple[int, int] | None:
    """Character span of ``key``'s value in a JSON object's text, at the top level only (a
    rationale that quotes ``"verdict":`` inside its string is skipped). String values span
    their inside, without the quotes."""
    decoder = json.JSONDecoder()
    i = content.find("{")
    if i < 0:
        return None
    i += 1
    n = len(content)
    while i < n:
        while i < n and content[i] in " \t\r\n,":
            i += 1
        if i >= n or content[i] != '"':
            return None
        try:
            name, i = decoder.raw_decode(content, i)
        except ValueError:
            return None
        while i < n and content[i] in " \t\r\n:":
            i += 1
        start = i
        try:
            _, end = decoder.raw_decode(content, i)
        except ValueError:
            return None
        if name == key:
            if content[start] == '"':
                return start + 1, end - 1
            return start, end
        i = end
    return None


def verdict_token_probability(
    content: str, token_logprobs: list[dict[str, Any]], scale: Scale
) -> tuple[float | None, tuple[tuple[float, float], ...]]:
    """P(verdict) from OpenAI-style content logprobs: exp of the summed logprobs of the tokens
    that overlap the verdict value's characters; and, for single-token verdicts (binary,
    ordinal), the probability of each top_logprobs alternative that is itself a verdict."""
    span = top_level_value_span(content, "verdict")
    if span is None:
        return None, ()
    # Offsets in UTF-8 bytes when the provider gives them (a token may split a character).
    encoded = content.encode("utf-8")
    start = len(content[: span[0]].encode("utf-8"))
    end = len(content[: span[1]].encode("utf-8"))
    position = 0
    overlapping: list[dict[str, Any]] = []
    for entry in token_logprobs:
        raw = entry.get("bytes")
        size = len(raw) if isinstance(raw, list) else len(str(entry.get("token", "")).encode("utf-8"))
        if position < end and position + size > start:
            overlapping.append(entry)
        position += size
    if position != len(encoded) or not overlapping:
        return None, ()  # the logprobs do not describe this content: do not guess
    try:
        total = sum(float(entry["logprob"]) for entry in overlapping)
    except (KeyError, TypeError, ValueError):
        return None, ()
    distribution: dict[float, float] = {}
    # A continuous verdict spans several tokens ("0", ".", "85"): its first token's
    # alternatives are not verdicts, so only binary and ordinal scales get a distribution.
    alternatives = (overlapping[0].get("top_logprobs") or []) if scale.kind != "continuous" else []
    for alternative in alternatives:
        token = str(alternative.get("token", "")).strip().strip('"').strip()
        try:
            value = scale.parse_verdict(token)
            probability = math.exp(float(alternative["logprob"]))
        except (VerdictError, KeyError, TypeError, ValueError):
            continue
        distribution[value] = distribution.get(value, 0.0) + probability
    ranked = tuple(sorted(((v, round(p, 6)) for v, p in distribution.items()), key=lambda vp: -vp[1]))
    return math.exp(total), ranked


# ---------------------------------------------------------------------- retries and breaker


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_delay(config: ProviderConfig, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before retry number ``attempt`` (1-based): the server's Retry-After when it sent
    one, else exponential backoff with full jitter."""
    if retry_after is not None:
        return retry_after
    return rng.uniform(0, min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1)))


class CircuitBreaker:
    """Per-provider breaker: after ``failure_threshold`` consecutive failed calls it opens and
    refuses calls for ``reset_after_s``; then one trial call is let through (half-open) and its
    outcome closes or re-opens it. Thread-safe; one per provider key per worker process.
    Only endpoint trouble counts (``is_endpoint_failure``): never a key's own 401/403/429."""

    def __init__(
        self, *, failure_threshold: int = 5, reset_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        with self._lock:
            return self._state()

    def _state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise JudgeError(circuit_open) when the call must not be made."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            assert self._opened_at is not None
            wait = max(0.0, self.reset_after_s - (self._clock() - self._opened_at))
        raise JudgeError(
            f"the provider failed {self.failure_threshold} times in a row; calls paused",
            code="circuit_open",
            retryable=True,
            retry_after_s=wait or None,
            attempts=0,
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


# ---------------------------------------------------------------------- clients


def _result(parsed: ParsedVerdict, scale: Scale, body: str, latency_ms: float, attempts: int) -> JudgeResult:
    return scale.result(
        parsed.raw_score,
        parsed.rationale,
        verdict_probability=parsed.verdict_probability,
        verdict_distribution=parsed.verdict_distribution,
        raw_response=body[:RAW_LIMIT],
        input_tokens=parsed.input_tokens,
        output_tokens=parsed.output_tokens,
        latency_ms=round(latency_ms, 1),
        model=parsed.model,
        attempts=attempts,
    )


def _timeout(config: ProviderConfig) -> httpx.Timeout:
    return httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)


def _limits(config: ProviderConfig) -> httpx.Limits:
    return httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections)


def _transport_error(exc: httpx.HTTPError, config: ProviderConfig) -> JudgeError:
    if isinstance(exc, httpx.TimeoutException):
        return JudgeError(f"no answer within {config.timeout_s:g} s", code="timeout", retryable=True)
    if str(exc).startswith(REFUSED):  # the address check of evaluation.judges.network: said as it is
        return JudgeError(str(exc), code="refused", retryable=False)
    return JudgeError(f"could not reach the provider: {type(exc).__name__}", code="transport", retryable=True)


class _Attempts:
    """The retry policy shared by the sync and async clients."""

    def __init__(self, config: ProviderConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.attempt = 0

    def next_delay(self, error: JudgeError, headers: Mapping[str, str]) -> float | None:
        """Seconds to sleep before trying again, or None to give up with ``error``."""
        error.attempts = self.attempt
        if not error.retryable or self.attempt > self.config.max_retries:
            return None
        retry_after = retry_after_seconds(headers)
        if retry_after is not None and retry_after > self.config.max_retry_after_s:
            error.retry_after_s = retry_after
            return None
        return backoff_delay(self.config, self.attempt, retry_after, self.rng)


class ProviderClient:
    """Blocking client: one ``judge`` call = one verdict, retried on 429/5xx/timeouts."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        http: httpx.Client | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        refuse: Refuse | None = None,
    ) -> None:
        """``refuse``: asked of every connection's host and addresses (evaluation.judges.network)."""
        self.config = config
        self.breaker = breaker
        transport = checked_transport(refuse, limits=_limits(config)) if refuse else None
        self._http = http or httpx.Client(timeout=_timeout(config), limits=_limits(config), transport=transport)
        self._owns_http = http is None
        self._sleep = sleep
        self._rng = rng or random.Random()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def judge(self, call: JudgeCall) -> JudgeResult:
        """The verdict, or JudgeError after the retries (never a default verdict)."""
        if self.breaker:
            self.breaker.before_call()
        request = build_request(self.config, call)
        attempts = _Attempts(self.config, self._rng)
        while True:
            attempts.attempt += 1
            started = time.perf_counter()
            headers: Mapping[str, str] = {}
            try:
                response = self._http.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    json=request.body,
                    timeout=_timeout(self.config),
                )
                headers, body = response.headers, response.text
                latency_ms = (time.perf_counter() - started) * 1000
                parsed = parse_response(
                    self.config, call, response.status_code, body, response.headers.get("content-type")
                )
            except (JudgeError, httpx.HTTPError) as exc:
                error = exc if isinstance(exc, JudgeError) else _transport_error(exc, self.config)
                delay = attempts.next_delay(error, headers)
                if delay is None:
                    self._record(error)
                    raise error
                self._sleep(delay)
                continue
            if self.breaker:
                self.breaker.record_success()
            return _result(parsed, call.scale, body, latency_ms, attempts.attempt)

    def _record(self, error: JudgeError) -> None:
        # Only provider trouble trips the breaker; a malformed answer is the judge's own problem.
        if self.breaker:
            if is_endpoint_failure(error):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()


class AsyncProviderClient:
    """The same client on asyncio, so one worker keeps many judge calls in flight."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        http: httpx.AsyncClient | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        refuse: Refuse | None = None,
    ) -> None:
        self.config = config
        self.breaker = breaker
        transport = async_checked_transport(refuse, limits=_limits(config)) if refuse else None
        self._http = http or httpx.AsyncClient(timeout=_timeout(config), limits=_limits(config), transport=transport)
        self._owns_http = http is None
        self._rng = rng or random.Random()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncProviderClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def judge(self, call: JudgeCall) -> JudgeResult:
        if self.breaker:
            self.breaker.before_call()
        request = build_request(self.config, call)
        attempts = _Attempts(self.config, self._rng)
        while True:
            attempts.attempt += 1
            started = time.perf_counter()
            headers: Mapping[str, str] = {}
            try:
                response = await self._http.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    json=request.body,
                    timeout=_timeout(self.config),
                )
                headers, body = response.headers, response.text
                latency_ms = (time.perf_counter() - started) * 1000
                parsed = parse_response(
                    self.config, call, response.status_code, body, response.headers.get("content-type")
                )
            except (JudgeError, httpx.HTTPError) as exc:
                error = exc if isinstance(exc, JudgeError) else _transport_error(exc, self.config)
                delay = attempts.next_delay(error, headers)
                if delay is None:
                    if self.breaker:
                        if is_endpoint_failure(error):
                            self.breaker.record_failure()
                        else:
                            self.breaker.record_success()
                    raise error
                await asyncio.sleep(delay)
                continue
            if self.breaker:
                self.breaker.record_success()
            return _result(parsed, call.scale, body, latency_ms, attempts.attempt)
