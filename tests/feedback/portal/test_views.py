"""The trace explorer, the trace page and the overview, through the in-process client."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import pytest
from django.test import Client

from feedback import services
from feedback.rollups import rollups_refresh
from feedback.selectors import TraceFilters, prompt_changes, trace_count
from tenants.schema import in_tenant
from tests.fixtures.organizations import unique
from tests.fixtures.rollups import rollups_settled
from tests.helpers import assert_cross_tenant_404


@pytest.fixture
def explorer(db: None, org_a):  # type: ignore[no-untyped-def]
    run = unique("ex")
    traces = [
        {"trace_id": f"{run}-sso", "feature": "support-copilot", "prompt_version": "pv-x", "metadata": {"auth": "sso"},
         "output": "Use your Okta dashboard.", "customer_id": "cus_big",
         "spans": [{"span_id": "a", "name": "retrieve", "kind": "retrieval", "start": "2025-01-01T00:00:00Z",
                    "end": "2025-01-01T00:00:01Z"}]},
        {"trace_id": f"{run}-pw", "feature": "support-copilot", "prompt_version": "pv-x",
         "metadata": {"auth": "password"}, "output": "Click forgot password."},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        edit = {
            "event_id": str(uuid.uuid4()),
            "trace_id": f"{run}-sso",
            "kind": "edit",
            "original_text": "Use your Okta dashboard.",
            "edited_text": "Open the Okta dashboard.",
        }
        services.feedback_ingest(body=msgspec.json.encode(edit))
    client = Client()
    client.force_login(org_a.owner)
    return run, client


def test_trace_explorer_filters_by_metadata_and_edit(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url("traces/"), {"metadata.auth": "sso", "prompt_version": "pv-x"})
    assert f"{run}-sso".encode() in page.content and f"{run}-pw".encode() not in page.content
    edited = client.get(org_a.url("traces/"), {"has_edit": "1", "q": f"{run}-sso"})
    assert f"{run}-sso".encode() in edited.content
    partial = client.get(org_a.url("traces/"), {"metadata.auth": "password"}, HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and f"{run}-pw".encode() in partial.content
    # One URL, a fragment or the page: a browser's cache must tell them apart (Back showed the bare fragment).
    assert "HX-Request" in partial["Vary"] and "HX-Request" in page["Vary"]
    bad = client.get(org_a.url("traces/"), {"since": "last tuesday"})
    said = b'<p class="msg error">From not applied: use ISO 8601, e.g. 2025-01-31'
    assert bad.status_code == 200 and said in bad.content
    # Only the refused filter is left out: the others still apply (one bad date dropped every filter).
    kept = client.get(org_a.url("traces/"), {"since": "last tuesday", "metadata.auth": "sso", "prompt_version": "pv-x"})
    assert said in kept.content and kept.context["filters"].metadata == {"auth": "sso"}
    assert f"{run}-sso".encode() in kept.content and f"{run}-pw".encode() not in kept.content
    assert b"since=" not in kept.context["query"].encode() and "metadata.auth=sso" in kept.context["query"]
    two = client.get(org_a.url("traces/"), {"since": "x", "until": "y", "prompt_version": "pv-x"}).content.decode()
    assert "From not applied: use ISO 8601" in two and "Until not applied: use ISO 8601" in two
    # A name no filter can be told from (a NUL in it) drops the query; a bad cursor, only the page (it looped).
    for odd in ("cursor%00=1", "cur%00sor=x&prompt_version=pv-x"):
        page = client.get(f"{org_a.url('traces/')}?{odd}")
        assert page.status_code == 200 and b"not applied: must not contain NUL" in page.content
    stale = client.get(org_a.url("traces/"), {"cursor": "abc", "metadata.auth": "sso"})
    assert b"Cursor not applied" in stale.content and stale.context["filters"].metadata == {"auth": "sso"}
    backwards = client.get(org_a.url("traces/"), {"since": "2026-11-20", "until": "2026-11-01"})
    assert backwards.status_code == 200 and b"the window must end after it starts" in backwards.content


def test_a_trace_opened_from_a_filtered_list_leads_back_to_that_list(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    """The trace page's "← Traces" dropped the filters it was opened from (a PM read one SSO trace, came back to
    every trace). Only the explorer's own filters travel back."""
    run, client = explorer
    listed = client.get(org_a.url("traces/"), {"metadata.auth": "sso", "prompt_version": "pv-x"}).content.decode()
    link = html.unescape(listed.split(f"/traces/{run}-sso?back=", 1)[1].split('"', 1)[0])
    detail = client.get(org_a.url(f"traces/{run}-sso"), {"back": unquote(link)}).content.decode()
    back = html.unescape(detail.split('data-testid="back-to-traces" href="', 1)[1].split('"', 1)[0])
    assert back == f"{org_a.url('traces/')}?metadata.auth=sso&prompt_version=pv-x"
    assert client.get(back).context["filters"].metadata == {"auth": "sso"}
    # Anything else in it is dropped: no way to make the link lead elsewhere.
    odd = client.get(org_a.url(f"traces/{run}-sso"), {"back": "next=//evil.test&feature=x"}).content.decode()
    assert f'href="{org_a.url("traces/")}?feature=x"' in odd


def test_trace_page_shows_spans_and_the_edit_diff(explorer, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    page = client.get(org_a.url(f"traces/{run}-sso"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<del>Use</del>" in html and "<ins>Open</ins>" in html and "<del>your</del>" in html
    assert "wf-retrieval" in html and "cus_big" in html
    # org B's owner asking org A's URL, or org B's URL for org A's trace: 404 either way
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_a.url(f"traces/{run}-sso"))
    assert_cross_tenant_404(other, org_b.url(f"traces/{run}-sso"))
    # Typed with a slash at the end, as every other page's address: the trace (it was a 404); another's still 404.
    slashed = client.get(org_a.url(f"traces/{run}-sso/") + "?back=feature%3Dsupport-copilot")
    assert (
        slashed.status_code == 302
        and slashed["Location"] == org_a.url(f"traces/{run}-sso") + "?back=feature%3Dsupport-copilot"
    )
    assert_cross_tenant_404(other, org_b.url(f"traces/{run}-sso/"))
    assert client.get(org_a.url(f"traces/{run}-nothing/")).status_code == 404


def test_overview_shows_rollup_numbers(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    run, client = explorer
    with in_tenant(org_a.organization):
        rollups_refresh()
    page = client.get(org_a.url(""))
    assert b"support-copilot" in page.content and b"Widget events rejected" in page.content


def test_the_customer_filter_reads_the_customers_traces_newest_first_from_its_index(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A customer with few traces is a few index pages, not a walk of every trace until 50 match
    (a customer with none: 308 ms at 1M traces through the old (customer_id, day) index, 1.2 ms)."""
    from django.db import connection

    from feedback.selectors import TraceFilters, traces_filtered

    query = traces_filtered(TraceFilters(customer_id="cus_rare")).order_by("-started_at", "-id")[:51]
    sql, params = query.query.sql_with_params()
    run = unique("many")
    busy = [{"trace_id": f"{run}-{i}", "feature": "f", "customer_id": f"cus_{i % 40}"} for i in range(3000)]
    with in_tenant(org_a.organization), connection.cursor() as cursor:
        # A table the planner knows to be big (a few thousand traces of 40 customers, analyzed): with the test
        # database's handful of rows every plan costs the same, and which one it picks is chance.
        for start in range(0, len(busy), 1000):
            services.traces_ingest(body=msgspec.json.encode({"batch": busy[start : start + 1000]}))
        cursor.execute("ANALYZE feedback_trace")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # Straight (in order) or as a bitmap then a sort of the customer's few rows: through the index.
    assert "Index Scan using trace_customer_recent" in plan or "Index Scan on trace_customer_recent" in plan, plan


def test_a_metadata_filter_matches_numbers_and_booleans_as_sent(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A URL's value is text, the metadata sent may hold a number or a boolean: the API's list and the explorer
    match either (the reports' grouping already showed 5 as "5"). NaN or Infinity in the URL are plain text."""
    from tests.fixtures.api import trace

    run = unique("md")
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": [
            trace(f"{run}-num", metadata={"seats": 5, "trial": True, "tier": "gold", "ratio": 0.5}),
            trace(f"{run}-str", metadata={"seats": "5", "trial": "true", "tier": "gold"}),
            trace(f"{run}-other", metadata={"seats": 6, "trial": False, "tier": "NaN"}),
        ]}))  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)

    def found(**query: str) -> set[str]:
        page = client.get(org_a.url("traces/"), {"q": "", **{f"metadata.{k}": v for k, v in query.items()}})
        assert page.status_code == 200
        return {t for t in (f"{run}-num", f"{run}-str", f"{run}-other") if t.encode() in page.content}

    assert found(seats="5") == {f"{run}-num", f"{run}-str"}
    assert found(trial="true") == {f"{run}-num", f"{run}-str"}
    assert found(trial="false") == {f"{run}-other"}
    assert found(ratio="0.5") == {f"{run}-num"}
    assert found(tier="NaN") == {f"{run}-other"} and found(seats="Infinity") == set()


def test_trace_page_lists_spans_sent_without_times(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    """Start and end are optional in the API: such spans are listed (with model, tokens, cost, attributes),
    only the timed ones get a bar, and the page says which have no times."""
    run = unique("untimed")
    spans = [
        {"span_id": "plan", "name": "plan step", "kind": "llm", "model": "gpt-4o-mini", "input_tokens": 321,
         "output_tokens": 45, "cost_usd": 0.0012, "attributes": {"route": "billing"}},
        {"span_id": "look", "name": "lookup order", "kind": "tool"},
    ]  # fmt: skip
    mixed = [{"span_id": "kb", "name": "search kb", "kind": "retrieval", "start": "2025-01-01T00:00:00Z",
              "end": "2025-01-01T00:00:01Z"}, {"span_id": "late", "name": "rerank", "kind": "tool"}]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": [
            {"trace_id": f"{run}-none", "feature": "support-copilot", "spans": spans},
            {"trace_id": f"{run}-mixed", "feature": "support-copilot", "spans": mixed},
        ]}))  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)
    html = client.get(org_a.url(f"traces/{run}-none")).content.decode()
    assert "<h2>Spans</h2>" in html and "plan step" in html and "lookup order" in html
    assert "gpt-4o-mini" in html and "321 in / 45 out tokens" in html and "$0.001200" in html
    assert "route" in html and "billing" in html
    assert "2 of 2 spans came without a start and end time" in html and 'class="wf-bar' not in html
    html = client.get(org_a.url(f"traces/{run}-mixed")).content.decode()
    assert "search kb" in html and "rerank" in html and "1 of 2 spans came without" in html
    assert html.count('class="wf-bar') == 1 and html.count("no start/end time") == 1
    other = Client()
    other.force_login(org_b.owner)
    assert_cross_tenant_404(other, org_a.url(f"traces/{run}-none"))
    assert_cross_tenant_404(other, org_b.url(f"traces/{run}-none"))


def test_explorer_converts_any_offset_to_utc_and_names_a_year_out_of_range(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses offsets past ±15:59 (this was a 500); ISO 8601 allows ±23:59, so times are read in
    UTC. A time whose UTC is past the year 9999 is a filter error naming the field, not a 500."""
    run = unique("tz")
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode(
            {"trace_id": run, "feature": "support-copilot", "started_at": "2026-12-04T10:00:00Z"}
        ))  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)

    def shown(**query: str) -> bool:
        page = client.get(org_a.url("traces/"), {"q": run, **query})
        assert page.status_code == 200 and b"not applied" not in page.content, page.content
        # its row's link (the search box holds the ID too), carrying the list's filters back
        return f"/traces/{run}?back=".encode() in page.content

    # 2026-12-05T00:00+16:00 is 2026-12-04T08:00Z; -23:00 on Dec 3 is Dec 4 22:00Z.
    assert shown(until="2026-12-05T00:00:00+16:00") is False and shown(since="2026-12-05T00:00:00+16:00")
    assert shown(until="2026-12-03T23:00:00-23:00") is True and shown(since="2026-12-03T23:00:00-23:00") is False
    assert shown(since="2026-12-04T23:59:00+14:00") and shown(until="2026-12-04T23:59:00+14:00") is False
    for field, label in (("since", "From"), ("until", "Until")):
        for value in ("9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+01:00"):
            page = client.get(org_a.url("traces/"), {field: value})
            said = f"{label} not applied: use ISO 8601".encode()
            assert page.status_code == 200 and said in page.content and b"years 1 to 9999" in page.content


def test_explorer_until_day_is_inclusive_and_a_timestamp_stays_exclusive(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    run = unique("day")
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": [
            {"trace_id": f"{run}-noon", "feature": "support-copilot", "started_at": "2026-12-05T12:00:00Z"},
            {"trace_id": f"{run}-next", "feature": "support-copilot", "started_at": "2026-12-06T00:00:00Z"},
        ]}))  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)

    def found(**query: str) -> set[str]:
        page = client.get(org_a.url("traces/"), query)
        assert page.status_code == 200 and b"not applied" not in page.content, page.content
        return {t for t in (f"{run}-noon", f"{run}-next") if t.encode() in page.content}

    # From Dec 5 until Dec 5: that one day (it was refused, and every trace was listed).
    one_day = client.get(org_a.url("traces/"), {"since": "2026-12-05", "until": "2026-12-05"})
    assert b"not applied" not in one_day.content and f"{run}-noon".encode() in one_day.content
    assert f"{run}-next".encode() not in one_day.content
    assert b"Until (inclusive)" in one_day.content and b'name="until" value="2026-12-05"' in one_day.content
    assert found(since="2026-12-05", until="2026-12-05") == {f"{run}-noon"}
    assert found(since="2026-12-05", until="2026-12-06T00:00:00Z") == {f"{run}-noon"}  # a time: exclusive
    assert found(since="2026-12-05", until="2026-12-05T12:00:00Z") == set()
    assert found(since="2026-12-05", until="2026-12-06") == {f"{run}-noon", f"{run}-next"}
    # Refused filters still say so, prominently, and the pager does not carry them to page 2.
    backwards = client.get(org_a.url("traces/"), {"since": "2026-12-06", "until": "2026-12-05"})
    assert b'<p class="msg error">Until not applied: the window must end after it starts' in backwards.content
    assert b"until=2026-12-05&amp;cursor=" not in backwards.content


def test_explorer_has_a_search_box_and_a_way_back_from_older_pages(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """q matches a whole trace, session or user ID (indexed equality, fast at 1M traces), not words."""
    run = unique("pg")
    batch = [
        {"trace_id": f"{run}-{i:02}", "feature": "support-copilot", "session_id": f"{run}-sess",
         "started_at": f"2026-11-01T00:{i:02}:00Z", "metadata": {"run": run}}
        for i in range(55)
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": batch}))
    client = Client()
    client.force_login(org_a.owner)
    first = client.get(org_a.url("traces/"), {"metadata.run": run}).content.decode()
    assert '<label for="f-q">Exact trace, session or user ID</label>' in first
    assert 'name="q"' in first and "Newest traces (first page)" not in first
    older = re.search(r'href="\?([^"]*cursor=[^"]*)">Older traces', first)
    assert older is not None
    second = client.get(org_a.url("traces/") + "?" + older.group(1).replace("&amp;", "&")).content.decode()
    assert f"{run}-04" in second and f"{run}-54" not in second
    assert f'<a class="button" href="?metadata.run={run}">← Newest traces (first page)</a>' in second
    searched = client.get(org_a.url("traces/"), {"q": f"{run}-07"}).content.decode()
    assert f'name="q" value="{run}-07"' in searched and f"/traces/{run}-07?back=" in searched
    assert f"{run}-08" not in searched
    by_session = client.get(org_a.url("traces/"), {"q": f"{run}-sess"}).content.decode()
    assert f"{run}-54" in by_session and f"{run}-00" not in by_session  # the first page of 50, newest first
    assert f"{run}-0" not in client.get(org_a.url("traces/"), {"q": run}).content.decode()  # not a prefix search


def test_a_traces_fields_lead_to_its_feature_prompt_version_experiment_and_metadata(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    """The feature to its page, the prompt version, the variant and each metadata value to the explorer's traces
    of the same feature (not every feature's), the experiment to its page."""
    from datetime import UTC, datetime, timedelta
    from html import unescape
    from urllib.parse import parse_qs, urlsplit

    from evaluation.services.experiments import experiment_create
    from tests.fixtures.api import trace

    run = unique("ln")
    key, other = f"{run}-feat", f"{run}-other"
    shared = {"prompt_version": f"{run}-pv", "experiment": f"{run}-exp", "variant": "treatment",
              "metadata": {"auth": "sso", "trial": True, "seats": 5, "extra": {"a": 1}}}  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": [
            trace(f"{run}-mine", feature=key, **shared), trace(f"{run}-theirs", feature=other, **shared),
        ]}))  # fmt: skip
        arms = [{"name": "control", "allocation": 0.5}, {"name": "treatment", "allocation": 0.5}]
        experiment_create(key=f"{run}-exp", feature_key=key, control="control", primary_metric="conversion",
                          mde=0.05, started_at=datetime.now(UTC) - timedelta(days=1), arms=arms)  # fmt: skip
    client = Client()
    client.force_login(org_a.owner)
    url = org_a.url(f"traces/{run}-mine")
    page = client.get(url).content.decode()

    def href(testid: str) -> list[str]:
        return [unescape(m) for m in re.findall(rf'data-testid="{testid}" href="([^"]*)"', page)]

    def query(link: str) -> dict[str, list[str]]:
        assert urlsplit(link).path == f"/o/{org_a.slug}/traces/"
        return parse_qs(urlsplit(link).query)

    assert href("trace-feature") == [f"/o/{org_a.slug}/features/{key}/"]
    assert href("trace-experiment") == [f"/o/{org_a.slug}/experiments/{run}-exp/"]
    (version,) = href("trace-prompt-version")
    assert query(version) == {"feature": [key], "prompt_version": [f"{run}-pv"]}
    (variant,) = href("trace-variant")
    assert query(variant) == {"feature": [key], "variant": ["treatment"]}
    chips = sorted((query(link) for link in href("trace-metadata")), key=str)
    assert chips == sorted([
        {"feature": [key], "metadata.auth": ["sso"]},
        {"feature": [key], "metadata.trial": ["true"]},  # as JSON: the explorer matches a boolean so
        {"feature": [key], "metadata.seats": ["5"]},
    ], key=str)  # fmt: skip
    # An object gets a chip with no link: the explorer cannot filter by one.
    assert '<span class="badge">extra = ' in page
    # Followed: each link answers; the explorer's lists hold this feature's trace, not the other feature's.
    for link in [*href("trace-feature"), *href("trace-experiment")]:
        assert client.get(link).status_code == 200, link
    for link in [version, variant, *href("trace-metadata")]:
        listed = client.get(link).content.decode()
        assert f"{run}-mine" in listed and f"{run}-theirs" not in listed, link
    # Org B asking for org A's trace: 404.
    theirs = Client()
    theirs.force_login(org_b.owner)
    assert_cross_tenant_404(theirs, url)


def test_explorer_finds_words_in_the_input_or_output(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    """A PM looking for what the SSO answers say: words anywhere in a trace's input or output, in any case, as
    one phrase (% and _ are literal), with the other filters; the ID search stays exact."""
    run = unique("tx")
    batch = [
        {"trace_id": f"{run}-a", "feature": "support-copilot", "input": "How do I log in with Single Sign-On?",
         "output": "Ask your admin.", "started_at": "2026-11-01T00:01:00Z"},
        {"trace_id": f"{run}-b", "feature": "support-copilot", "input": "Reset my password",
         "output": "Use single sign-on from the Okta dashboard; 100% of accounts have it.",
         "started_at": "2026-11-01T00:02:00Z"},
        {"trace_id": f"{run}-c", "feature": "summarize", "input": "Summarize the single sign-on thread",
         "output": "Done.", "started_at": "2026-11-01T00:03:00Z"},
        {"trace_id": f"{run}-d", "feature": "support-copilot", "input": "Sign on", "output": "single, then sign-on",
         "started_at": "2026-11-01T00:04:00Z"},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": batch}))
    client = Client()
    client.force_login(org_a.owner)

    def found(**query: str) -> set[str]:
        page = client.get(org_a.url("traces/"), query).content.decode()
        return set(re.findall(rf"/traces/({run}-[a-z])\?back=", page))

    assert found(text="SINGLE  sign-on") == {f"{run}-a", f"{run}-b", f"{run}-c"}  # not -d: the words as one phrase
    assert found(text="single sign-on", feature="support-copilot") == {f"{run}-a", f"{run}-b"}
    assert found(text="okta") == {f"{run}-b"}
    assert found(text="100%") == {f"{run}-b"} and found(text="%") == {f"{run}-b"}  # % is a character, not "anything"
    assert found(text="_") == set()
    assert found(q=f"{run}-a", text="okta") == set()  # both filters apply
    page = client.get(org_a.url("traces/"), {"text": "x" * 201}).content.decode()
    assert "Words not applied: at most 200 characters." in page
    # Another organization's traces are not searched.
    other = Client()
    other.force_login(org_b.owner)
    assert run not in other.get(org_b.url("traces/"), {"text": "single sign-on"}).content.decode()


def test_a_span_attribute_named_like_a_dict_method_is_listed(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """A cart tool's span says {"items": 2}: the trace page read attributes.items as that key (an int) and
    answered 500 for every checkout trace of the demo."""
    run = unique("it")
    trace = {"trace_id": run, "feature": "checkout-assist", "spans": [
        {"span_id": "cart", "name": "cart_lookup", "kind": "tool",
         "attributes": {"items": 2, "keys": "k", "values": [1, 2], "gen_ai.tool.name": "cart_lookup"}}]}  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode(trace))
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url(f"traces/{run}"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "<code>items</code> = 2<br>" in text and "<code>keys</code> = k<br>" in text


def test_each_listed_trace_shows_what_people_said_of_it(explorer, org_a) -> None:  # type: ignore[no-untyped-def]
    """The list had no feedback column: a PM looking for the thumbs-down traces opened them one by one. Thumbs and
    ratings count as the reports count them, the last choice per person."""
    run, client = explorer

    def event(kind: str, when: str, **fields: object) -> dict[str, object]:
        return {"event_id": str(uuid.uuid4()), "trace_id": f"{run}-pw", "kind": kind,
                "occurred_at": f"2026-12-05T10:{when}:00Z", **fields}  # fmt: skip

    events = [
        event("thumb", "00", value=1, user_id="u1"),
        event("thumb", "05", value=-1, user_id="u1"),  # changed mind
        event("thumb", "01", value=-1, user_id="u2"),
        event("thumb", "02", value=1, user_id="u3"),
        event("rating", "03", value=4, user_id="u1"),
        event("rating", "04", value=5, user_id="u2"),
        event("comment", "06", comment="wrong link", user_id="u2"),
        event("copy", "07"),
        event("retry", "08"),
    ]
    with in_tenant(org_a.organization):
        services.feedback_ingest(body=msgspec.json.encode({"batch": events}))
    page = client.get(org_a.url("traces/"), {"q": f"{run}-pw"}).content.decode()
    cell = re.search(r'data-testid="feedback-cell">(.*?)</td>', page, flags=re.S)
    assert cell is not None
    text = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(cell.group(1))).split())
    assert text == "▲ 1 ▼ 2 ★ 4.5 comment 2 implicit", text
    assert 'title="copy 1, retry 1">2 implicit' in cell.group(1)  # which signals (a copy is no abandon)
    sso = client.get(org_a.url("traces/"), {"q": f"{run}-sso"}).content.decode()
    assert re.search(r'data-testid="feedback-cell">.*?edited.*?</td>', sso, flags=re.S)
    # One read for the page, whatever its length: the rows' feedback is not fetched trace by trace.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(org_a.url("traces/"))
    assert sum("feedback_feedbackevent" in q["sql"] and "last_choice" in q["sql"] for q in queries) == 1


def test_the_prompt_versions_page_shows_each_prompt_and_a_label_reused_for_several(db: None, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    """No page showed a prompt's text, and one label sent with two different prompts read as one version in every
    report: the prompt versions page lists each label's prompts and says when a label holds several."""
    run = unique("pv")
    feature = f"f-{run}"
    traces = [
        {"trace_id": f"{run}-1", "feature": feature, "prompt_version": "v1", "prompt": f"You are helpful. {run}",
         "model": "gpt-4o"},
        {"trace_id": f"{run}-2", "feature": feature, "prompt_version": "v2", "prompt": "Answer briefly.",
         "model": "gpt-4o"},
        {"trace_id": f"{run}-3", "feature": feature, "prompt_version": "v2", "prompt": "Answer at length.",
         "model": "gpt-4o-mini"},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        rollups_settled()
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url("prompts/"), {"feature": feature})
    assert page.status_code == 200
    text = page.content.decode()
    assert f"You are helpful. {run}" in text and "Answer briefly." in text and "Answer at length." in text
    assert text.count('data-testid="prompt-version"') == 3
    reused = re.findall(r'data-testid="label-reused"[^>]*>([^<]*)<', text)
    assert reused == ["2 prompts under this label"]  # v2 alone
    # The models each label's traces ran on (a version records only its first trace's model).
    models = re.findall(r'data-testid="label-models">([^<]*)<', text)
    assert sorted(models) == ["traces by model: gpt-4o 1", "traces by model: gpt-4o 1 · gpt-4o-mini 1"], models
    # The trace page links its prompt; the feature page links the feature's prompt versions.
    detail = client.get(org_a.url(f"traces/{run}-1")).content.decode()
    link = html.unescape(detail.split('data-testid="trace-prompt" href="', 1)[1].split('"', 1)[0])
    path, anchor = link.split("#")
    assert anchor.startswith("pv-") and f'id="{anchor}"' in client.get(path).content.decode()
    feature_page = client.get(org_a.url(f"features/{feature}/")).content.decode()
    assert f'data-testid="feature-prompts" href="{org_a.url("prompts/")}?feature={feature}"' in feature_page
    assert client.get(org_a.url("prompts/"), {"feature": "no-such-feature"}).status_code == 404
    assert client.get(f"{org_a.url('prompts/')}?feature=%00").status_code == 404  # not a 500 from PostgreSQL
    # A label and prompt another feature sent first is one row, listed under every feature whose traces name it.
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode(
            {"trace_id": f"{run}-4", "feature": f"g-{run}", "prompt_version": "v2", "prompt": "Answer briefly."}
        ))  # fmt: skip
        rollups_settled()
    other_feature = client.get(org_a.url("prompts/"), {"feature": f"g-{run}"}).content.decode()
    assert "Answer briefly." in other_feature and "Answer at length." not in other_feature
    # Another organization sees none of it, and cannot open this one's page.
    other = Client()
    other.force_login(org_b.owner)
    assert run not in other.get(org_b.url("prompts/")).content.decode()
    assert_cross_tenant_404(other, org_a.url("prompts/"), leak=run)


def test_a_feature_grouped_by_model_leads_to_that_models_traces(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Reports had no model grouping (no rollup holds the model), and the explorer no model filter: which model
    answers worse, or costs more per success, could not be asked. Grouped by model, a row's traces are its own."""
    run = unique("md")
    feature = f"m-{run}"
    traces = [{"trace_id": f"{run}-{i}", "feature": feature, "model": ("gpt-4o", "gpt-4o-mini")[i % 2],
               "cost_usd": 0.01 * (1 + i % 2), "started_at": "2026-12-01T12:00:00Z"} for i in range(6)]  # fmt: skip
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode({"batch": traces}))
        rollups_settled()
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url(f"features/{feature}/"), {"group_by": "model", "since": "2026-11-25",
                                                          "through": "2026-12-02"})  # fmt: skip
    assert page.status_code == 200
    groups = {g["group"]: g for g in page.context["report"]["groups"]}
    assert {k: (g["traces"], round(g["cost_usd"], 6)) for k, g in groups.items()} == {
        "gpt-4o": (3, 0.03), "gpt-4o-mini": (3, 0.06)}  # fmt: skip
    # Each row leads to its traces within the page's window (rows by model, version or day had no link, and a
    # customer's or a segment's led to every day's).
    text = page.content.decode()
    link = html.unescape(text.split('data-testid="group-traces" href="', 2)[2].split('"', 1)[0])
    query = dict(parse_qsl(urlsplit(link).query))
    assert query == {"feature": feature, "model": "gpt-4o-mini", "since": "2026-11-25", "until": "2026-12-02"}
    by_day = client.get(org_a.url(f"features/{feature}/"), {"group_by": "day", "since": "2026-11-25",
                                                            "through": "2026-12-02"}).content.decode()  # fmt: skip
    day_link = html.unescape(by_day.split('data-testid="group-traces" href="', 1)[1].split('"', 1)[0])
    assert dict(parse_qsl(urlsplit(day_link).query)) == {
        "feature": feature,
        "since": "2026-12-01",
        "until": "2026-12-01",
    }
    listed = client.get(link).content.decode()
    assert set(re.findall(rf"/traces/({run}-[0-9])\?back=", listed)) == {f"{run}-1", f"{run}-3", f"{run}-5"}
    # Picked from the models traces ran on (typed, "haiku" matched nothing), and the form keeps it.
    assert re.search(r'<select id="f-model" name="model">.*<option selected>gpt-4o-mini</option>', listed)


def test_a_prompt_versions_changes_from_the_one_before_are_shown_sentence_by_sentence(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """The demo's regression is a sentence v2.3 dropped (what to tell SSO users): a PM had to open both prompts and
    compare them by eye. Each label says what it removed and added against the label sent before it; a trace that
    named a version without its prompt (the demo's host page) is listed after the prompt, not read as the first."""
    run = unique("pc")
    feature = f"f-{run}"
    v22 = (
        "You are the support assistant. Give complete step-by-step instructions. If the customer signs in "
        "with single sign-on (SSO), explain that passwords are managed by their identity provider. Be friendly."
    )
    v23 = "You are the support assistant. Be concise: answer in at most three short sentences. Be friendly."
    traces = [
        {"trace_id": f"{run}-1", "feature": feature, "prompt_version": "v2.2", "prompt": v22,
         "started_at": "2026-11-01T10:00:00Z"},
        {"trace_id": f"{run}-2", "feature": feature, "prompt_version": "v2.3", "prompt": v23,
         "started_at": "2026-11-20T10:00:00Z"},
        {"trace_id": f"{run}-3", "feature": feature, "prompt_version": "v2.3", "model": "gpt-4o-mini"},
    ]  # fmt: skip
    with in_tenant(org_a.organization):
        for item in traces:  # one at a time: the hashless one is registered last, and is seen last
            services.traces_ingest(body=msgspec.json.encode(item))
        rollups_settled()
    client = Client()
    client.force_login(org_a.owner)
    text = html.unescape(client.get(org_a.url("prompts/"), {"feature": feature}).content.decode())
    (changes,) = text.split('data-testid="prompt-changes"')[1:]
    changes = changes.split("</details>", 1)[0]
    assert "Changed from v2.2: 2 sentences removed, 1 added" in changes
    removed = re.findall(r'data-testid="prompt-change-removed">- ([^<]*)<', changes)
    added = re.findall(r'data-testid="prompt-change-added">\+ ([^<]*)<', changes)
    assert removed == ["Give complete step-by-step instructions.",
                       "If the customer signs in with single sign-on (SSO), explain that passwords are managed by "
                       "their identity provider."]  # fmt: skip
    assert added == ["Be concise: answer in at most three short sentences."]  # the sentences both have are not said
    assert prompt_changes("One. Two.\nThree!", "One. Three! Four?") == [("-", "Two."), ("+", "Four?")]
    assert prompt_changes("Same.", "Same.") == []
    # v2.3's prompt comes before the trace that named it without one.
    rows = text.split('data-testid="prompt-version"')[1:]
    assert "Be concise" in rows[0] and "not sent" in rows[1]


def test_the_trace_count_is_capped_and_says_so(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """The explorer says how many traces match (a page of 50 could not be checked against a report row's count),
    counting no further than a cap: an unfiltered list of a large table is not counted whole."""
    run = unique("tc")
    with in_tenant(org_a.organization):
        services.traces_ingest(body=msgspec.json.encode(
            {"batch": [{"trace_id": f"{run}-{i}", "feature": f"f-{run}"} for i in range(5)]}))  # fmt: skip
        filters = TraceFilters(feature=f"f-{run}")
        assert trace_count(filters, cap=3) == (3, True)
        assert trace_count(filters, cap=5) == (5, False) and trace_count(filters) == (5, False)
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url("traces/"), {"feature": f"f-{run}"}).content.decode()
    assert 'data-testid="trace-count">5 traces match these filters' in page
