"""GenAI log messages are a join buffer with a retention: the daily sweep deletes those past it, in every
organization and only there, while the traces keep the text they took from them."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from feedback import services
from feedback.models import GenAiMessage
from feedback.services.shared import utc_now
from feedback.tasks import genai_messages_prune_sweep
from tests.feedback.api.test_otlp_logs_api import call_logs, genai_trace, llm_spans, post_logs, post_spans, stored
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.fixtures.server import LiveServer, wait_for


def otel_id(spans: list) -> str:  # type: ignore[type-arg]
    return format(spans[0].context.trace_id, "032x")


def age(org: Org, spans: list, days: float) -> int:  # type: ignore[type-arg]
    """Make this trace's stored messages look received ``days`` ago; how many there are."""
    with in_tenant(org):
        return GenAiMessage.objects.filter(otel_trace_id=otel_id(spans)).update(
            received_at=utc_now() - timedelta(days=days)
        )


def kept(org: Org, spans: list) -> int:  # type: ignore[type-arg]
    with in_tenant(org):
        return GenAiMessage.objects.filter(otel_trace_id=otel_id(spans)).count()


def test_the_sweep_deletes_messages_past_retention_and_traces_keep_their_text(
    live: LiveServer, org_a: Org, org_b: Org, committed_db: None, celery_worker: None
) -> None:
    retention = settings.GENAI_MESSAGE_RETENTION_DAYS
    joined_id, waiting_id, fresh_id, other_id = (unique("keep") for _ in range(4))
    joined, waiting, fresh, other = (genai_trace(trace_id) for trace_id in (joined_id, waiting_id, fresh_id, other_id))
    for spans, key in ((joined, org_a.secret_key), (waiting, org_a.secret_key), (fresh, org_a.secret_key),
                       (other, org_b.secret_key)):  # fmt: skip
        post_logs(live, key, call_logs(llm_spans(spans)[0], "Can I change my plan?", "Yes, under Billing."))
    post_spans(live, org_a.secret_key, joined)
    assert stored(live, org_a, joined_id)["input"] == "Can I change my plan?"
    # Just past the retention in org A (joined and still waiting) and in org B; just inside it for `fresh`.
    assert (age(org_a, joined, retention + 0.01), age(org_a, waiting, retention + 0.01)) == (3, 3)
    assert (age(org_a, fresh, retention - 0.01), age(org_b, other, retention + 0.01)) == (3, 3)

    assert genai_messages_prune_sweep() >= 2  # a prune for each organization, run by the real worker
    wait_for(lambda: (kept(org_a, joined), kept(org_a, waiting), kept(org_b, other)) == (0, 0, 0))
    assert kept(org_a, fresh) == 3
    body = stored(live, org_a, joined_id)
    assert (body["input"], body["output"]) == ("Can I change my plan?", "Yes, under Billing.")
    # Spans later than the retention find nothing waiting: the trace lands complete but for the log text.
    post_spans(live, org_a.secret_key, waiting)
    late = stored(live, org_a, waiting_id)
    assert (late["input"], late["output"], late["model"], late["input_tokens"]) == ("", "", "gpt-4o-mini", 100)
    # Within the retention the join still happens.
    post_spans(live, org_a.secret_key, fresh)
    assert stored(live, org_a, fresh_id)["output"] == "Yes, under Billing."


def test_pruning_one_organization_leaves_the_others_alone_and_deletes_in_batches(
    live: LiveServer, org_a: Org, org_b: Org, committed_db: None
) -> None:
    mine, theirs = genai_trace(unique("prune")), genai_trace(unique("prune"))
    for spans, org in ((mine, org_a), (theirs, org_b)):
        for question in ("One?", "Two?"):  # two calls' worth: six messages
            post_logs(live, org.secret_key, call_logs(llm_spans(spans)[0], question, f"Answer to {question}"))
    # Older than anything another test ages, so the cut below takes exactly these rows.
    assert (age(org_a, mine, 400), age(org_b, theirs, 400)) == (5, 5)  # one system message, stored once

    with in_tenant(org_a):
        deleted = services.genai_messages_prune(before=utc_now() - timedelta(days=399), batch=2)
    assert deleted == 5
    assert (kept(org_a, mine), kept(org_b, theirs)) == (0, 5)
