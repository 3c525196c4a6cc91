"""Code checks: each with inputs that pass and inputs that fail, and the reasons named."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from evaluation.judges.checks import (
    check_groundedness,
    check_json,
    check_json_schema,
    check_length,
    check_pii,
    check_problems,
    check_regex,
    find_pii,
    iban_valid,
    luhn_valid,
    run_check,
)
from evaluation.judges.rendering import JudgeInput
from evaluation.judges.results import JudgeError
from evaluation.judges.scales import BINARY, CONTINUOUS

# ---------------------------------------------------------------------- JSON


def test_json_validity() -> None:
    assert check_json('{"a": [1, 2]}').passed is True
    bad = check_json('{"a": [1, 2}')
    assert bad.passed is False and bad.raw_score == 0.0
    assert "not valid JSON" in bad.rationale and "line 1" in bad.rationale


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


def test_json_schema_names_each_violation() -> None:
    assert check_json_schema('{"answer": "yes", "confidence": 0.9}', SCHEMA).passed is True
    result = check_json_schema('{"answer": 3, "confidence": 1.5, "extra": true}', SCHEMA)
    assert result.passed is False
    assert result.rationale.startswith("3 schema violation(s)")
    assert "answer: 3 is not of type 'string'" in result.rationale
    assert "confidence: 1.5 is greater than the maximum of 1" in result.rationale
    assert "'extra' was unexpected" in result.rationale
    assert check_json_schema("not json", SCHEMA).rationale.startswith("not valid JSON")


def test_invalid_schema_is_refused_on_save() -> None:
    problems = check_problems({"check": "json_schema", "schema": {"type": "objekt"}}, "binary")
    assert len(problems) == 1 and "invalid JSON Schema" in problems[0]
    assert check_problems({"check": "json_schema", "schema": SCHEMA}, "binary") == []
    assert check_problems({"check": "json_schema", "schema": "{}"}, "binary") == [
        "parameter 'schema' has the wrong type (str)"
    ]


# ---------------------------------------------------------------------- regex


def test_regex_must_and_must_not() -> None:
    text = "To reset it, go to Admin console > Security > Single sign-on."
    ok = check_regex(text, must_match=[r"Admin console"], must_not_match=[r"(?i)forgot password"])
    assert ok.passed is True
    bad = check_regex(
        "Click 'Forgot password' on the login page.",
        must_match=[r"Admin console"],
        must_not_match=[r"(?i)forgot password"],
    )
    assert bad.passed is False
    assert "required pattern 'Admin console' not found" in bad.rationale
    assert "forbidden pattern '(?i)forgot password' found: 'Forgot password'" in bad.rationale
    assert check_regex("SSO", must_match=["sso"], ignore_case=True).passed is True
    assert check_regex("SSO", must_match=["sso"]).passed is False


def test_catastrophic_regex_is_refused_on_save_and_bounded_at_run_time() -> None:
    problems = check_problems({"check": "regex", "must_match": [r"(a|aa)+$", r"(x+x+)+y", "ok"]}, "binary")
    assert len(problems) == 2 and all("backtracks catastrophically" in p for p in problems)
    assert check_problems({"check": "regex", "must_match": ["["]}, "binary")[0].startswith("pattern '[' does not")
    with pytest.raises(JudgeError) as caught:  # bounded: the message says the 50 ms limit cut it off
        check_regex("a" * 5000 + "!", must_match=[r"(a|aa)+$"], timeout_s=0.05)
    assert caught.value.code == "config" and "took longer than 50 ms" in caught.value.message


# ---------------------------------------------------------------------- length


def test_length_bounds() -> None:
    text = "one two three four five"
    assert check_length(text, min_words=3, max_words=5, max_chars=30).passed is True
    too_short = check_length(text, min_words=6)
    assert too_short.passed is False and too_short.rationale == "5 words, fewer than the minimum 6"
    too_long = check_length(text, max_chars=10)
    assert too_long.passed is False and too_long.rationale == "23 characters, more than the maximum 10"
    assert check_problems({"check": "length"}, "binary") == [
        "give at least one of min_chars, max_chars, min_words, max_words"
    ]
    assert check_problems({"check": "length", "min_words": 10, "max_words": 5}, "binary") == [
        "min_words is above max_words"
    ]


# ---------------------------------------------------------------------- PII


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242 4242 4242 4242", True),  # Stripe's test Visa
        ("4111-1111-1111-1111", True),
        ("378282246310005", True),  # Amex
        ("5555555555554444", True),  # Mastercard
        ("4242 4242 4242 4241", False),
        ("1234 5678 9012 3456", False),
        ("4111-1111-1111-111x", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82 WEST 1234 5698 7654 32", True),
        ("FR1420041010050500013M02606", True),
        ("DE89 3704 0044 0532 0130 01", False),
        ("GB82 WEST 1234 5698 7654 33", False),
        ("XX00", False),
    ],
)
def test_iban_mod_97(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


def test_pii_found_and_masked() -> None:
    text = (
        "Write to jane.doe@acme.com or call +1 (415) 555-0132. Card 4242 4242 4242 4242, "
        "IBAN DE89 3704 0044 0532 0130 00."
    )
    result = check_pii(text)
    assert result.passed is False
    assert result.rationale == (
        "4 PII item(s) found: email j***@acme.com, phone number ending 32, card number ending 4242, IBAN DE…3000"
    )
    for secret in ("jane.doe", "555-0132", "4242 4242 4242 4242", "0532 0130"):
        assert secret not in result.rationale


def test_pii_checksums_keep_false_positives_out() -> None:
    text = (
        "Order 4242 4242 4242 4241 ships on 2024-01-15; reference DE89 3704 0044 0532 0130 01; "
        "version 1.2.3; total $1,299.00; ticket 123456789."
    )
    assert find_pii(text) == []
    assert check_pii(text).passed is True


def test_pii_kinds_can_be_restricted() -> None:
    text = "Card 4242 4242 4242 4242, mail a@b.io"
    assert [m.kind for m in find_pii(text, ["email"])] == ["email"]
    assert [m.kind for m in find_pii(text, ["card"])] == ["card"]
    assert [m.kind for m in find_pii(text, ["phone"])] == []  # a card number is not a phone number
    assert check_problems({"check": "pii", "kinds": ["email", "ssn"]}, "binary") == [
        "unknown PII kind 'ssn'; known: email, phone, card, iban"
    ]


def test_phone_formats() -> None:
    for phone in ("+44 20 7946 0958", "(415) 555-0132", "020 7946 0958", "+49 30 1234567", "+4930123456"):
        assert [m.kind for m in find_pii(f"Call {phone} today")] == ["phone"], phone


# ---------------------------------------------------------------------- groundedness

CONTEXT = (
    "Annual plans can be refunded pro rata within 30 days. "
    "Deleted users' data is kept for 30 days, then removed permanently. "
    "Requests over the limit get HTTP 429 with a Retry-After header."
)


def test_groundedness_share_of_supported_sentences() -> None:
    grounded = check_groundedness(
        "Annual plans are refunded pro rata within 30 days. Deleted users' data is kept for 30 days.", CONTEXT
    )
    assert grounded.raw_score == 1.0 and grounded.passed is True
    assert grounded.rationale == "2 of 2 sentences supported by the context"
    half = check_groundedness(
        "Annual plans are refunded pro rata within 30 days. Monthly plans get store credit from the billing team.",
        CONTEXT,
    )
    assert half.raw_score == 0.5
    assert "unsupported: 'Monthly plans get store credit from the billing team.'" in half.rationale


def test_groundedness_catches_an_invented_number() -> None:
    result = check_groundedness("Annual plans can be refunded pro rata within 90 days.", CONTEXT)
    assert result.raw_score == 0.0 and result.passed is False
    assert "numbers not in context: 90" in result.rationale


def test_groundedness_binary_and_missing_context() -> None:
    text = "Annual plans can be refunded pro rata within 30 days. Our CEO personally approves every refund request."
    assert check_groundedness(text, CONTEXT, scale=BINARY, min_share=0.8).passed is False
    assert check_groundedness(text, CONTEXT, scale=BINARY, min_share=0.5).passed is True
    with pytest.raises(JudgeError) as caught:
        check_groundedness(text, "  ")
    assert caught.value.code == "missing_input"
    assert check_groundedness("Thanks! Hi.", CONTEXT).rationale == "no factual sentences to check"


# ---------------------------------------------------------------------- registry


def test_run_check_dispatch_and_errors() -> None:
    judge_input = JudgeInput(input="hi", output='{"answer": "yes", "confidence": 0.5}', context=[CONTEXT])
    assert run_check({"check": "json_schema", "schema": SCHEMA}, judge_input, "binary").passed is True
    assert run_check({"check": "pii", "target": "input"}, judge_input, "binary").passed is True
    grounded = run_check({"check": "groundedness"}, JudgeInput(output="Annual plans refund."), CONTINUOUS)
    assert grounded.error_code == "missing_input"
    unknown = run_check({"check": "vibes"}, judge_input, "binary")
    assert unknown.error_code == "config" and "unknown check 'vibes'" in (unknown.error or "")
    wrong_scale = run_check({"check": "json"}, judge_input, "ordinal")
    assert wrong_scale.error_code == "config" and "binary" in (wrong_scale.error or "")
    no_output = run_check({"check": "json"}, JudgeInput(input="x"), "binary")
    assert no_output.error_code == "missing_input"
    typo = check_problems({"check": "length", "max_word": 3}, "binary")
    assert typo[0].startswith("unknown parameter 'max_word' for the length check")


# ---------------------------------------------------------------------- JSON Schema safety


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request it gets (none should arrive)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"type": "string", "description": "SECRET-FROM-INSIDE"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_remote_ref_is_never_fetched(listener: tuple[str, list[str]]) -> None:
    url, hits = listener
    schema = {"type": "object", "properties": {"a": {"$ref": f"{url}/internal.json"}}}
    problems = check_problems({"check": "json_schema", "schema": schema}, "binary")
    assert len(problems) == 1 and "only local $ref" in problems[0]
    with pytest.raises(JudgeError) as caught:
        check_json_schema('{"a": 1}', schema)
    assert caught.value.code == "config" and "never fetched" in str(caught.value)
    # Through run_check (the worker's door) it is an error result, not a verdict.
    result = run_check({"check": "json_schema", "schema": {"$ref": url}}, JudgeInput(output='{"a": 1}'), "binary")
    assert result.ok is False and "SECRET" not in (result.error or "")
    assert hits == []


def test_local_refs_still_resolve() -> None:
    schema = {"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}
    assert check_problems({"check": "json_schema", "schema": schema}, "binary") == []
    assert check_json_schema('{"a": "x"}', schema).passed is True
    assert check_json_schema('{"a": 1}', schema).passed is False


def test_schema_patterns_run_bounded_and_runaway_ones_are_refused_on_save() -> None:
    # On Python's re, ^(a+)+$ on this input backtracks for seconds (doubling per character).
    evil = "a" * 26 + "!"
    nested = r"^(a+)+$"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "string", "pattern": nested}, f'"{evil}"'),
        ({"type": "object", "patternProperties": {nested: {}}, "additionalProperties": False}, f'{{"{evil}": 1}}'),
    ]
    for schema, document in cases:
        assert check_json_schema(document, schema).passed is False
    # A pattern that runs away on the regex engine too: refused on save, an error (never a hang) at run time.
    runaway = r"(a|aa)+$"
    text = "a" * 5000 + "!"
    runaways: list[tuple[dict[str, Any], str]] = [
        ({"type": "string", "pattern": runaway}, f'"{text}"'),
        ({"type": "object", "patternProperties": {runaway: {}}}, f'{{"{text}": 1}}'),
        ({"type": "object", "patternProperties": {runaway: {}}, "additionalProperties": False}, f'{{"{text}": 1}}'),
        ({"type": "object", "properties": {"a": {"items": {"pattern": runaway}}}}, f'{{"a": ["{text}"]}}'),
    ]
    for schema, document in runaways:
        problems = check_problems({"check": "json_schema", "schema": schema}, "binary")
        assert len(problems) == 1 and "backtracks catastrophically" in problems[0]
        with pytest.raises(JudgeError) as caught:
            check_json_schema(document, schema)
        assert caught.value.code == "config" and "took longer than" in caught.value.message
    result = run_check(
        {"check": "json_schema", "schema": {"type": "string", "pattern": runaway}},
        JudgeInput(output=f'"{text}"'),
        "binary",
    )
    assert result.ok is False and result.error_code == "config"
    # unevaluatedProperties re-runs patternProperties on re inside jsonschema: the pair is refused.
    pair = {"type": "object", "patternProperties": {nested: {}}, "unevaluatedProperties": False}
    assert "unevaluatedProperties cannot" in check_problems({"check": "json_schema", "schema": pair}, "binary")[0]
    with pytest.raises(JudgeError):
        check_json_schema(f'{{"{evil}": 1}}', pair)
    # Ordinary patterns keep their meaning.
    keyed = {"type": "object", "patternProperties": {"^a": {"type": "string"}}, "additionalProperties": False}
    assert check_problems({"check": "json_schema", "schema": keyed}, "binary") == []
    assert check_json_schema('{"ab": "x"}', keyed).passed is True
    bad = check_json_schema('{"ab": 1, "x": 2}', keyed)
    assert "'x' does not match any of the regexes: '^a'" in bad.rationale and "ab: 1 is not of type" in bad.rationale
    assert check_json_schema('"abc"', {"pattern": "b"}).passed is True
    assert "'abc' does not match '^b'" in check_json_schema('"abc"', {"pattern": "^b"}).rationale
