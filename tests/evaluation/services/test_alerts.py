"""Alert rules on seeded data: each default rule fires once, de-duplicates while it keeps firing and
resolves; deliveries go over real HTTP to a local receiver, signed as documented; a receiver that
answers 500 or times out is retried with backoff then marked failing, and evaluation never waits
on it; webhook URLs to private addresses are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from evaluation.models import Alert, AlertMetric, AlertRule, Delivery, DeliveryStatus, NotificationChannel
from evaluation.reports.selectors import measures_by, outcome_delay
from evaluation.services.alerts import (
    BACKOFF_S,
    MAX_ATTEMPTS,
    AlertError,
    Reading,
    _windows,
    _worse_than,
    alert_resolve,
    alert_rule_create,
    alert_rule_toggle,
    alert_rules_ensure,
    alerts_evaluate,
    channel_create,
    deliveries_send,
    open_alerts_by_feature,
)
from evaluation.stats import wilson
from feedback.models import Feature
from tests.evaluation.experiments_seed import holdback_experiment, ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant, unique


class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``status`` (or sleeps ``delay`` first) and keeps
    every request it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k: v for k, v in self.headers.items()}, body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.ALERT_WEBHOOK_TIMEOUT_S = 0.5
    r = Receiver()
    yield r
    r.server.shutdown()


NOW = datetime(2025, 5, 10, 12, tzinfo=UTC)


def _seed_incident(feature: str, *, bad: bool = True) -> None:
    """21 normal days (the weekly rules' baselines need half their 14 days), then 24 h with every rule's
    metric broken (when ``bad``), then 3 normal days (busier: a recovered day's sample tells itself apart
    from the broken one, and from noise, by the same test that opened the alert)."""
    normal = {"success": lambda t: 0.5, "thumbs_down": lambda t: 0.2}
    history = traffic(feature=feature, start=NOW - timedelta(days=22), hours=24 * 14, count=1400,
                      rng=random.Random(90), **normal)  # type: ignore[arg-type]  # fmt: skip
    rng = random.Random(9)
    items = traffic(feature=feature, start=NOW - timedelta(days=8), hours=24 * 7, count=700, rng=rng, **normal)  # type: ignore[arg-type]
    broken = traffic(
        feature=feature,
        start=NOW - timedelta(hours=24),
        hours=24,
        count=300,
        rng=rng,
        success=lambda t: 0.1 if bad else 0.5,
        thumbs_down=lambda t: 0.7 if bad else 0.2,
        fields=lambda i: {"cost_usd": 0.05, "latency_ms": 2500.0} if bad else {},
    )
    after = traffic(feature=feature, start=NOW + timedelta(hours=1), hours=72, count=1440, rng=rng, **normal)  # type: ignore[arg-type]
    ingest(*(h + a + b + c for h, a, b, c in zip(history, items, broken, after, strict=True)))


def test_each_default_rule_fires_once_deduplicates_and_resolves(db: None, org_a, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel, secret = channel_create(kind="webhook", name="ops", url=receiver.url)
        assert alert_rules_ensure(feature=feature) == 6
        # The weekly rules have their own test (a lasting rise in one segment).
        AlertRule.objects.filter(feature=feature, window_hours=168).update(enabled=False)
        first = alerts_evaluate(now=NOW, features=[feature])
        rules = {r.metric: r for r in AlertRule.objects.filter(feature=feature, enabled=True)}
        assert set(rules) == {
            AlertMetric.THUMBS_DOWN,
            AlertMetric.COST_PER_SUCCESS,
            AlertMetric.P95_LATENCY,
            AlertMetric.SUCCESS_HIGH,
        }
        assert first.opened == 4
        opened = {a.rule.metric: a for a in Alert.objects.filter(rule__feature=feature).select_related("rule")}
        assert set(opened) == set(rules) and all(a.state == "open" for a in opened.values())
        assert (
            "+" in opened[AlertMetric.THUMBS_DOWN].message
            and "trailing 7-day" in opened[AlertMetric.THUMBS_DOWN].message
        )
        # Evaluated again while still firing: the same four alerts, no second notification.
        again = alerts_evaluate(now=NOW + timedelta(minutes=5), features=[feature])
        assert again.opened == 0 and again.updated == 4
        assert Alert.objects.filter(rule__feature=feature).count() == 4
        assert Delivery.objects.filter(channel=channel).count() == 4
        assert {a.evaluations_firing for a in Alert.objects.filter(rule__feature=feature)} == {2}
        # Success read from another source since it opened: its level no longer compares.
        Alert.objects.filter(id=opened[AlertMetric.SUCCESS_HIGH].id).update(opened_source="thumbs")
        # Three days of normal traffic later: every alert resolves, each with its own "resolved" delivery.
        later = alerts_evaluate(now=NOW + timedelta(hours=73), features=[feature])
        assert later.resolved == 4 and not Alert.objects.filter(rule__feature=feature, state="open").exists(), [
            (a.rule.metric, a.message, a.opened_baseline, a.opened_bound, a.value, a.count)
            for a in Alert.objects.filter(rule__feature=feature, state="open")
        ]
        resolutions = {a.rule.metric: a.resolution for a in Alert.objects.filter(rule__feature=feature)}
        assert resolutions[AlertMetric.THUMBS_DOWN].startswith(("Recovered: ", "No longer clearly worse: "))
        assert "opened against" in resolutions[AlertMetric.P95_LATENCY]
        assert "not thumbs, so the level it opened against does not compare" in resolutions[AlertMetric.SUCCESS_HIGH]
        assert Delivery.objects.filter(channel=channel, event="resolved").count() == 4
        deliveries_send(now=NOW + timedelta(hours=73))
        assert set(Delivery.objects.filter(channel=channel).values_list("status", flat=True)) == {DeliveryStatus.OK}
    assert len(receiver.requests) == 8
    # The documented recipe, by hand: HMAC-SHA256(secret, timestamp + "." + raw body), hex, "v1=" prefix.
    for headers, body in receiver.requests:
        timestamp = headers["Candor-Timestamp"]
        expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["Candor-Signature"], expected)
        assert json.loads(body)["alert"]["feature"] == key
        tampered = hmac.new(secret.encode(), timestamp.encode() + b"." + body + b" ", hashlib.sha256).hexdigest()
        assert headers["Candor-Signature"] != "v1=" + tampered
    events = sorted(json.loads(body)["event"] for _, body in receiver.requests)
    assert events == ["alert.opened"] * 4 + ["alert.resolved"] * 4


def _only(feature: Feature, metric: str, window_hours: int = 24) -> AlertRule:
    alert_rules_ensure(feature=feature)
    AlertRule.objects.filter(feature=feature).exclude(metric=metric, window_hours=window_hours).update(enabled=False)
    return AlertRule.objects.get(feature=feature, metric=metric, window_hours=window_hours)


@pytest.mark.parametrize(
    ("metric", "normal", "bad", "opened_at"),
    [
        (AlertMetric.THUMBS_DOWN, {}, {"thumbs_down": lambda t: 0.7}, 0.2),
        (AlertMetric.SUCCESS_HIGH, {}, {"success": lambda t: 0.2}, 0.5),
    ],
)
def test_a_lasting_regression_stays_open_after_the_baseline_takes_it_in_until_it_recovers(  # type: ignore[no-untyped-def]
    db: None, org_a, metric: str, normal: dict[str, Any], bad: dict[str, Any], opened_at: float
) -> None:
    """Thumbs-down goes from 20% to 70% (success from 50% to 20%) for ten days. After a week the trailing
    baseline is all bad days and the rule goes quiet; the alert stays open (against the level it opened
    at) until the metric recovers."""
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        rule = _only(feature, metric)
        rng = random.Random(12)
        before = traffic(feature=key, start=NOW - timedelta(days=18), hours=24 * 8, count=960, rng=rng, **normal)
        broken = traffic(feature=key, start=NOW - timedelta(days=10), hours=24 * 10, count=1200, rng=rng, **bad)
        after = traffic(feature=key, start=NOW + timedelta(hours=1), hours=72, count=360, rng=rng, **normal)
        ingest(*(a + b + c for a, b, c in zip(before, broken, after, strict=True)))
        assert alerts_evaluate(now=NOW - timedelta(days=9), features=[feature]).opened == 1
        alert = Alert.objects.get(rule=rule)
        assert alert.opened_baseline == pytest.approx(opened_at, abs=0.06)
        assert alert.opened_source == ("outcomes" if metric == AlertMetric.SUCCESS_HIGH else "")
        held = alerts_evaluate(now=NOW, features=[feature])
        rule.refresh_from_db()
        alert.refresh_from_db()
        # Against its trailing week, the bad level is the norm now: the rule is quiet, its alert is not.
        assert rule.last_state == "quiet; its alert stays open (still worse than when it opened)"
        assert held.holding == 1 and held.resolved == 0 and alert.state == "open"
        assert "it opened against: kept open on this reading. The rule itself does not fire: " in alert.message
        assert "its trailing 7-day level, now" in alert.message
        floor = f"{0.9 * (alert.baseline or 0):.1%}, 90% of its trailing 7-day level, now "
        # "39.4% ... not clearly below 48.0%" read as a contradiction (PM review): a level under the rule's line
        # is said to be under it, but not clearly, with the interval; one above it, not below it, and no interval.
        assert "not clearly below" not in alert.message
        interval = "by the interval of the two windows' difference, this window may be as "
        if "but not clearly" in alert.message:
            assert interval in alert.message
            if metric == AlertMetric.SUCCESS_HIGH:
                assert f"% is below {floor}" in alert.message
        else:
            assert interval not in alert.message
            if metric == AlertMetric.SUCCESS_HIGH:  # the level it must fall below, in numbers, first
                assert f"not below {floor}" in alert.message
        # The opening reading is kept beside the latest.
        assert "trailing 7-day" in alert.opened_message and "it opened against" not in alert.opened_message
        recovered = alerts_evaluate(now=NOW + timedelta(hours=73), features=[feature])
        alert.refresh_from_db()
        rule.refresh_from_db()
    assert recovered.resolved == 1 and alert.state == "resolved" and alert.resolved_by == ""
    # Back at the old level, or too near it to tell apart (a day's sample against the week it opened on).
    assert alert.resolution.startswith(("Recovered: ", "No longer clearly worse: ")), alert.resolution
    assert rule.last_state == "quiet"
    # Its message is the reading its value is (it kept the last firing's words beside the recovered value).
    assert alert.message == alert.resolution and f"{alert.value:.1%}" in alert.message


def test_resolving_by_hand_accepts_the_level_until_it_gets_clearly_worse(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel, _ = channel_create(kind="email", name="pm", email="pm@example.test")
        rule = _only(feature, AlertMetric.THUMBS_DOWN)
        alerts_evaluate(now=NOW, features=[feature])
        alert = Alert.objects.get(rule=rule, state="open")
        done, resolved = alert_resolve(
            alert_id=alert.id, by="pm@example.test", note="known:  the v2 prompt\n is longer"
        )
        assert resolved and done is not None and done.state == "resolved" and done.resolved_by == "pm@example.test"
        assert (
            re.match(r"Resolved by pm@example\.test at \d+\.\d%: ", done.resolution)
            and "%: known: the v2 prompt is longer. The rule opens again" in done.resolution
        )
        again, resolved_again = alert_resolve(alert_id=alert.id, by="someone@else.test")
        assert not resolved_again and again is not None and again.resolved_by == "pm@example.test"
        assert list(Delivery.objects.filter(alert=alert).values_list("event", flat=True).order_by("id")) == [
            "opened", "resolved",
        ]  # fmt: skip
        assert alert_resolve(alert_id=999_999, by="pm@example.test") == (None, False)
        # Still firing against the trailing week, at the level accepted: no new alert.
        quiet = alerts_evaluate(now=NOW + timedelta(minutes=5), features=[feature])
        assert quiet.accepted == 1 and quiet.opened == 0
        assert not Alert.objects.filter(rule=rule, state="open").exists()
        # Had the level accepted been 30%, today's share is clearly worse than that: it opens again.
        Alert.objects.filter(id=alert.id).update(value=0.3)
        worse = alerts_evaluate(now=NOW + timedelta(minutes=10), features=[feature])
        assert worse.opened == 1 and Alert.objects.filter(rule=rule, state="open").count() == 1
        # ...and recovering means back to the 30% accepted, not to the lower trailing baseline.
        reopened = Alert.objects.get(rule=rule, state="open")
        assert reopened.opened_baseline == 0.3 and reopened.opened_bound is None
        # The acceptance lasts the rule's baseline period.
        Alert.objects.filter(rule=rule, state="open").delete()
        Alert.objects.filter(id=alert.id).update(
            value=0.7, resolved_at=NOW - timedelta(days=rule.baseline_days, hours=1)
        )
        assert alerts_evaluate(now=NOW + timedelta(minutes=15), features=[feature]).opened == 1
    assert channel.enabled


def test_disabling_a_rule_resolves_its_open_alerts(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel_create(kind="email", name="pm", email="pm@example.test")
        rule = _only(feature, AlertMetric.THUMBS_DOWN)
        alerts_evaluate(now=NOW, features=[feature])
        alert = Alert.objects.get(rule=rule, state="open")
        assert list(open_alerts_by_feature()[key]) == [alert]
        alert_rule_toggle(rule=rule, enabled=False, by="pm@example.test", now=NOW)
        alert.refresh_from_db()
        assert (
            alert.state == "resolved" and alert.resolution == "Resolved when its rule was disabled by pm@example.test."
        )
        assert Delivery.objects.filter(alert=alert, event="resolved").count() == 1
        assert key not in open_alerts_by_feature()


def test_default_rules_come_to_features_that_have_them_not_to_those_set_up_with_their_own(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        defaults = Feature.objects.get(key=new_feature())
        assert alert_rules_ensure(feature=defaults) == 6 and alert_rules_ensure(feature=defaults) == 0
        weekly = AlertRule.objects.get(feature=defaults, name="Success below 90% of its baseline (7 days)")
        weekly.delete()  # as a feature that had the defaults before this one was added
        assert alert_rules_ensure(feature=defaults) == 1
        own = Feature.objects.get(key=new_feature())
        alert_rule_create(feature=own, name="mine", metric="error_rate", threshold=1.0)
        assert alert_rules_ensure(feature=own) == 0
        assert list(AlertRule.objects.filter(feature=own).values_list("name", flat=True)) == ["mine"]


def test_no_rise_fires_nothing_and_too_little_data_waits(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key, bad=False)
        stats = alerts_evaluate(now=NOW, features=[feature])
        assert stats.opened == 0 and not Alert.objects.filter(rule__feature=feature).exists()
        strict = alert_rule_create(
            feature=feature, name="needs many", metric="thumbs_down_share", threshold=0.1, min_count=10_000
        )
        alerts_evaluate(now=NOW, features=[feature])
        strict.refresh_from_db()
        assert strict.last_state.startswith("too little data") and "needs 10000" in strict.last_state


def test_a_segment_rule_names_the_segment(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature(segment_keys=["auth"])
        feature = Feature.objects.get(key=key)
        rng = random.Random(4)

        def auth(i: int) -> dict[str, Any]:
            return {"metadata": {"auth": "sso" if i % 5 == 0 else "password"}}

        base = traffic(feature=key, start=NOW - timedelta(days=8), hours=24 * 7, count=1400, rng=rng, fields=auth)
        now = traffic(
            feature=key,
            start=NOW - timedelta(hours=24),
            hours=24,
            count=400,
            rng=rng,
            fields=auth,
            thumbs_down=lambda t: 0.8 if t["metadata"]["auth"] == "sso" else 0.15,
        )
        ingest(*(a + b for a, b in zip(base, now, strict=True)))
        alerts_evaluate(now=NOW, features=[feature])
        fired = {(a.rule.metric, a.segment) for a in Alert.objects.filter(rule__feature=feature).select_related("rule")}
        daily = AlertRule.objects.get(feature=feature, name="Thumbs-down share up 50% (24 h)")
    assert (AlertMetric.THUMBS_DOWN, "metadata.auth=sso") in fired
    assert (AlertMetric.THUMBS_DOWN, "metadata.auth=password") not in fired
    assert daily.last_state.endswith("open on metadata.auth=sso")  # the rule's row names its open segment


def test_a_baseline_of_a_features_first_days_is_no_norm(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """On the demo's second day, the weekly thumbs rule opened against the first day's chance 32% and stayed
    open for weeks. A rule waits until its baseline holds traces on half its days; then the same rise fires."""
    rng = random.Random(31)
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        rule = _only(feature, AlertMetric.THUMBS_DOWN)  # a day against the 7 before
        first = traffic(feature=key, start=NOW - timedelta(hours=48), hours=24, count=600, rng=rng,
                        thumbs_down=lambda t: 0.1)  # fmt: skip
        second = traffic(feature=key, start=NOW - timedelta(hours=24), hours=24, count=600, rng=rng,
                         thumbs_down=lambda t: 0.4)  # fmt: skip
        ingest(*(a + b for a, b in zip(first, second, strict=True)))
        young = alerts_evaluate(now=NOW, features=[feature])
        rule.refresh_from_db()
        assert young.opened == 0 and young.waiting == 1
        assert rule.last_state == "too little history: traces on 1 of the baseline's 7 days (needs 4)"
        # Three more days at the first day's level, then the same rise: the rule has a norm, and fires.
        more = traffic(feature=key, start=NOW - timedelta(days=4), hours=72, count=1800, rng=rng,
                       thumbs_down=lambda t: 0.1)  # fmt: skip
        later = traffic(feature=key, start=NOW + timedelta(hours=1), hours=22, count=600, rng=rng,
                        thumbs_down=lambda t: 0.4)  # fmt: skip
        ingest(*(a + b for a, b in zip(more, later, strict=True)))
        grown = alerts_evaluate(now=NOW + timedelta(hours=24), features=[feature])
    assert grown.opened == 1


def test_a_holdback_starting_is_not_the_ai_failing(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A holdback experiment starts for the last day: 40% of the traffic takes the non-AI path, whose
    users succeed far less often (10% against the AI's 50%) and thumb it down more. Counted in, the
    feature's success would fall from 50% to 34% and its thumbs-down rise: alerts on the AI for what the
    AI did not do. The AI arm is unchanged, so nothing fires; the same traffic without the experiment
    does fire, so the rules do see the fall."""
    rng = random.Random(21)
    experiment = unique("hb")

    def arm(i: int) -> dict[str, Any]:
        return {"experiment": experiment, "variant": "holdback" if i % 5 < 2 else "ai"}

    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        before = traffic(feature=key, start=NOW - timedelta(days=8), hours=24 * 7, count=1400, rng=rng)
        during = traffic(
            feature=key,
            start=NOW - timedelta(hours=24),
            hours=24,
            count=1000,
            rng=rng,
            fields=arm,
            success=lambda t: 0.1 if t["variant"] == "holdback" else 0.5,
            thumbs_down=lambda t: 0.6 if t["variant"] == "holdback" else 0.2,
        )
        ingest(*(a + b for a, b in zip(before, during, strict=True)))
        unaware = alerts_evaluate(now=NOW, features=[feature])
        assert unaware.opened >= 1  # the feature's figures did fall, holdback and all
        Alert.objects.filter(rule__feature=feature).delete()
        holdback_experiment(experiment, key, started_at=NOW - timedelta(hours=24), holdback_share=0.4)
        aware = alerts_evaluate(now=NOW, features=[feature])
        opened = list(Alert.objects.filter(rule__feature=feature).values_list("rule__metric", "segment"))
    assert aware.opened == 0, opened


def test_the_weekly_thumbs_rule_finds_a_lasting_rise_in_one_segment(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A fifth of the users (sso) go from 30% to 48% thumbs-down for a week: +60%, too few thumbs a
    day for the 24 h rule, clear over seven days against the fortnight before."""
    with in_tenant(org_a):
        key = new_feature(segment_keys=["auth"])
        feature = Feature.objects.get(key=key)
        rng = random.Random(6)

        def auth(i: int) -> dict[str, Any]:
            return {"metadata": {"auth": "sso" if i % 5 == 0 else "password"}}

        before = traffic(
            feature=key,
            start=NOW - timedelta(days=22),
            hours=24 * 15,
            count=3000,
            rng=rng,
            fields=auth,
            thumbs_down=lambda t: 0.3,
            thumb_rate=0.2,
        )
        week = traffic(
            feature=key,
            start=NOW - timedelta(days=7),
            hours=24 * 7,
            count=1400,
            rng=rng,
            fields=auth,
            thumb_rate=0.2,
            thumbs_down=lambda t: 0.48 if t["metadata"]["auth"] == "sso" else 0.3,
        )
        ingest(*(a + b for a, b in zip(before, week, strict=True)))
        alerts_evaluate(now=NOW, features=[feature])
        fired = {(a.rule.name, a.segment) for a in Alert.objects.filter(rule__feature=feature).select_related("rule")}
    assert ("Thumbs-down share up 30% (7 days)", "metadata.auth=sso") in fired
    assert not any(name.endswith("(24 h)") for name, _ in fired)
    assert not any(segment in ("", "metadata.auth=password") for _, segment in fired)


@pytest.mark.parametrize("failure", ["500", "timeout"])
def test_a_failing_receiver_is_retried_with_backoff_then_marked_failing(  # type: ignore[no-untyped-def]
    db: None, org_a, receiver: Receiver, failure: str
) -> None:
    if failure == "500":
        receiver.status = 500
    else:
        receiver.delay = 1.0  # past ALERT_WEBHOOK_TIMEOUT_S (0.5 s)
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel, _ = channel_create(kind="webhook", name="flaky", url=receiver.url)
        alert_rules_ensure(feature=feature)
        alert_rule_create(feature=feature, name="only", metric="thumbs_down_share", threshold=0.5, min_count=10)
        AlertRule.objects.filter(feature=feature).exclude(name="only").update(enabled=False)
        alerts_evaluate(now=NOW, features=[feature])
        # The evaluation (what the beat runs) wrote a pending delivery and contacted nobody.
        assert receiver.requests == []
        delivery = Delivery.objects.get(channel=channel)
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
        at = NOW
        for attempt in range(1, MAX_ATTEMPTS + 1):
            deliveries_send(now=at)
            delivery.refresh_from_db()
            assert delivery.attempts == attempt
            if attempt < MAX_ATTEMPTS:
                assert delivery.status == DeliveryStatus.PENDING
                assert delivery.next_attempt_at == at + timedelta(seconds=BACKOFF_S[attempt - 1])
                deliveries_send(now=at + timedelta(seconds=BACKOFF_S[attempt - 1] - 1))  # not due yet
                delivery.refresh_from_db()
                assert delivery.attempts == attempt
                at += timedelta(seconds=BACKOFF_S[attempt - 1])
        assert delivery.status == DeliveryStatus.FAILED
        assert ("500" in delivery.error) if failure == "500" else ("timed out" in delivery.error)
        channel.refresh_from_db()
        assert channel.failing and "5 attempts failed" in channel.last_error
    assert len(receiver.requests) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://127.0.0.1/x",
        "https://localhost/hook",
        "http://example.com/hook",
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
        "not a url",
    ],
)
def test_webhook_urls_to_private_addresses_are_refused(db: None, org_a, settings: Any, url: str) -> None:  # type: ignore[no-untyped-def]
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = []
    with in_tenant(org_a), pytest.raises(AlertError) as info:
        channel_create(kind="webhook", name="x", url=url)
    assert info.value.field == "url"


@pytest.mark.parametrize(
    ("window_hours", "baseline_days", "field", "says"),
    [
        (24, 0, "baseline_days", "1 to 90 days, not 0"),
        (24, 91, "baseline_days", "1 to 90 days, not 91"),
        (0, 7, "window_hours", "1 to 336 hours (14 days), not 0"),
        (337, 0, "window_hours", "1 to 336 hours (14 days), not 337"),
    ],
)
def test_a_rule_out_of_range_names_the_window_or_the_baseline_on_its_own(  # type: ignore[no-untyped-def]
    db: None, org_a, window_hours: int, baseline_days: int, field: str, says: str
) -> None:
    """A baseline of 0 days was refused as "window_hours: window 1 h to 14 days, baseline 1 to 90 days"."""
    with in_tenant(org_a), pytest.raises(AlertError) as info:
        alert_rule_create(feature=Feature.objects.get(key=new_feature()), name="ranged", metric="error_rate",
                          threshold=0.5, window_hours=window_hours, baseline_days=baseline_days)  # fmt: skip
    assert (info.value.field, info.value.message) == (field, says)


def test_an_address_allowed_at_save_but_not_at_send_is_not_contacted(  # type: ignore[no-untyped-def]
    db: None, org_a, receiver: Receiver, settings: Any
) -> None:
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel, _ = channel_create(kind="webhook", name="moved", url=receiver.url)
        settings.ALERT_WEBHOOK_ALLOWED_HOSTS = []  # e.g. the DNS now points the host inside the network
        alerts_evaluate(now=NOW, features=[feature])
        deliveries_send(now=NOW)
        delivery = Delivery.objects.filter(channel=channel).first()
        assert delivery is not None and delivery.attempts == 1 and "https" in delivery.error
    assert receiver.requests == []


def test_email_channel_sends_the_alert(db: None, org_a, mailoutbox: list[Any]) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_incident(key)
        channel_create(kind="email", name="pm", email="pm@example.com")
        with pytest.raises(AlertError):
            channel_create(kind="email", name="bad", email="not-an-email")
        alerts_evaluate(now=NOW, features=[feature])
        deliveries_send(now=NOW)
        assert NotificationChannel.objects.get(name="pm").failing is False
        subjects = sorted(m.subject for m in mailoutbox)
        # All six default rules fire on the incident (the weekly rules see the broken day too).
        assert len(subjects) == 6 and all(s.startswith("[Candor] Alert:") and key in s for s in subjects)
        latency = Alert.objects.get(rule__feature=feature, rule__metric=AlertMetric.P95_LATENCY)
        alert_resolve(alert_id=latency.id, by="pm@example.com", note="the new model is slower, known", now=NOW)
        deliveries_send(now=NOW)
    resolved = mailoutbox[-1]
    assert resolved.subject == f"[Candor] Resolved: p95 latency doubled on {key}"
    assert resolved.body.startswith("Resolved by pm@example.com at ") and "the new model is slower" in resolved.body
    assert "Last read: p95 latency of" in resolved.body


def _seed_late_outcomes(feature: str, *, drop_after: datetime | None = None) -> list[timedelta]:
    """10 days to NOW of traces whose outcomes (success 0.5; 0.2 after ``drop_after``) come 4 to 12 h after
    them, as tickets resolve; those not come by NOW are not stored yet. No thumbs. Returns the delays."""
    rng = random.Random(21)
    traces, _, outcomes = traffic(
        feature=feature,
        start=NOW - timedelta(days=10),
        hours=240,
        count=3000,
        rng=rng,
        thumb_rate=0.0,
        success=lambda t: 0.2 if drop_after and datetime.fromisoformat(t["started_at"]) > drop_after else 0.5,
    )
    started = {t["trace_id"]: datetime.fromisoformat(t["started_at"]) for t in traces}
    come, delays = [], []
    for outcome in outcomes:
        delay = timedelta(hours=rng.uniform(4, 12))
        at = started[outcome["trace_id"]] + delay
        if at <= NOW:
            come.append({**outcome, "occurred_at": at.isoformat()})
            delays.append(delay)
    ingest(traces, [], come)
    return delays


def test_success_from_outcomes_is_read_over_traces_old_enough_for_their_outcomes(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Outcomes come hours after their traces: over the last 24 h, success read up to now is a third low
    (the youngest traces have not converted yet), and fired every day. The window ends before them."""
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        delays = _seed_late_outcomes(key)
        # The 95th percentile of the delays of a week of traces to the day before, in whole hours.
        week = [d for d in delays if d < timedelta(hours=12)]
        assert outcome_delay(feature=feature, now=NOW) == timedelta(hours=12)
        assert sorted(week)[int(0.95 * len(week))] > timedelta(hours=11)
        # Read up to now, the last 24 h do look well below the trailing week.
        current, baseline = _windows(NOW, 24, 7)
        now_rate = measures_by(feature=feature, window=current, dims=())[0][()]
        assert now_rate.outcome_traces / now_rate.traces < 0.38
        stats = alerts_evaluate(now=NOW, features=[feature])
        assert stats.opened == 0 and not Alert.objects.filter(rule__feature=feature).exists()
        rule = AlertRule.objects.get(feature=feature, name="Success below 90% of its baseline")
        assert rule.last_state == "quiet"


def test_a_real_fall_in_late_outcomes_still_fires_and_says_where_its_window_ends(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        _seed_late_outcomes(key, drop_after=NOW - timedelta(hours=60))
        alerts_evaluate(now=NOW, features=[feature])
        alert = Alert.objects.get(rule__feature=feature, rule__name="Success below 90% of its baseline")
        assert "over the 24 h to 2025-05-10 00:00 UTC (later traces' outcomes still come in)" in alert.message


@pytest.mark.parametrize(
    ("bad", "n", "base_bad", "base_n"),
    [
        (69, 100, 52, 100),  # like the demo's SSO alert: 69% against 52% [42.3, 61.5]; 69%'s low end 59.4
        (30, 55, 25, 48),
        (45, 60, 20, 50),
        (300, 1000, 220, 1000),
        (26, 50, 25, 48),
        (9, 12, 5, 12),
    ],
)
def test_an_open_alert_stays_open_while_clearly_worse_by_the_same_test_that_opened_it(
    bad: int, n: int, base_bad: int, base_n: int
) -> None:
    """Held open iff past half the rule's change and the Newcombe interval of the difference from the
    level it opened against lies above 0 (statsmodels' newcomb), the test the rule opens with, not the
    far stricter "the two intervals apart" that let a noisy window close a standing regression."""
    rule = AlertRule(metric=AlertMetric.THUMBS_DOWN, threshold=0.3)
    now, base = wilson(bad, n), wilson(base_bad, base_n)
    assert now.low is not None and base.value is not None and base.high is not None
    current = Reading(now.value, n, now.low, now.high)
    low, _ = confint_proportions_2indep(bad, n, base_bad, base_n, method="newcomb", compare="diff")
    expected = bad / n >= base.value * 1.15 and low > 0
    assert _worse_than(rule, current, base.value, base.high) == expected
    if (bad, n, base_bad, base_n) == (69, 100, 52, 100):
        assert expected and now.low < base.high  # held, though its interval reaches past the baseline's


@pytest.mark.parametrize(
    ("good", "n", "base_good", "base_n"), [(31, 100, 48, 100), (40, 100, 48, 100), (8, 40, 30, 60)]
)
def test_a_success_alert_stays_open_while_clearly_below_by_the_same_test(
    good: int, n: int, base_good: int, base_n: int
) -> None:
    rule = AlertRule(metric=AlertMetric.SUCCESS_HIGH, threshold=0.2)
    now, base = wilson(good, n), wilson(base_good, base_n)
    assert base.value is not None and base.low is not None
    current = Reading(now.value, n, now.low, now.high)
    _, high = confint_proportions_2indep(good, n, base_good, base_n, method="newcomb", compare="diff")
    expected = good / n < base.value * 0.9 and high < 0
    assert _worse_than(rule, current, base.value, base.low) == expected


def test_a_held_alerts_message_says_below_but_not_clearly_rather_than_not_clearly_below() -> None:
    """A PM read "Success ... is 39.4% ... not clearly below 48.0%" as a contradiction. Under the rule's line but
    within noise, the message says it is below, but not clearly, and how high the interval reaches; above it, it
    says not below, with no interval to add."""
    from evaluation.services.alerts import Reading, Verdict, _holding_message

    rule = AlertRule(metric=AlertMetric.SUCCESS_HIGH, threshold=0.1, baseline_days=14, window_hours=24,
                     feature=Feature(key="support-copilot"))  # fmt: skip
    below = Verdict("quiet", "", Reading(0.394, 80), Reading(0.533, 900), Reading(0.394, 80), reach=0.532)
    text = _holding_message(rule, "metadata.auth=sso", below, opened=0.775)
    assert "is 39.4%, still below the 77.5% it opened against" in text
    assert "39.4% is below 48.0%, 90% of its trailing 14-day level, now 53.3%, but not clearly: by the interval" in text
    assert "may be as high as 53.2%" in text and "not clearly below" not in text
    above = Verdict("quiet", "", Reading(0.50, 80), Reading(0.533, 900), Reading(0.50, 80), reach=0.60)
    text = _holding_message(rule, "metadata.auth=sso", above, opened=0.775)
    assert "not below 48.0%, 90% of its trailing 14-day level" in text and "by the interval" not in text
    errors = AlertRule(metric=AlertMetric.ERROR_RATE, threshold=0.5, baseline_days=7, window_hours=24,
                       feature=Feature(key="support-copilot"))  # fmt: skip
    over = Verdict("quiet", "", Reading(0.09, 300), Reading(0.05, 2000), Reading(0.09, 300), reach=0.06)
    text = _holding_message(errors, "", over, opened=0.02)
    assert "9.0% is +50% or more over its trailing 7-day level, now 5.0%, but not clearly: by the interval" in text
