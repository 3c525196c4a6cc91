"""The judges portal as a PM uses it: create from a template, test on a trace, enable at 10% plus
every thumbs-down, watch scores arrive, edit into a new version with its diff, backfill with an
estimate, progress and cancel; provider keys never shown back; other organizations' judges 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from evaluation.models import BackfillRun, Judge, ProviderKey, Score
from evaluation.services.runs import scores_run
from evaluation.services.sampling import sampling_sweep
from evaluation.services.shared import utc_now
from tests.evaluation.helpers import make_traces, thumbs_down
from tests.fixtures.organizations import in_tenant, unique
from tests.helpers import assert_cross_tenant_404


def _owner(org) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(org.owner)
    return client


def test_a_pm_creates_tests_enables_and_watches_scores_arrive(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = _owner(org_a)
    with in_tenant(org_a):
        ids = make_traces(200)
        thumbs_down(ids[:15])
    page = client.get(org_a.url("judges/new/?template=helpfulness"))
    assert page.status_code == 200 and b"{{ output }}" in page.content
    name = unique("helpful")
    form = {k: v for k, v in page.context["form"].initial.items()} | {"name": name, "feature": ""}
    created = client.post(org_a.url("judges/new/"), form)
    assert created.status_code == 302, created.context["form"].errors if created.context else created
    detail = org_a.url(f"judges/{name}/")
    # Test on a trace before enabling: a verdict and its rationale, nothing stored.
    tested = client.post(org_a.url(f"judges/{name}/test/"), {"trace_id": ids[0]}, HTTP_HX_REQUEST="true")
    assert b"raw score" in tested.content and b'id="test-result"' in tested.content
    missing = client.post(org_a.url(f"judges/{name}/test/"), {"trace_id": "no-such-trace"}, HTTP_HX_REQUEST="true")
    assert b"no trace" in missing.content
    with in_tenant(org_a):
        assert not Score.objects.filter(judge__name=name).exists()
    enabled = client.post(
        org_a.url(f"judges/{name}/enable/"),
        {"sample_percent": "10", "all_thumbs_down": "on", "edited_multiplier": "1", "delay_minutes": "0"},
    )
    assert enabled.status_code == 302
    with in_tenant(org_a):
        sampling_sweep(now=utc_now() + timedelta(seconds=10))
        scores_run(max_seconds=30)
        judge = Judge.objects.get(name=name)
        scored = Score.objects.filter(judge_id=judge.id, status="ok")
        assert set(ids[:15]) <= set(scored.values_list("trace_id", flat=True))
    listing = client.get(org_a.url("judges/"))
    assert name.encode() in listing.content and b"10% + thumbs-down" in listing.content
    page = client.get(detail)
    assert b"Run history" in page.content and ids[0].encode() in client.get(org_a.url(f"traces/{ids[0]}")).content
    trace_page = client.get(org_a.url(f"traces/{ids[0]}"))
    assert name.encode() in trace_page.content  # the score shows on the trace page
    # Edit: a new version, shown with its diff; sampling carries over.
    edit = dict(form) | {"model": "", "parameters": '{"temperature": 0, "template": "helpfulness", "seed": 7}'}
    assert client.post(org_a.url(f"judges/{name}/edit/"), edit).status_code == 302
    page = client.get(detail)
    assert b"v2" in page.content and b"parameters.seed" in page.content
    with in_tenant(org_a):
        judge.refresh_from_db()
        assert judge.current_version.number == 2 and judge.current_version.sampling.base_rate == 0.1  # type: ignore[union-attr]


def test_bad_templates_are_clear_errors_on_the_page(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = _owner(org_a)
    form = {"name": unique("bad"), "kind": "llm", "provider": "offline", "scale": "binary",
            "prompt_template": "Rate {{ answer }} please", "parameters": "{}"}  # fmt: skip
    answer = client.post(org_a.url("judges/new/"), form)
    assert answer.status_code == 200 and b"unknown variable" in answer.content
    regex = {**form, "kind": "code", "parameters": '{"check": "regex", "must_match": ["(a+)+$"]}'}
    assert b"backtrack" in client.post(org_a.url("judges/new/"), regex).content


def test_backfill_estimate_progress_and_cancel(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tests.evaluation.helpers import offline_judge

    client = _owner(org_a)
    with in_tenant(org_a):
        make_traces(30)
        judge = offline_judge()
    estimate = client.post(org_a.url(f"judges/{judge.name}/backfills/"), {"since": "2025-03-31", "until": "2025-04-01"})
    assert estimate.status_code == 302
    with in_tenant(org_a):
        run = BackfillRun.objects.get(judge_version__judge=judge)
        assert run.traces >= 30 and run.estimated_cost_usd == 0  # the offline judge costs nothing
    assert b"not started" in client.get(org_a.url(f"judges/{judge.name}/")).content
    client.post(org_a.url(f"judges/{judge.name}/backfills/{run.id}/start/"))
    progress = client.get(org_a.url(f"judges/{judge.name}/backfills/{run.id}/"))
    assert b"queued" in progress.content and b"<progress" in progress.content
    with in_tenant(org_a):
        assert (
            Score.objects.filter(backfill_id=run.id, sampling_design="backfill", inclusion_probability=1.0).count()
            == run.traces
        )
    client.post(org_a.url(f"judges/{judge.name}/backfills/{run.id}/cancel/"))
    with in_tenant(org_a):
        run.refresh_from_db()
        assert run.status == "cancelled" and not Score.objects.filter(backfill_id=run.id).exists()


def test_provider_keys_are_encrypted_and_never_shown_back(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = _owner(org_a)
    secret = "sk-live-" + unique("k")
    form = {"provider": "openai", "name": unique("prod"), "base_url": "", "secret": secret}
    assert client.post(org_a.url("settings/judge-keys/"), form).status_code == 302
    page = client.get(org_a.url("settings/judge-keys/"))
    assert secret.encode() not in page.content and secret[-4:].encode() in page.content
    with in_tenant(org_a):
        stored = ProviderKey.objects.get(name=form["name"])
        assert secret not in stored.secret_encrypted and stored.base_url == "https://api.openai.com/v1"


def test_reviewers_cannot_change_judges_and_only_admins_see_keys(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.access import Role
    from tenants.services import member_ensure

    member_ensure(
        organization=org_a.organization, email=f"{unique('rev')}@a.test", password="x" * 12, role=Role.REVIEWER
    )
    from tenants.models import User

    reviewer = User.objects.order_by("-id")[0]
    client = Client()
    client.force_login(reviewer)
    assert client.get(org_a.url("judges/")).status_code == 200
    assert client.get(org_a.url("judges/new/")).status_code == 403
    assert client.get(org_a.url("settings/judge-keys/")).status_code == 403


def test_another_organization_s_judges_are_404(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
        make_traces(2)
        assert judge.current_version is not None
        run = BackfillRun.objects.create(judge_version=judge.current_version, since=utc_now(), until=utc_now())
        key = ProviderKey.objects.create(provider="openai", name=unique("k"), base_url="http://x", secret_encrypted="t")
    other = _owner(org_b)
    for suffix, method in [
        (f"judges/{judge.name}/", "get"), (f"judges/{judge.name}/test/", "post"),
        (f"judges/{judge.name}/enable/", "post"), (f"judges/{judge.name}/edit/", "post"),
        (f"judges/{judge.name}/disable/", "post"), (f"judges/{judge.name}/backfills/", "post"),
        (f"judges/{judge.name}/backfills/{run.id}/", "get"), (f"judges/{judge.name}/backfills/{run.id}/start/", "post"),
        (f"judges/{judge.name}/backfills/{run.id}/cancel/", "post"),
    ]:  # fmt: skip
        assert_cross_tenant_404(other, org_b.url(suffix), method, leak=judge.name if method == "get" else "")
        assert_cross_tenant_404(other, org_a.url(suffix), method)  # not a member of A
    assert_cross_tenant_404(other, org_b.url(f"settings/judge-keys/{key.id}/delete/"), "post")
    assert_cross_tenant_404(other, org_a.url("judges/"))
    assert judge.name.encode() not in other.get(org_b.url("judges/")).content


def test_a_backfill_window_out_of_range_is_a_form_error(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
    client = _owner(org_a)
    for since, until, message in (
        ("2025-03-31", "9999-12-31", b"A backfill covers"),
        ("1900-01-01", "2025-01-01", b"A backfill covers"),
        ("2025-04-02", "2025-04-01", b"comes before"),
    ):
        page = client.post(org_a.url(f"judges/{judge.name}/backfills/"), {"since": since, "until": until})
        assert page.status_code == 200 and message in page.content, (since, until)
    with in_tenant(org_a):
        assert not BackfillRun.objects.filter(judge_version__judge=judge).exists()


def test_the_judge_page_counts_draws_waiting_for_their_output(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Traces drawn before their output landed are not runs yet: the page says how many wait, not a silence."""
    from evaluation.services.judges import judge_enable
    from feedback.models import Feature
    from tests.evaluation.helpers import offline_judge

    client = _owner(org_a)
    feature = unique("feat")
    with in_tenant(org_a):
        make_traces(2, feature=feature, output="")
        make_traces(3, feature=feature)
        judge = offline_judge(feature=Feature.objects.get(key=feature))
        judge_enable(judge=judge, base_rate=1.0)
        sampling_sweep(now=utc_now() + timedelta(seconds=10))
    page = client.get(org_a.url(f"judges/{judge.name}/"))
    assert b"+ 2 waiting for their output" in page.content


def test_sampling_bounds_are_form_errors_and_the_delay_reads_in_minutes(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """1e308 was taken: the page then read "edited × 1e+308, after inf s"."""
    from evaluation.judges.sampling import SamplingRule as SamplingSpec
    from tests.evaluation.helpers import offline_judge

    client = _owner(org_a)
    with in_tenant(org_a):
        judge = offline_judge()
    url = org_a.url(f"judges/{judge.name}/enable/")
    form = {"sample_percent": "10", "edited_multiplier": "1", "delay_minutes": "0"}
    for field, value in [("edited_multiplier", "1e308"), ("delay_minutes", "1e308"), ("delay_minutes", "20000")]:
        page = client.post(url, form | {field: value})
        assert page.status_code == 200 and "less than or equal to" in page.content.decode(), (field, value)
    with in_tenant(org_a):
        judge.refresh_from_db()
        assert not judge.enabled
    assert client.post(url, form | {"delay_minutes": "1.5"}).status_code == 302
    assert "1.5 min after each trace lands" in client.get(org_a.url(f"judges/{judge.name}/")).content.decode()
    with pytest.raises(ValueError, match="edited_multiplier must be from 1 to 1000"):
        SamplingSpec(base_rate=0.1, edited_multiplier=1e308)


def _test_result_box(html: str) -> str:
    """The text of the "Test on a trace" result box, as the PM reads it (tags and escapes removed)."""
    import html as html_lib
    import re

    box = re.search(r'<div id="test-result">(.*?)</div>', html, re.S)
    assert box is not None, "no result box on the page"
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", box.group(1))).split())


def test_a_trace_id_the_form_refuses_says_why_in_the_result_box(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A 201-character trace ID answered 200 with an empty box (the form refused it and nothing said so)."""
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        judge = offline_judge()
    client = _owner(org_a)
    url = org_a.url(f"judges/{judge.name}/test/")
    for trace_id, expected in [
        ("t" * 201, "a trace ID has at most 200 characters (this one has 201)"),
        ("t" * 5000, "a trace ID has at most 200 characters (this one has 5000)"),
        ("t" * 200, f"no trace '{'t' * 200}'"),
        ("   ", "enter the ID of a trace to run the judge on"),
        ("tr\x00x", "Null characters are not allowed."),
    ]:
        partial = client.post(url, {"trace_id": trace_id}, HTTP_HX_REQUEST="true")
        assert partial.status_code == 200 and _test_result_box(partial.content.decode()) == expected, trace_id[:20]
        # Without htmx (a full page load): the same words in the same box.
        page = client.post(url, {"trace_id": trace_id})
        assert page.status_code == 200 and _test_result_box(page.content.decode()) == expected, trace_id[:20]


def _judges_row(html: str, name: str) -> dict[str, str]:
    """A judge's numbers on the judges page, by column heading."""
    import html as html_lib
    import re

    headings = [" ".join(html_lib.unescape(h).split()) for h in re.findall(r'<th class="num">(.*?)</th>', html)]
    row = re.search(rf">{re.escape(name)}</a>.*?</tr>", html, re.S)
    assert row is not None, name
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r'<td class="num">(.*?)</td>', row.group(0), re.S)]
    return dict(zip(headings, cells, strict=True))


def test_the_last_24_hours_count_runs_by_when_they_finished(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Scored / failures / cost over 24 h count runs by when the verdict came (scored_at), whatever the trace's date;
    queued is every run waiting now. They counted by when a run was drawn (created_at): a run drawn two days ago
    and scored now was missed, a queue older than a day read 0, and external scores of last week posted now
    counted as today's."""
    import json

    from evaluation.services.judges import judge_enable
    from evaluation.services.scores import scores_ingest
    from tests.evaluation.helpers import offline_judge

    now = utc_now()
    feature = unique("feat")
    external = unique("vendor")
    with in_tenant(org_a):
        ids = make_traces(4, feature=feature)  # traces from 2025: older than any window here
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=1.0)
        sampling_sweep(now=now + timedelta(seconds=10))
        scores_run(max_seconds=30)
        scores = Score.objects.filter(judge_id=judge.id)
        assert scores.filter(status="ok").count() == 4
        scores.filter(trace_id=ids[0]).update(created_at=now - timedelta(days=2))  # drawn 2 days ago, scored now
        scores.filter(trace_id=ids[1]).update(
            created_at=now - timedelta(days=3), scored_at=now - timedelta(days=2)
        )  # finished two days ago
        scores.filter(trace_id=ids[2]).update(
            status="pending", scored_at=None, created_at=now - timedelta(days=2)
        )  # still waiting since two days ago
        last_week = (now - timedelta(days=7)).isoformat()
        posted = scores_ingest(body=json.dumps({"batch": [
            {"score_id": unique("s"), "trace_id": ids[0], "name": external, "value": 1, "scale": "binary"},
            {"score_id": unique("s"), "trace_id": ids[1], "name": external, "value": 1, "scale": "binary",
             "occurred_at": last_week},
        ]}).encode())  # fmt: skip
        assert not posted.errors and posted.accepted == 2
    page = _owner(org_a).get(org_a.url("judges/")).content.decode()
    ours = _judges_row(page, judge.name)
    assert (ours["Scored, last 24 h"], ours["Queued now"]) == ("2", "1"), ours
    theirs = _judges_row(page, external)
    assert (theirs["Scored, last 24 h"], theirs["Queued now"]) == ("1", "0"), theirs
    assert "counts runs by when they finished" in page
    detail = _owner(org_a).get(org_a.url(f"judges/{judge.name}/"))
    assert detail.context["stats"].scored == 2 and detail.context["stats"].pending == 1


PM_CONTROLS = ("Run v1 now", "Update sampling", "Disable", "Estimate cost", "Save as a new version", "Start", "Cancel")


def test_a_judge_s_page_shows_its_controls_to_a_pm_only(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A viewer or a reviewer sees the judge, not buttons that would answer 403; a PM sees them all."""
    from evaluation.services.judges import judge_enable
    from tenants.services import member_ensure
    from tests.evaluation.helpers import offline_judge

    with in_tenant(org_a):
        make_traces(3)
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.1, all_thumbs_down=True, edited_multiplier=1, delay_s=0)
    pm = _owner(org_a)
    window = {"since": "2025-03-31", "until": "2025-04-01"}
    assert pm.post(org_a.url(f"judges/{judge.name}/backfills/"), window).status_code == 302
    with in_tenant(org_a):
        run = BackfillRun.objects.get(judge_version__judge=judge)
    shown = pm.get(org_a.url(f"judges/{judge.name}/")).content.decode()
    assert [c for c in PM_CONTROLS if c not in shown] == []
    assert "Start</button>" in pm.get(org_a.url(f"judges/{judge.name}/backfills/{run.id}/")).content.decode()
    for role in ("viewer", "reviewer"):
        member = member_ensure(
            organization=org_a.organization, email=f"{unique(role)}@a.test", password="x" * 12, role=role
        ).user
        client = Client()
        client.force_login(member)
        page = client.get(org_a.url(f"judges/{judge.name}/"))
        assert page.status_code == 200 and "Run history" in page.content.decode()
        html = page.content.decode()
        assert [c for c in PM_CONTROLS if f"{c}</button>" in html or f">{c}" in html] == [], role
        assert f"/judges/{judge.name}/enable/" not in html and f"/judges/{judge.name}/edit/" not in html
        row = client.get(org_a.url(f"judges/{judge.name}/backfills/{run.id}/")).content.decode()
        assert "<button" not in row, role


def test_the_prefilled_new_judge_form_creates_a_judge_as_it_is(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A template's name is prefilled with a suffix once a judge has it: submitting the form unchanged works."""
    from tests.evaluation.helpers import offline_judge

    client = _owner(org_a)
    with in_tenant(org_a):
        if not Judge.objects.filter(name="helpfulness").exists():
            offline_judge(name="helpfulness")
    for _ in range(2):
        page = client.get(org_a.url("judges/new/?template=helpfulness"))
        initial = page.context["form"].initial
        with in_tenant(org_a):
            assert initial["name"].startswith("helpfulness-")
            assert not Judge.objects.filter(name=initial["name"]).exists()
        form = {k: v for k, v in initial.items()} | {"feature": ""}
        created = client.post(org_a.url("judges/new/"), form)
        assert created.status_code == 302, created.context["form"].errors if created.context else created
    with in_tenant(org_a):
        assert Judge.objects.filter(name__startswith="helpfulness-").count() >= 2


def test_the_new_judge_form_warns_when_the_provider_has_no_key_yet(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """No Anthropic key: the form says so before creating (the provider select asks again on change),
    and still creates the judge; with a key, or offline, no warning."""
    client = _owner(org_a)
    with in_tenant(org_a):
        ProviderKey.objects.filter(provider="anthropic").delete()
    warning = "No Anthropic key in this organization yet"
    assert warning not in client.get(org_a.url("judges/new/?template=helpfulness")).content.decode()  # offline
    assert warning in client.get(org_a.url("judges/new/?template=helpfulness&provider=anthropic")).content.decode()
    changed = client.get(org_a.url("judges/new/?provider=anthropic"), HTTP_HX_REQUEST="true").content.decode()
    assert warning in changed and 'id="provider-warning"' in changed and "<form" not in changed
    offline = client.get(org_a.url("judges/new/?provider=offline"), HTTP_HX_REQUEST="true").content.decode()
    assert warning not in offline and 'id="provider-warning"' in offline
    form = {"name": unique("claude"), "kind": "llm", "provider": "anthropic", "model": "claude-3-5-haiku",
            "scale": "binary", "prompt_template": "Is {{ output }} helpful?", "parameters": "{}",
            "feature": ""}  # fmt: skip
    invalid = client.post(org_a.url("judges/new/"), form | {"parameters": "nope"})
    assert invalid.status_code == 200 and warning in invalid.content.decode()
    assert client.post(org_a.url("judges/new/"), form).status_code == 302  # a warning, not a refusal
    with in_tenant(org_a):
        assert Judge.objects.filter(name=form["name"]).exists()
    key = {"provider": "anthropic", "name": unique("k"), "base_url": "", "secret": "sk-ant-0123456789"}
    assert client.post(org_a.url("settings/judge-keys/"), key).status_code == 302
    assert warning not in client.get(org_a.url("judges/new/?provider=anthropic")).content.decode()
