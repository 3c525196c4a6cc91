"""End-user thumbs copied onto a mapped rubric as widget labels: one label per person and trace (their
latest thumb, as the rollups count it), replaced when they change their mind, idempotent; thumbs a
backend relays through the API say so."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from django.test import Client

from evaluation.models import Label, Rubric, WidgetLabelMap
from evaluation.services.calibration_refresh import widget_labels_copy
from evaluation.services.labels import rubric_version_create
from evaluation.services.shared import utc_now
from feedback import services
from feedback.models import Feature
from tests.evaluation.helpers import make_traces
from tests.fixtures.organizations import Org, in_tenant, unique


def _mapped() -> tuple[Rubric, str, list[str]]:
    """A binary rubric mapped onto a new feature's thumbs; the feature's key and three of its traces."""
    feature = unique("thumbs")
    traces = make_traces(3, feature=feature)
    rubric, _ = rubric_version_create(name=unique("helpfulness"), scale="binary")
    WidgetLabelMap.objects.create(rubric=rubric, feature=Feature.objects.get(key=feature))
    return rubric, feature, traces


def _thumb(trace: str, value: int, at: datetime, *, source: str = "widget", **extra: Any) -> None:
    event = {"event_id": str(uuid.uuid4()), "trace_id": trace, "kind": "thumb", "value": value,
             "occurred_at": at.isoformat(), **extra}  # fmt: skip
    result = services.feedback_ingest(raw_items=[msgspec.json.encode(event)], source=source)
    assert not result.errors, result.errors


def _labels(rubric: Rubric) -> list[tuple[str, str, float | None, str]]:
    return sorted(
        Label.objects.filter(rubric=rubric, source="widget").values_list("trace_id", "reviewer", "value", "comment")
    )


def test_a_thumb_then_its_reason_chip_is_one_label(db: None, org_a: Org) -> None:
    # The widget sends the reason chip as a second thumb carrying the reason: one vote, one label.
    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        _thumb(traces[0], -1, now - timedelta(seconds=3), user_id="ann", session_id="s1")
        _thumb(traces[0], -1, now - timedelta(seconds=2), user_id="ann", session_id="s1", comment="Too long")
        widget_labels_copy(now=now)
        assert _labels(rubric) == [(traces[0], "ann", 0.0, "Too long")]


def test_a_changed_mind_replaces_the_label_across_sweeps(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        _thumb(traces[0], -1, now - timedelta(seconds=30), session_id="anon-1")  # no user: the session is the person
        widget_labels_copy(now=now)
        (first,) = Label.objects.filter(rubric=rubric, source="widget")
        assert first.value == 0.0
        _thumb(traces[0], 1, now - timedelta(seconds=20), session_id="anon-1")
        # Sent late from the browser's retry queue: older than the up, so it does not count.
        _thumb(traces[0], -1, now - timedelta(seconds=25), session_id="anon-1")
        widget_labels_copy(now=now + timedelta(seconds=15))
        (label,) = Label.objects.filter(rubric=rubric, source="widget")
        assert label.id == first.id and label.value == 1.0  # replaced, not added
        assert label.occurred_at == now - timedelta(seconds=20)


def test_down_then_up_in_one_batch_is_one_good_label(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        _thumb(traces[1], -1, now - timedelta(seconds=5), user_id="bob")
        _thumb(traces[1], 1, now - timedelta(seconds=4), user_id="bob")
        widget_labels_copy(now=now)
        assert _labels(rubric) == [(traces[1], "bob", 1.0, "")]


def test_each_person_keeps_their_own_label(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        for user, value in (("ann", -1), ("bob", 1)):
            _thumb(traces[2], -value, now - timedelta(seconds=9), user_id=user)
            _thumb(traces[2], value, now - timedelta(seconds=8), user_id=user)
        # Same session, another user (a shared device): a person by user_id first.
        _thumb(traces[2], -1, now - timedelta(seconds=7), user_id="cy", session_id="shared")
        _thumb(traces[2], 1, now - timedelta(seconds=6), user_id="dee", session_id="shared")
        # No user, no session: each event is its own person.
        _thumb(traces[2], -1, now - timedelta(seconds=5))
        _thumb(traces[2], -1, now - timedelta(seconds=4))
        widget_labels_copy(now=now)
        assert _labels(rubric) == sorted([
            (traces[2], "ann", 0.0, ""), (traces[2], "bob", 1.0, ""), (traces[2], "cy", 0.0, ""),
            (traces[2], "dee", 1.0, ""), (traces[2], "", 0.0, ""), (traces[2], "", 0.0, ""),
        ])  # fmt: skip


def test_a_rerun_changes_nothing_also_for_feedback_before_its_trace(db: None, org_a: Org) -> None:
    with in_tenant(org_a):
        rubric, feature, traces = _mapped()
        now = utc_now()
        early = unique("early")  # thumbs before their trace: copied by the late join once it lands
        _thumb(f"{early}-0", 1, now - timedelta(seconds=9), user_id="ann")
        _thumb(f"{early}-0", -1, now - timedelta(seconds=8), user_id="ann", comment="Wrong")
        _thumb(traces[0], 1, now - timedelta(seconds=7), user_id="ann")
        _thumb(traces[0], -1, now - timedelta(seconds=6), user_id="ann")
        assert widget_labels_copy(now=now) == 1
        make_traces(1, feature=feature, prefix=early, started_at=now.isoformat())
        assert widget_labels_copy(now=now) == 1
        assert _labels(rubric) == sorted([(traces[0], "ann", 0.0, ""), (f"{early}-0", "ann", 0.0, "Wrong")])
        _thumb(f"{early}-0", 1, now - timedelta(seconds=4), user_id="ann", comment="Fine after all")
        assert widget_labels_copy(now=now) == 1
        assert _labels(rubric) == sorted([(traces[0], "ann", 0.0, ""), (f"{early}-0", "ann", 1.0, "Fine after all")])
        rows = list(Label.objects.filter(rubric=rubric).order_by("id").values())
        # Again, twice (the late join rereads the last hour each sweep): nothing written, nothing moved.
        assert widget_labels_copy(now=now) == 0
        assert widget_labels_copy(now=now + timedelta(seconds=15)) == 0
        assert list(Label.objects.filter(rubric=rubric).order_by("id").values()) == rows


def test_labels_copied_one_per_event_before_are_folded_into_the_persons_label(db: None, org_a: Org) -> None:
    # Labels the copy wrote per event ('widget:<event>:<rubric>') go once their person is copied again.
    from feedback.models import FeedbackEvent

    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        _thumb(traces[0], -1, now - timedelta(seconds=3), user_id="ann")
        event = FeedbackEvent.objects.get(trace_id=traces[0])
        Label.objects.create(label_id=f"widget:{event.event_id}:{rubric.id}", trace_id=traces[0], rubric=rubric,
                             value=0, reviewer="ann", source="widget", sampling_design="widget")  # fmt: skip
        _thumb(traces[0], 1, now - timedelta(seconds=2), user_id="ann")
        widget_labels_copy(now=now)
        assert _labels(rubric) == [(traces[0], "ann", 1.0, "")]


def test_a_thumb_relayed_through_the_api_says_it_came_by_the_api(db: None, org_a: Org) -> None:
    # An end user's thumb that their app's backend relays is still the end user's: a label kept out of
    # calibration like the widget's, whose sampling design names the door it came by.
    with in_tenant(org_a):
        rubric, _, traces = _mapped()
        now = utc_now()
        _thumb(traces[0], -1, now - timedelta(seconds=3), user_id="ann", source="api")
        _thumb(traces[1], 1, now - timedelta(seconds=3), user_id="ann", source="widget")
        widget_labels_copy(now=now)
        copied = Label.objects.filter(rubric=rubric)
        assert set(copied.values_list("source", flat=True)) == {"widget"}  # never counted by calibration
        assert dict(copied.values_list("trace_id", "sampling_design")) == {traces[0]: "api", traces[1]: "widget"}
    # The trace page says that neither is a calibration sample (each event says which door it came by).
    client = Client()
    client.force_login(org_a.owner)
    relayed, widget = (client.get(org_a.url(f"traces/{trace}")).content.decode() for trace in traces[:2])
    for page, door in ((relayed, "api"), (widget, "widget")):
        assert "the end user's own feedback" in page and "kept out of calibration" in page
        assert f"via {door}</small>" in page and "via widget · widget" not in page
    # The API names a design API.md knows: nobody selected them ('manual'), whichever door they came by.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {org_a.secret_key}")
    for trace in traces[:2]:
        labels = api.get(f"/api/v1/traces/{trace}").json()["labels"]
        assert [(label["source"], label["sampling"]) for label in labels] == [
            ("widget", {"design": "manual", "stratum": "", "inclusion_probability": None})]  # fmt: skip
