"""The trail from a feature to its regression: the feature page names its open alerts and likely cause, the
overview and drift index name both segments of a cause, and the drift page's segments lead to their traces and
to the feature grouped by their keys. The regression is the demo's: SSO accounts on a new prompt version."""

from __future__ import annotations

import html
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client, RequestFactory

from evaluation.models import Alert, AlertRule
from evaluation.portal.reports import segment_links, segment_parts
from evaluation.reports.selectors import Window
from evaluation.services.alerts import alert_rules_ensure, alerts_evaluate
from evaluation.services.drift import drift_snapshot_store, drift_windows
from evaluation.services.shared import utc_now
from feedback.models import Feature
from tests.evaluation.experiments_seed import ingest, new_feature, traffic
from tests.fixtures.organizations import in_tenant
from tests.helpers import assert_cross_tenant_404

NARROW = "metadata.auth=sso × prompt_version=v2.3"
RULE = "Success below 90% of its baseline"


def _sso_on_v23(key: str) -> None:
    """Baseline: v2.2 resolves half of everyone's tickets. Current: half the traffic moves to v2.3, where SSO
    accounts resolve 15%; everyone else resolves a little more, so the feature's rate holds."""
    rng = random.Random(7)
    baseline, current = drift_windows()

    def fields(i: int) -> dict[str, Any]:
        return {"metadata": {"auth": "sso" if i % 4 == 0 else "password"}, "prompt_version": "v2.2"}

    def fields_now(i: int) -> dict[str, Any]:
        return {**fields(i), "prompt_version": "v2.3" if i % 8 < 4 else "v2.2"}

    def success(trace: dict[str, Any]) -> float:
        return 0.15 if trace["metadata"]["auth"] == "sso" and trace["prompt_version"] == "v2.3" else 0.55

    before = traffic(feature=key, start=baseline.since, hours=24 * 14, count=1400, rng=rng, fields=fields)
    after = traffic(feature=key, start=current.since, hours=24 * 6, count=1600, rng=rng, fields=fields_now,
                    success=success)  # fmt: skip
    ingest(*(a + b for a, b in zip(before, after, strict=True)))


@pytest.fixture
def regressed(db: None, org_a, org_b) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Org A's feature with the regression, today's drift snapshot and an open alert (and a resolved one);
    org B's feature of the same key with an open alert of its own."""
    now = utc_now()
    with in_tenant(org_a):
        key = new_feature(segment_keys=["auth"])
        _sso_on_v23(key)
        feature = Feature.objects.get(key=key)
        drift_snapshot_store(feature=feature)
        rule = AlertRule.objects.create(feature=feature, name=RULE, metric="success_high", threshold=0.1)
        alert = Alert.objects.create(rule=rule, segment="metadata.auth=sso", opened_at=now - timedelta(days=2),
                                     last_fired_at=now, message="Success of sso fell")  # fmt: skip
        Alert.objects.create(rule=rule, segment="metadata.auth=password", opened_at=now - timedelta(days=9),
                             last_fired_at=now, state="resolved", resolved_at=now - timedelta(days=8),
                             message="over")  # fmt: skip
    with in_tenant(org_b):
        other = Feature.objects.create(key=key, name=key)
        other_rule = AlertRule.objects.create(feature=other, name="Org B rule", metric="error_rate",
                                              threshold=0.5)  # fmt: skip
        Alert.objects.create(rule=other_rule, segment="metadata.plan=beta-secret", opened_at=now,
                             last_fired_at=now, message="b")  # fmt: skip
    return {"key": key, "alert": alert.id}


def _client(org) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org.owner)
    return client


def _links(page: str, testid: str) -> list[str]:
    """The hrefs of the links marked ``data-testid=testid``, unescaped."""
    found = []
    for chunk in page.split(f'data-testid="{testid}"')[1:]:
        found.append(html.unescape(chunk.split('href="', 1)[1].split('"', 1)[0]))
    return found


def test_the_feature_page_leads_to_its_open_alerts_and_likely_cause(regressed: dict[str, Any], org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    key, slug = regressed["key"], org_a.slug
    page = _client(org_a).get(org_a.url(f"features/{key}/")).content.decode()
    top = page.split('id="attention"', 1)[1].split("</div>", 1)[0]  # before the figures
    # Its open alert, linked; not the resolved one, nor org B's on its feature of the same key.
    assert top.count('data-testid="open-alert"') == 1
    assert f'href="/o/{slug}/alerts/{regressed["alert"]}/">{RULE} · metadata.auth=sso</a>' in top
    assert "metadata.auth=password" not in top
    assert "Org B" not in page and "beta-secret" not in page  # (its id may well be org A's alert's: own schemas)
    # The likely cause as the overview writes it, both segments, the drift page linked.
    cause = top.split('data-testid="likely-cause"', 1)[1]
    assert "for metadata.auth=sso; most in " in cause
    assert f'href="/o/{slug}/drift/{key}/">{NARROW}</a>' in cause
    # The traces of the cause's segment, in the page's window.
    (traces,) = _links(top, "cause-traces")
    url = urlsplit(traces)
    assert url.path == f"/o/{slug}/traces/"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query.pop("since") and query.pop("until")
    assert query == {"feature": key, "metadata.auth": "sso", "prompt_version": "v2.3"}
    # Tenant scope: org B's feature of the same key shows its own alert and nothing of org A's; org A's alert
    # link, followed with org B's credentials, is a 404 that says nothing of it.
    alert_url = f"/o/{slug}/alerts/{regressed['alert']}/"
    assert _client(org_a).get(alert_url).status_code == 200
    theirs = _client(org_b).get(org_b.url(f"features/{key}/")).content.decode()
    assert "Org B rule · metadata.plan=beta-secret" in theirs
    assert "Success below 90%" not in theirs and 'data-testid="likely-cause"' not in theirs
    assert_cross_tenant_404(_client(org_b), alert_url, leak="Success of sso fell")
    # A feature with nothing open and no cause has no such block.
    with in_tenant(org_a):
        quiet = new_feature()
    assert 'id="attention"' not in _client(org_a).get(org_a.url(f"features/{quiet}/")).content.decode()


def test_the_overview_and_drift_index_name_both_segments_of_a_cause(regressed: dict[str, Any], org_a) -> None:  # type: ignore[no-untyped-def]
    """A cause found within one segment (the feature's rate held) named only that segment: now also the one the
    drift page ranks first and the digest names."""
    key, client = regressed["key"], _client(org_a)
    drift = f'<a data-testid="cause-segment" href="/o/{org_a.slug}/drift/{key}/">{NARROW}</a>'
    overview = client.get(org_a.url("")).content.decode()
    row = overview.split(f"/features/{key}/", 1)[1].split("</td>", 1)[0]
    with in_tenant(org_a):
        quiet = new_feature()  # no snapshot: after the regressed one, though "a" sorts first by key
        Feature.objects.filter(key=quiet).update(key=f"a-{quiet}")
    index = client.get(org_a.url("drift/")).content.decode()
    index_row = index.split(f'data-feature="{key}"', 1)[1].split("</tr>", 1)[0]
    assert index.index(f'data-feature="{key}"') < index.index(f'data-feature="a-{quiet}"')  # worst first
    for said in (row, index_row):
        cause = said.split('data-testid="likely-cause">', 1)[1]
        sentence = cause.split(" went ", 1)[1].split("</a>", 1)[0] + "</a>"
        assert sentence.split("% for ", 1)[1] == f"metadata.auth=sso; most in {drift}", sentence
        assert cause.startswith("Success (outcomes) went ")


def test_each_drift_segment_links_its_traces_and_its_grouping(regressed: dict[str, Any], org_a) -> None:  # type: ignore[no-untyped-def]
    key, slug, client = regressed["key"], org_a.slug, _client(org_a)
    baseline, current = drift_windows()
    page = client.get(org_a.url(f"drift/{key}/")).content.decode()
    success = page.split('data-testid="rate-success"', 1)[1].split("</details>", 1)[0]
    first = success.split('data-testid="segment"')[1]
    assert f"<strong>{NARROW}</strong>" in first
    # v2.3 is new this week: its rate before is no rate (it read as a move, "0.399 -> 0.496" on the demo).
    assert 'data-testid="thin-baseline"' in first and "new (0 before)" in first
    (traces,) = _links(first, "segment-traces")
    url = urlsplit(traces)
    assert url.path == f"/o/{slug}/traces/"
    assert {k: v[0] for k, v in parse_qs(url.query).items()} == {
        "feature": key,
        "metadata.auth": "sso",
        "prompt_version": "v2.3",
        "since": current.first_day.isoformat(),
        "until": current.last_day.isoformat(),  # the explorer's Until is a day included: the window's last
    }
    # The feature page over both windows (its until exclusive): the version retired since is one of its rows.
    span = f"since={baseline.first_day.isoformat()}&until={current.until.date().isoformat()}"
    assert _links(first, "segment-group-by") == [
        f"/o/{slug}/features/{key}/?group_by=metadata.auth&{span}",
        f"/o/{slug}/features/{key}/?group_by=prompt_version&{span}",
    ]
    # Followed: the explorer applies every filter (SSO traces on v2.3 of the current window only, not of the day
    # after it, today) ...
    with in_tenant(org_a):
        after = {"trace_id": f"{key}-after", "feature": key, "prompt_version": "v2.3", "metadata": {"auth": "sso"},
                 "started_at": (current.until + timedelta(minutes=5)).isoformat()}  # fmt: skip
        ingest([after], [], [])
    explorer = client.get(traces)
    assert explorer.status_code == 200 and explorer.context["error"] is None
    rows = list(explorer.context["page"].results)
    assert rows and all(t.metadata["auth"] == "sso" and t.prompt_version.label == "v2.3" for t in rows)
    assert all(current.since <= t.started_at < current.until for t in rows)
    # ... and the feature page groups by the segment's key, over both windows: v2.2 beside v2.3.
    grouped = client.get(f"/o/{slug}/features/{key}/?group_by=metadata.auth")
    assert grouped.context["grouping"].label == "metadata.auth"
    assert {g["group"] for g in grouped.context["report"]["groups"]} >= {"sso", "password"}
    by_version = client.get(_links(first, "segment-group-by")[1])
    assert {g["group"] for g in by_version.context["report"]["groups"]} >= {"v2.2", "v2.3"}


def test_a_segment_gone_now_links_its_traces_before(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A retired version's segment has no traces in the current window: its link reads the baseline's (it opened
    an empty list)."""
    baseline, current = drift_windows()
    rng = random.Random(3)
    with in_tenant(org_a):
        key = new_feature(segment_keys=["auth"])
        before = traffic(feature=key, start=baseline.since, hours=24 * 14, count=600, rng=rng,
                         fields=lambda i: {"metadata": {"auth": "sso"}, "prompt_version": "v2.2"})  # fmt: skip
        after = traffic(feature=key, start=current.since, hours=24 * 6, count=600, rng=rng,
                        fields=lambda i: {"metadata": {"auth": "sso"}, "prompt_version": "v2.3"},
                        success=lambda trace: 0.2)  # fmt: skip
        ingest(*(a + b for a, b in zip(before, after, strict=True)))
        drift_snapshot_store(feature=Feature.objects.get(key=key))
    client = _client(org_a)
    page = client.get(org_a.url(f"drift/{key}/")).content.decode()
    gone = next(row for row in page.split('data-testid="segment"')[1:] if "gone (0 now)" in row.split("</tr>")[0])
    (link,) = _links(gone.split("</tr>")[0], "segment-traces")
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert query["prompt_version"] == "v2.2"
    assert (query["since"], query["until"]) == (baseline.first_day.isoformat(), baseline.last_day.isoformat())
    listed = client.get(link).context["page"].results
    assert listed and all(baseline.since <= t.started_at < baseline.until for t in listed)


def test_a_segment_leads_to_its_traces_unless_the_explorer_cannot_filter_it(org_a) -> None:  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/")
    request.tenant = org_a.organization  # type: ignore[attr-defined]
    window = Window(*(utc_now().replace(hour=h, minute=0, second=0, microsecond=0) for h in (1, 5)))
    by_model = segment_links(request, feature_key="f", parts=segment_parts("model=haiku × metadata.auth=sso"),
                             window=window)  # fmt: skip
    # The explorer filters by model (it had no model filter, and such a segment led to no traces), and the
    # feature page groups by it.
    query = {k: v[0] for k, v in parse_qs(urlsplit(by_model["traces"]).query).items()}
    assert (query["model"], query["metadata.auth"], query["feature"]) == ("haiku", "sso", "f")
    assert [label for label, _ in by_model["groupings"]] == ["model", "metadata.auth"]
    missing = segment_links(request, feature_key="f", parts=[("metadata.auth", "(none)")], window=window)
    assert missing["traces"] is None
    # A window of hours is passed as it is, not rounded to whole days.
    customer = segment_links(request, feature_key="f", parts=segment_parts("customer_id=cus_a&b"), window=window)
    query = parse_qs(urlsplit(customer["traces"]).query)
    assert query["customer_id"] == ["cus_a&b"] and query["since"] == [window.since.isoformat()]


def test_an_alert_links_its_segments_traces_in_its_rules_window_and_grouping(regressed: dict[str, Any], org_a) -> None:  # type: ignore[no-untyped-def]
    key, slug, client = regressed["key"], org_a.slug, _client(org_a)
    _, current = drift_windows()
    with in_tenant(org_a):
        # Last fired mid-regression, the rule not evaluated since (the seeded traffic stops a day short of now).
        Alert.objects.filter(id=regressed["alert"]).update(last_fired_at=current.since + timedelta(days=3, hours=5))
        alert = Alert.objects.select_related("rule").get(id=regressed["alert"])
    page = client.get(org_a.url(f"alerts/{alert.id}/")).content.decode()
    (traces,) = _links(page, "alert-traces")
    url = urlsplit(traces)
    assert url.path == f"/o/{slug}/traces/"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    # The rule reads the last 24 h (a rolling window) up to its last firing: those hours, not whole days.
    assert query == {
        "feature": key,
        "metadata.auth": "sso",
        "since": (alert.last_fired_at - timedelta(hours=24)).isoformat(),
        "until": alert.last_fired_at.isoformat(),
    }
    since, until = (alert.last_fired_at - timedelta(hours=24)).isoformat(), alert.last_fired_at.isoformat()
    assert _links(page, "alert-group-by") == [
        f"/o/{slug}/features/{key}/?{urlencode({'group_by': 'metadata.auth', 'since': since, 'until': until})}"
    ]
    # Followed: SSO traces of the rule's window only.
    explorer = client.get(traces)
    assert explorer.status_code == 200 and explorer.context["error"] is None
    rows = list(explorer.context["page"].results)
    assert rows and all(t.metadata["auth"] == "sso" for t in rows)
    assert all(alert.last_fired_at - timedelta(hours=24) <= t.started_at < alert.last_fired_at for t in rows)
    # A week's rule on the whole feature: its traces over the week's whole days, and no grouping to offer.
    with in_tenant(org_a):
        weekly = AlertRule.objects.create(feature=alert.rule.feature, name="weekly", metric="error_rate",
                                          threshold=0.5, window_hours=168)  # fmt: skip
        whole = Alert.objects.create(rule=weekly, segment="", opened_at=alert.opened_at,
                                     last_fired_at=alert.last_fired_at, message="Errors rose")  # fmt: skip
    page = client.get(org_a.url(f"alerts/{whole.id}/")).content.decode()
    (traces,) = _links(page, "alert-traces")
    last = alert.last_fired_at.date()
    assert parse_qs(urlsplit(traces).query) == {
        "feature": [key],
        "since": [(last - timedelta(days=6)).isoformat()],
        "until": [last.isoformat()],  # the explorer's Until: a day included
    }
    assert _links(page, "alert-group-by") == []


def test_an_alert_held_open_says_why_while_the_rule_is_quiet(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Thumbs-down goes from 20% to 70% for ten days: the alert opens, and a week on, with the trailing baseline
    all bad days, the rule is quiet while the alert is held open. The page says why it is still open."""
    now = datetime(2025, 5, 10, 12, tzinfo=UTC)
    with in_tenant(org_a):
        key = new_feature()
        feature = Feature.objects.get(key=key)
        alert_rules_ensure(feature=feature)
        AlertRule.objects.filter(feature=feature).exclude(metric="thumbs_down_share", window_hours=24).update(
            enabled=False
        )
        rng = random.Random(12)
        before = traffic(feature=key, start=now - timedelta(days=18), hours=24 * 8, count=960, rng=rng)
        broken = traffic(feature=key, start=now - timedelta(days=10), hours=24 * 10, count=1200, rng=rng,
                         thumbs_down=lambda t: 0.7)  # fmt: skip
        ingest(*(a + b for a, b in zip(before, broken, strict=True)))
        assert alerts_evaluate(now=now - timedelta(days=9), features=[feature]).opened == 1
        alert = Alert.objects.get(rule__feature=feature)
    url, client = org_a.url(f"alerts/{alert.id}/"), _client(org_a)
    assert 'data-testid="held-open"' not in client.get(url).content.decode()  # firing: nothing to explain
    with in_tenant(org_a):
        assert alerts_evaluate(now=now, features=[feature]).holding == 1
    page = html.unescape(client.get(url).content.decode())
    held = page.split('data-testid="held-open">', 1)[1].split("</p>", 1)[0]
    assert held.startswith("Still open: the metric is still clearly worse than when the alert opened.")
    assert "Against its trailing 7-day baseline, which now includes the bad days, the rule no longer fires" in held


def test_an_alert_names_the_likely_cause_within_its_segment(regressed: dict[str, Any], org_a) -> None:  # type: ignore[no-untyped-def]
    """The SSO alert named metadata.auth=sso only: the prompt version that broke it was a click into drift away (PM
    review). Its page names drift's likely cause over the rule's window, inside its segment, with that cause's
    traces; an alert on another segment says the cause is the feature's move, not its own."""
    key, slug, client = regressed["key"], org_a.slug, _client(org_a)
    page = html.unescape(client.get(org_a.url(f"alerts/{regressed['alert']}/")).content.decode())
    cause = page.split('data-testid="alert-cause"', 1)[1].split("</p>", 1)[0]
    assert "Likely cause within metadata.auth=sso:" in cause and NARROW in cause
    (traces,) = _links(cause, "alert-cause-traces")
    query = {k: v[0] for k, v in parse_qs(urlsplit(traces).query).items()}
    assert (query["metadata.auth"], query["prompt_version"], query["feature"]) == ("sso", "v2.3", key)
    with in_tenant(org_a):
        other = Alert.objects.get(id=regressed["alert"])
        other.pk, other.segment = None, "metadata.auth=password"
        other.save()
    elsewhere = html.unescape(client.get(org_a.url(f"alerts/{other.pk}/")).content.decode())
    assert "Likely cause of the feature's move:" in elsewhere.split('data-testid="alert-cause"', 1)[1]
    assert f"/o/{slug}/drift/{key}/" in elsewhere


def test_the_drift_page_draws_each_distributions_psi_bins(regressed: dict[str, Any], org_a) -> None:  # type: ignore[no-untyped-def]
    """Each distribution with a PSI is drawn as its bins, baseline beside current, each bar titled with its range,
    both shares and its part of the PSI; a snapshot taken before the bins were kept is computed again when shown."""
    from evaluation.models import DriftSnapshot

    key, client = regressed["key"], _client(org_a)
    with in_tenant(org_a):
        snapshot = DriftSnapshot.objects.get(feature__key=key, day=utc_now().date())
        old = dict(snapshot.result)
        old.pop("shape", None)
        old["distributions"] = [{k: v for k, v in row.items() if k != "bins"} for row in old["distributions"]]
        DriftSnapshot.objects.filter(pk=snapshot.pk).update(result=old)
    page = client.get(org_a.url(f"drift/{key}/")).content.decode()
    with in_tenant(org_a):
        rows = DriftSnapshot.objects.get(pk=snapshot.pk).result["distributions"]
    drawn = [row for row in rows if row.get("bins")]
    assert drawn, rows
    for row in rows:
        figure = f'data-testid="psi-figure-{row["metric"]}"'
        assert (figure in page) == bool(row.get("bins"))
    for row in drawn:
        chart = page.split(f'data-testid="psi-figure-{row["metric"]}"', 1)[1].split("</figure>", 1)[0]
        titles = [html.unescape(t.split("</title>", 1)[0]) for t in chart.split("<title>")[1:]]
        assert len(titles) == 2 * len(row["bins"])  # two bars a bin
        first = row["bins"][0]
        said = f"baseline {first['baseline']:.1%}, current {first['current']:.1%} (PSI part {first['psi']:.3f})"
        assert said in titles[0]
