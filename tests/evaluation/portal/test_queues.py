"""The queue pages as a PM and reviewers use them: create a queue from the form, watch progress,
add a trace by hand, label and skip through the htmx endpoints; roles; bad input a clear error
with nothing stored; other organizations' queues are 404 on every page."""

from __future__ import annotations

import html
import re
import uuid

from django.test import Client

from evaluation.models import AnnotationQueue, CalibrationTarget, Label, QueueSlot, Rubric, Score
from evaluation.services.labels import rubric_version_create
from evaluation.services.queues import queue_create, queue_item_add, reserve_next, slot_label, slot_skip
from tenants.access import Role
from tenants.models import User
from tenants.services import member_ensure
from tests.evaluation.helpers import feedback_post, make_traces, offline_judge
from tests.fixtures.organizations import Org, in_tenant, unique
from tests.helpers import assert_cross_tenant_404


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _member(org: Org, role: str) -> tuple[Client, str]:
    email = f"{unique(role)}@a.test"
    membership = member_ensure(organization=org.organization, email=email, password="x" * 12, role=role)
    return _client(membership.user), email


def _manual_queue(n: int, scale: str = "binary", **kwargs: object) -> tuple[AnnotationQueue, list[str]]:
    ids = make_traces(n)
    rubric, _ = rubric_version_create(name=unique("rubric"), scale=scale, description="Is the answer correct?")
    queue = queue_create(name=unique("queue"), rubric=rubric, design="manual", budget=n, **kwargs)  # type: ignore[arg-type]
    for trace_id in ids:
        queue_item_add(queue=queue, trace_id=trace_id)
    return queue, ids


def test_a_pm_creates_a_uniform_queue_and_sees_its_sample(db: None, org_a: Org) -> None:
    client = _client(org_a.owner)
    with in_tenant(org_a):
        feature = unique("feat")
        ids = make_traces(80, feature=feature)
        judge = offline_judge()
        assert judge.current_version is not None
        Score.objects.bulk_create(
            Score(score_id=unique("sc"), trace_id=t, judge=judge, judge_version=judge.current_version, status="ok",
                  raw_score=i % 2, score=i % 2, passed=bool(i % 2))
            for i, t in enumerate(ids)
        )  # fmt: skip
        rubric, _ = rubric_version_create(name=unique("correct"), scale="binary")
    page = client.get(org_a.url("queues/new/"))
    assert page.status_code == 200 and rubric.name.encode() in page.content
    name = unique("audit")
    form = {"name": name, "design": "uniform", "rubric": str(rubric.id), "feature": feature, "judge": judge.name,
            "since": "2025-03-01", "until": "2025-04-30", "budget": "20", "reviewers_per_item": "2",
            "reservation_minutes": "10"}  # fmt: skip
    created = client.post(org_a.url("queues/new/"), form)
    assert created.status_code == 302, created.context["form"].errors if created.context else created
    with in_tenant(org_a):
        queue = AnnotationQueue.objects.get(name=name)
        assert (queue.population, queue.items.count(), queue.slots.count()) == (80, 20, 40)
        assert set(queue.items.values_list("inclusion_probability", flat=True)) == {0.25}
    detail = client.get(created["Location"])
    assert (
        b"0.2500" in detail.content
        and b"Start labeling" in detail.content
        and b"20 traces sampled of 80" in detail.content
    )
    assert b"how far the judge agrees" not in detail.content  # no calibration of these labels yet
    with in_tenant(org_a):
        target = CalibrationTarget.objects.create(
            judge_version=judge.current_version, rubric=rubric, feature=queue.feature
        )
    assert f"calibration/?target={target.id}".encode() in client.get(created["Location"]).content
    listing = client.get(org_a.url("queues/"))
    assert name.encode() in listing.content and b"Labels: 0 of 40 (2 reviewers an item)" in listing.content
    # Stratified with no judge, a rubric that does not exist, a zero budget: form errors, nothing stored.
    for bad, message in [
        ({"design": "stratified", "judge": ""}, b"samples by a judge"),
        ({"rubric": "999999999"}, b"Select a valid choice"),
        ({"budget": "0"}, b"greater than or equal to 1"),
        ({"since": "2025-05-01", "until": "2025-04-01"}, b"first day comes before"),
    ]:
        answer = client.post(org_a.url("queues/new/"), {**form, "name": unique("bad"), **bad})
        assert answer.status_code == 200 and message in answer.content, bad
    with in_tenant(org_a):
        assert AnnotationQueue.objects.filter(name__startswith="bad").count() == 0


def test_a_new_free_text_rubric_from_the_form(db: None, org_a: Org) -> None:
    client = _client(org_a.owner)
    name, rubric = unique("notes"), unique("why")
    form = {"name": name, "design": "manual", "rubric": "__new__", "new_rubric_name": rubric,
            "new_rubric_scale": "free_text", "new_rubric_description": "What is wrong with the answer?",
            "budget": "5", "reviewers_per_item": "1", "reservation_minutes": "10"}  # fmt: skip
    assert client.post(org_a.url("queues/new/"), form).status_code == 302
    with in_tenant(org_a):
        queue = AnnotationQueue.objects.select_related("rubric").get(name=name)
        assert (queue.rubric.name, queue.rubric.scale, queue.rubric.version) == (rubric, "free_text", 1)
        (trace_id,) = make_traces(1)
    added = client.post(org_a.url(f"queues/{queue.id}/add/"), {"trace_id": trace_id})
    assert added.status_code == 302
    page = client.get(org_a.url(f"queues/{queue.id}/label/"))
    assert b"data-free-text" in page.content and b"What is wrong with the answer?" in page.content
    slot_id = int(re.findall(rb'data-slot="(\d+)"', page.content)[0])
    saved = client.post(org_a.url(f"queues/{queue.id}/items/{slot_id}/label/"), {"text": "Wrong refund window."},
                        HTTP_HX_REQUEST="true")  # fmt: skip
    assert saved.status_code == 200
    with in_tenant(org_a):
        assert Label.objects.get(rubric=queue.rubric).text == "Wrong refund window."


def test_manual_add_errors_are_shown_and_store_nothing(db: None, org_a: Org) -> None:
    client = _client(org_a.owner)
    with in_tenant(org_a):
        queue, ids = _manual_queue(1)
    for trace_id, message in [("never-sent", b"no trace"), (ids[0], b"in this queue already")]:
        answer = client.post(org_a.url(f"queues/{queue.id}/add/"), {"trace_id": trace_id})
        assert answer.status_code == 400 and message in answer.content
    with in_tenant(org_a):
        assert queue.items.count() == 1


def test_labeling_through_the_page_endpoints(db: None, org_a: Org) -> None:
    reviewer, email = _member(org_a, Role.REVIEWER)
    with in_tenant(org_a):
        queue, ids = _manual_queue(4)
        feedback_post([{"event_id": str(uuid.uuid4()), "trace_id": t, "kind": "thumb", "value": -1,
                        "comment": "wrong plan"} for t in ids]
                      + [{"event_id": str(uuid.uuid4()), "trace_id": t, "kind": "edit",
                          "original_text": "Open Settings, choose Security.",
                          "edited_text": "Open Admin console, choose Security."} for t in ids])  # fmt: skip
    page = reviewer.get(org_a.url(f"queues/{queue.id}/label/"))
    assert page.status_code == 200
    slots = [int(s) for s in re.findall(rb'data-slot="(\d+)"', page.content)]
    assert len(slots) == 2  # the current item and the next, preloaded
    html = page.content.decode()
    assert "Open Settings, choose Security" in html and "How do I reset my password" in html
    assert 'class="lab-block lab-feedback"' in html and "wrong plan" in html  # there, hidden until h
    assert "<del>Settings</del><ins>Admin console</ins>" in html.replace("\n", "")  # the user's edit, as a diff
    assert 'data-key="1"' in html and 'data-key="0"' in html
    label_url = org_a.url(f"queues/{queue.id}/items/{slots[0]}/label/")
    # Off the scale: a clear 400, nothing stored, the slot still open.
    off = reviewer.post(label_url, {"value": "3", "held": str(slots[1]), "more": "1"}, HTTP_HX_REQUEST="true")
    assert off.status_code == 400 and b"binary scale" in off.content
    bad = reviewer.post(label_url, {"value": "good"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and b"not a number" in bad.content
    saved = reviewer.post(label_url, {"value": "1", "comment": "ok", "held": str(slots[1]), "more": "1"},
                          HTTP_HX_REQUEST="true")  # fmt: skip
    assert saved.status_code == 200
    nxt = [int(s) for s in re.findall(rb'data-slot="(\d+)"', saved.content)]
    assert len(nxt) == 1 and nxt[0] not in slots  # the item after the preloaded one
    with in_tenant(org_a):
        label = Label.objects.get(rubric=queue.rubric)
        assert (label.value, label.reviewer, label.source, label.sampling_design, label.comment) == (
            1.0,
            email,
            "queue",
            "manual",
            "ok",
        )
    # Another reviewer cannot answer this reviewer's slots.
    other, _ = _member(org_a, Role.REVIEWER)
    stolen = other.post(org_a.url(f"queues/{queue.id}/items/{slots[1]}/label/"), {"value": "0"}, HTTP_HX_REQUEST="true")
    assert stolen.status_code == 409 and b"reserved by another reviewer" in stolen.content
    skip_url = org_a.url(f"queues/{queue.id}/items/{slots[1]}/skip/")
    assert reviewer.post(skip_url, {"reason": " "}, HTTP_HX_REQUEST="true").status_code == 400
    assert reviewer.post(skip_url, {"reason": "Not my area", "more": "0"}, HTTP_HX_REQUEST="true").status_code == 200
    detail = reviewer.get(org_a.url(f"queues/{queue.id}/"))
    assert b"Not my area" in detail.content and email.encode() in detail.content
    # Skips of a sample leave it unlabelled where people could not judge: the page says what that does to its
    # estimates (all five demo skips were SSO traces); traces added by hand are a sample of nothing.
    assert b'data-testid="skips-bias"' not in detail.content
    with in_tenant(org_a):
        AnnotationQueue.objects.filter(id=queue.id).update(design="uniform")
    sampled = reviewer.get(org_a.url(f"queues/{queue.id}/")).content.decode()
    assert 'data-testid="skips-bias"' in sampled and "as if the skipped were like them" in sampled
    with in_tenant(org_a):
        AnnotationQueue.objects.filter(id=queue.id).update(design="manual")
    progress = reviewer.get(org_a.url(f"queues/{queue.id}/progress/"), HTTP_HX_REQUEST="true")
    assert b"labels: 1 of 4 (1 reviewer an item)" in progress.content and b"yours: 1" in progress.content
    # Back on the page: the answered items come first (k reaches them), then what is left.
    again = reviewer.get(org_a.url(f"queues/{queue.id}/label/"))
    assert b"your label: Good" in again.content and b"skipped: Not my area" in again.content
    with in_tenant(org_a):
        assert Label.objects.filter(rubric=queue.rubric).count() == 1
        assert QueueSlot.objects.filter(queue=queue, status="skipped").count() == 1


def test_a_rubric_changed_mid_queue_is_said_on_the_pages(db: None, org_a: Org) -> None:
    client = _client(org_a.owner)
    with in_tenant(org_a):
        queue, _ = _manual_queue(1)
        rubric_version_create(name=queue.rubric.name, scale="ordinal", description="Rate 1-5")
    for path in (f"queues/{queue.id}/", f"queues/{queue.id}/label/"):
        page = client.get(org_a.url(path))
        assert b"newer version" in page.content and b"v2" in page.content, path
    assert b'data-key="0"' in client.get(org_a.url(f"queues/{queue.id}/label/")).content  # still binary (v1)


def test_roles_viewers_look_reviewers_label_pms_create(db: None, org_a: Org) -> None:
    viewer, _ = _member(org_a, Role.VIEWER)
    reviewer, _ = _member(org_a, Role.REVIEWER)
    with in_tenant(org_a):
        queue, _ = _manual_queue(2)
        slot = reserve_next(queue=queue, reviewer="pm@a.test")
        assert slot is not None
    assert viewer.get(org_a.url("queues/")).status_code == 200
    assert viewer.get(org_a.url(f"queues/{queue.id}/")).status_code == 200
    for path, method in [(f"queues/{queue.id}/label/", "get"), (f"queues/{queue.id}/next/", "get"),
                         (f"queues/{queue.id}/items/{slot.id}/label/", "post"),
                         (f"queues/{queue.id}/items/{slot.id}/skip/", "post"), ("queues/new/", "get"),
                         (f"queues/{queue.id}/add/", "post")]:  # fmt: skip
        assert getattr(viewer, method)(org_a.url(path), {"value": "1"}).status_code == 403, path
    assert reviewer.get(org_a.url(f"queues/{queue.id}/label/")).status_code == 200
    assert reviewer.get(org_a.url("queues/new/")).status_code == 403
    assert reviewer.post(org_a.url(f"queues/{queue.id}/add/"), {"trace_id": "x"}).status_code == 403
    with in_tenant(org_a):
        assert not Label.objects.filter(rubric=queue.rubric).exists()


def test_another_organization_s_queues_are_404(db: None, org_a: Org, org_b: Org) -> None:
    with in_tenant(org_a):
        queue, _ = _manual_queue(1)
        slot = reserve_next(queue=queue, reviewer=org_a.owner.email)
        assert slot is not None
    with in_tenant(org_b):
        # The other organization has no queue or slot with these ids, so a 404 here means "not found
        # in this organization", never "another organization's".
        assert not AnnotationQueue.objects.filter(id=queue.id).exists()
        assert not QueueSlot.objects.filter(id=slot.id).exists()
        assert Rubric.objects.filter(name=queue.rubric.name).count() == 0
    other = _client(org_b.owner)
    for suffix, method in [
        (f"queues/{queue.id}/", "get"), (f"queues/{queue.id}/add/", "post"), (f"queues/{queue.id}/label/", "get"),
        (f"queues/{queue.id}/next/", "get"), (f"queues/{queue.id}/progress/", "get"),
        (f"queues/{queue.id}/items/{slot.id}/label/", "post"), (f"queues/{queue.id}/items/{slot.id}/skip/", "post"),
    ]:  # fmt: skip
        assert_cross_tenant_404(other, org_b.url(suffix), method, leak=queue.name if method == "get" else "")
        assert_cross_tenant_404(other, org_a.url(suffix), method)  # not a member of A
    assert_cross_tenant_404(other, org_a.url("queues/"))
    assert queue.name.encode() not in other.get(org_b.url("queues/")).content
    with in_tenant(org_a):
        slot.refresh_from_db()
        assert (slot.status, slot.reserved_by) == ("open", org_a.owner.email)


def test_a_reviewer_sees_who_the_answer_was_for(db: None, org_a: Org) -> None:
    """The demo's reviewers skipped SSO traces: "cannot tell without the customer's SSO settings". The
    trace's customer and metadata are shown beside it (long values and Candor's own keys are not)."""
    reviewer, _ = _member(org_a, Role.REVIEWER)
    metadata = {"auth": "sso", "plan": "enterprise", "otel_trace_id": "ab" * 16, "notes": "x" * 200}
    with in_tenant(org_a):
        ids = make_traces(1, customer_id="cus_initech", metadata=metadata)
        rubric, _ = rubric_version_create(name=unique("rubric"), scale="binary", description="Correct?")
        queue = queue_create(name=unique("queue"), rubric=rubric, design="manual", budget=1)
        queue_item_add(queue=queue, trace_id=ids[0])
    html = reviewer.get(org_a.url(f"queues/{queue.id}/label/")).content.decode()
    about = html.split('data-testid="lab-about">')[1].split("</div>")[0]
    assert re.findall(r'title="[^"]+">([^<]+)</span>', about) == ["customer=cus_initech", "auth=sso", "plan=enterprise"]


def test_a_new_categorical_rubric_needs_two_distinct_named_categories(db: None, org_a: Org) -> None:
    """A categorical rubric with the single category "a" was accepted: its reviewers had nothing to choose."""
    client = _client(org_a.owner)
    form = {"name": unique("sort"), "design": "manual", "rubric": "__new__", "new_rubric_scale": "categorical",
            "budget": "5", "reviewers_per_item": "1", "reservation_minutes": "10"}  # fmt: skip
    for typed, said in [
        ("a", "needs at least 2 categories to choose between, not 1"),
        ("a, A", "'A' is listed twice"),
        ("a, , b", "one of the categories is blank"),
        ("a, b,", "one of the categories is blank"),
    ]:
        rubric = unique("topic")
        sent = form | {"new_rubric_name": rubric, "new_rubric_categories": typed}
        answer = client.post(org_a.url("queues/new/"), sent)
        assert answer.status_code == 200 and answer.context is not None, typed
        assert [said in e for e in answer.context["form"].errors.get("new_rubric_categories", [])] == [True], typed
        assert said in html.unescape(answer.content.decode()), typed
        with in_tenant(org_a):
            assert (
                not Rubric.objects.filter(name=rubric).exists()
                and not AnnotationQueue.objects.filter(name=form["name"]).exists()
            )
    rubric = unique("topic")
    made = client.post(org_a.url("queues/new/"), form | {"new_rubric_name": rubric, "new_rubric_categories": "a, b"})
    assert made.status_code == 302
    with in_tenant(org_a):
        assert Rubric.objects.get(name=rubric).categories == ["a", "b"]


def test_a_day_out_of_range_is_said_under_its_own_field_and_a_bad_one_only_once(db: None, org_a: Org) -> None:
    """Beside "Enter a valid date." the form said "The window covers days from 1970 up to today.", naming no field."""
    client = _client(org_a.owner)
    form = {"name": unique("days"), "design": "manual", "rubric": "__new__", "new_rubric_name": unique("r"),
            "new_rubric_scale": "binary", "budget": "5", "reviewers_per_item": "1",
            "reservation_minutes": "10"}  # fmt: skip
    answer = client.post(org_a.url("queues/new/"), form | {"since": "garbage", "until": "1969-06-01"})
    assert answer.status_code == 200 and answer.context is not None
    errors = answer.context["form"].errors
    assert errors.get("since") == ["Enter a valid date."] and "__all__" not in errors
    assert errors.get("until") == ["A day from 1970 up to today, not 1969-06-01."]
    only_since = client.post(org_a.url("queues/new/"), form | {"since": "garbage"})
    assert only_since.context is not None and dict(only_since.context["form"].errors) == {
        "since": ["Enter a valid date."]
    }
    assert b"1970" not in only_since.content


def test_queue_progress_says_what_it_counts_items_or_labels(db: None, org_a: Org) -> None:
    """Two reviewers an item: three items want six labels. One reviewer labels all three, the other one item
    (and skips one): one item is fully labelled, four labels of six are in. The list, the queue page and the
    labeling page say which is which, not "4 of 6 labelled" beside "3 / 3"."""
    with in_tenant(org_a):
        queue, _ = _manual_queue(3, reviewers_per_item=2)
        for _ in range(3):
            slot = reserve_next(queue=queue, reviewer="first@a.test")
            assert slot is not None
            slot_label(slot=slot, reviewer="first@a.test", value=1)
        slot = reserve_next(queue=queue, reviewer="second@a.test")
        assert slot is not None
        slot_label(slot=slot, reviewer="second@a.test", value=0)
        slot = reserve_next(queue=queue, reviewer="second@a.test")
        assert slot is not None
        slot_skip(slot=slot, reviewer="second@a.test", reason="Not my area")
    client = _client(org_a.owner)

    def text(url: str, start: str, end: str) -> str:
        """The page's words from ``start`` to ``end``, without tags."""
        page = html.unescape(client.get(org_a.url(url)).content.decode())
        said = page.split(start, 1)[1].split(end, 1)[0]
        return " ".join(re.sub(r"<[^>]+>", " ", said).split())

    row = text("queues/", f"/queues/{queue.id}/", "</tr>")
    assert "3 of a budget of 3" in row
    assert "Items: 1 of 3 fully labelled Labels: 4 of 6 (2 reviewers an item) · 1 skipped · 1 still to give" in row
    detail = text(f"queues/{queue.id}/", '<div class="row">', "</div>\n</div>")
    assert "Items fully labelled 1 of 3 items (every reviewer's label in)" in detail
    assert "Labels given 4 of 6 wanted (2 reviewers an item)" in detail
    label_page = text(f"queues/{queue.id}/label/", 'id="lab-progress"', "</small>")
    assert label_page.endswith("Items: 1 of 3 fully labelled · labels: 4 of 6 (2 reviewers an item)")
