"""The trace page's edit: the diff it draws and the share of the original it says was kept
come from one alignment, so the number is the text left standing in the picture."""

from __future__ import annotations

import importlib
import re
import uuid
from html.parser import HTMLParser

import msgspec
import pytest
from django.apps import apps as django_apps
from django.test import Client

from feedback import edits, services
from feedback.models import FeedbackEvent
from feedback.portal import views
from tenants.schema import in_tenant
from tests.feedback.test_edits import ANSWER, REFUSAL
from tests.fixtures.organizations import unique


class _Diff(HTMLParser):
    """The edit diffs of a trace page: per ``div.diff``, its text as equal, deleted and inserted runs."""

    def __init__(self) -> None:
        super().__init__()
        self.diffs: list[list[tuple[str, str]]] = []
        self.kept_said: list[int] = []
        self._depth = 0  # inside a div.diff: nesting of divs
        self._op = "equal"
        self._small = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div" and self._depth:
            self._depth += 1
        elif tag == "div" and ("class", "diff") in attrs:
            self._depth = 1
            self.diffs.append([])
        elif self._depth and tag in ("del", "ins"):
            self._op = "delete" if tag == "del" else "insert"
        if tag == "small":
            self._small = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._depth:
            self._depth -= 1
        elif tag in ("del", "ins"):
            self._op = "equal"
        elif tag == "small":
            self._small = False

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.diffs[-1].append((self._op, data))
        elif self._small and (said := re.search(r"(\d+)% of the original kept", data)):
            self.kept_said.append(int(said.group(1)))


def _store_edit(original: str, edited: str) -> str:
    """A trace and one edit of its output, stored through ingestion (in the current tenant); its trace_id."""
    trace_id = unique("edit")
    edit = {"event_id": str(uuid.uuid4()), "trace_id": trace_id, "kind": "edit",
            "original_text": original, "edited_text": edited}  # fmt: skip
    services.traces_ingest(body=msgspec.json.encode({"batch": [{"trace_id": trace_id, "feature": "f"}]}))
    services.feedback_ingest(body=msgspec.json.encode(edit))
    return trace_id


@pytest.mark.parametrize(
    ("original", "edited"),
    [
        pytest.param(REFUSAL, ANSWER, id="refusal-rewritten"),
        pytest.param("Use your Okta dashboard.", "Open the Okta dashboard.", id="words-replaced"),
        pytest.param(
            "The colour is red. Reload & retry <now>.",
            "The color is red. Reload & retry <later>, then wait.",
            id="escaped-markup",
        ),
    ],
)
def test_the_kept_share_is_what_the_page_leaves_standing(db: None, org_a, original: str, edited: str) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a.organization):
        trace_id = _store_edit(original, edited)
        stored = FeedbackEvent.objects.get(trace_id=trace_id).kept_ratio
    client = Client()
    client.force_login(org_a.owner)
    page = client.get(org_a.url(f"traces/{trace_id}"))
    assert page.status_code == 200
    parsed = _Diff()
    parsed.feed(page.content.decode())
    [drawn] = parsed.diffs
    assert "".join(t for op, t in drawn if op != "insert") == original  # the picture is of these two texts
    assert "".join(t for op, t in drawn if op != "delete") == edited
    standing = sum(len(t) for op, t in drawn if op == "equal")
    assert stored == pytest.approx(standing / len(original))
    assert parsed.kept_said == [round(standing / len(original) * 100)]


def test_the_pages_draw_the_alignment_the_measure_counts() -> None:
    """The trace page and the labelling queue draw edits.diff_segments itself, no copy of it: the number
    and the picture come from one alignment (a copy in the portal once drifted from the measure)."""
    from evaluation.portal import queues

    assert views.diff_segments is edits.diff_segments and queues.diff_segments is edits.diff_segments


def test_the_migration_recomputes_stored_edits_kept_share(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    """Edits stored under the old measure (longest shared run of characters) read as new ones after
    feedback.0012; a rerun changes nothing."""
    migration = importlib.import_module("feedback.migrations.0012_edit_kept_ratio_word_diff")
    with in_tenant(org_a.organization):
        trace_id = _store_edit(REFUSAL, ANSWER)
        FeedbackEvent.objects.filter(trace_id=trace_id).update(kept_ratio=0.64)  # what the old measure stored
        migration.recompute(django_apps, None)
        kept = FeedbackEvent.objects.get(trace_id=trace_id).kept_ratio
        migration.recompute(django_apps, None)
        assert FeedbackEvent.objects.get(trace_id=trace_id).kept_ratio == kept
    assert kept is not None and kept == pytest.approx(edits.edit_measures(REFUSAL, ANSWER).kept_ratio) and kept < 0.3
