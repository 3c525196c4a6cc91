"""Faults with real processes: a worker killed mid rollup refresh, PostgreSQL restarted under traffic, a 10x
burst over the per-key rate, and stopping the demo. Afterwards every accepted item is stored exactly once
and the rollups equal a recomputation from the raw rows.

Each test runs on processes of its own (tests/fixtures/own_stack.py: its own PostgreSQL, web, worker
and beat), never on the session's shared ones. `pytest -m faults` selects them; CANDOR_FAULT_BURST_SECONDS
sets the burst's length (the issue's 60 s; 8 s by default so the suite stays short).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
import requests

from tests.fixtures.own_stack import ROOT, Stack, days, free_port, stack_create, stop_process, wait_until

pytestmark = pytest.mark.faults

BURST_SECONDS = float(os.environ.get("CANDOR_FAULT_BURST_SECONDS", "8"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    created = stack_create()
    try:
        yield created
    finally:
        created.stop_all()
        created.postgres.remove()
        shutil.rmtree(created.logs, ignore_errors=True)


@pytest.fixture
def processes(stack: Stack) -> Iterator[Stack]:
    """The stack, with every process a test starts stopped after it (the database stays)."""
    yield stack
    stack.stop_all()


def batch(prefix: str, n: int, day_list: list[Any] | None = None, feature: str = "faults") -> dict[str, Any]:
    """n traces (one feedback event each, sent in the same batch of the feedback API)."""
    items = []
    for i in range(n):
        day = day_list[i % len(day_list)] if day_list else None
        item = {"trace_id": f"{prefix}-{i}", "feature": feature, "model": "gpt-4o-mini", "input_tokens": 100 + i,
                "output_tokens": 10, "customer_id": f"cus_{i % 3}", "latency_ms": 100 + i}  # fmt: skip
        if day is not None:
            item["started_at"] = f"{day.isoformat()}T12:00:00Z"
        items.append(item)
    return {"batch": items}


def feedback_for(body: dict[str, Any]) -> dict[str, Any]:
    # Event ids derived from the trace id: a resend is the same event.
    events = []
    for t in body["batch"]:
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, t["trace_id"]))
        events.append({"event_id": event_id, "trace_id": t["trace_id"], "kind": "thumb",
                       "value": 1 if len(t["trace_id"]) % 2 else -1})  # fmt: skip
    return {"batch": events}


def send_until_accepted(session: requests.Session, url: str, body: dict[str, Any], seen: Counter[int]) -> None:
    """A client with retries: resend the same body until it is answered 200 (a lost answer means resend)."""
    for _ in range(600):
        try:
            response = session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"},
                                    timeout=30)  # fmt: skip
        except requests.RequestException:
            seen[0] += 1
            time.sleep(0.2)
            continue
        seen[response.status_code] += 1
        if response.status_code == 200:
            return
        # Past the key's rate, or the database restarting: told when to come back, never a 500.
        assert response.status_code in (429, 503) and response.headers.get("Retry-After"), response.text
        time.sleep(float(response.headers.get("Retry-After") or 0.2))
    raise AssertionError(f"never accepted: {seen}")


def nudge(stack: Stack, url: str) -> str:
    """One more small write once the web's per-process 2 s schedule throttle has passed: it schedules a
    rollup refresh (in production beat's 30 s sweep also does; a write within 2 s of the last schedule
    leaves its partitions for that sweep). Returns the trace id it wrote."""
    time.sleep(2.1)
    trace_id = f"nudge-{uuid.uuid4().hex[:8]}"
    response = requests.post(url + "/api/v1/traces", data=json.dumps(batch(trace_id, 1)["batch"][0]),
                             headers={"Authorization": f"Bearer {stack.secret_key}",
                                      "Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return f"{trace_id}-0"


def assert_stored_once(stack: Stack, trace_ids: set[str]) -> None:
    stored = stack.scalar("SELECT array_agg(trace_id) FROM feedback_trace WHERE feature_id = "
                          "(SELECT id FROM feedback_feature WHERE key = 'faults')") or []  # fmt: skip
    assert len(stored) == len(set(stored)), "a trace stored twice"
    assert trace_ids <= set(stored), f"{len(trace_ids - set(stored))} accepted traces missing"
    events = stack.scalar("SELECT count(*) - count(DISTINCT event_id) FROM feedback_feedbackevent")
    assert events == 0, "a feedback event stored twice"


def assert_rollups_recomputed(stack: Stack, timeout: float = 120) -> None:
    """Once the worker has caught up (no dirty partition left), rollups equal a recomputation from raw rows."""
    wait_until(lambda: stack.scalar("SELECT count(*) FROM feedback_rollupdirty") == 0, timeout,
               "the worker refreshing every dirty rollup partition\n" + stack.log("worker")[-3000:])  # fmt: skip
    stored, recomputed = stack.rollups_match_raw_rows()
    assert recomputed, "nothing to compare"
    # Only the rows that differ, named by their key (the whole of both sides buries them in thousands of rows).
    only_stored = {key: stored[key] for key in stored.keys() - recomputed.keys()}
    only_recomputed = {key: recomputed[key] for key in recomputed.keys() - stored.keys()}
    changed = {key: (stored[key], recomputed[key]) for key in stored.keys() & recomputed.keys()
               if stored[key] != recomputed[key]}  # fmt: skip
    assert not (only_stored or only_recomputed or changed), (
        f"stored but not recomputed: {only_stored}\nrecomputed but not stored: {only_recomputed}\n"
        f"differing (stored, recomputed): {changed}\nworker log:\n{stack.log('worker')[-3000:]}"
    )


# --- The worker killed in the middle of a rollup refresh -----------------------------------------


def test_worker_killed_mid_rollup_refresh_then_restarted(processes: Stack) -> None:
    stack = processes
    _, url = stack.web()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {stack.secret_key}"
    sent: set[str] = set()
    # Many (day, feature) partitions, so the refresh takes a while; no worker yet: all of them wait dirty.
    partition_days = days(240)
    for n in range(4):
        body = batch(f"kill-{n}", 120, partition_days[n::4])
        send_until_accepted(session, url + "/api/v1/traces", body, Counter())
        send_until_accepted(session, url + "/api/v1/feedback", feedback_for(body), Counter())
        sent |= {t["trace_id"] for t in body["batch"]}
    dirty = stack.scalar("SELECT count(*) FROM feedback_rollupdirty")
    assert dirty >= 200

    worker = stack.worker()
    wait_until(lambda: stack.scalar("SELECT count(*) FROM feedback_rollupdirty") < dirty, 120, "refresh started",
               interval=0.02)  # fmt: skip
    worker.send_signal(signal.SIGKILL)  # mid-refresh: no warm shutdown, the running task is cut off
    worker.wait(timeout=30)
    left = stack.scalar("SELECT count(*) FROM feedback_rollupdirty")
    assert 0 < left < dirty, f"the kill was meant to land mid-refresh ({left} of {dirty} partitions left)"

    # The killed worker had taken its task off the queue (kombu's SQLAlchemy transport does not hand an
    # unacknowledged message to the next worker): beat's 30 s sweep or the next write schedules a refresh.
    stack.worker()
    sent.add(nudge(stack, url))
    assert_stored_once(stack, sent)
    assert_rollups_recomputed(stack)


# --- PostgreSQL restarted while clients keep sending ------------------------------------------


def test_postgres_restart_while_clients_keep_sending(processes: Stack) -> None:
    stack = processes
    _, url = stack.web()
    stack.worker()
    stack.beat()
    seen: Counter[int] = Counter()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {stack.secret_key}"
        for round_ in range(10_000):
            if stop.is_set():
                return
            body = batch(f"pg-{number}-{round_}", 20, days(30)[round_ % 30 :][:5])
            send_until_accepted(session, url + "/api/v1/traces", body, seen)
            send_until_accepted(session, url + "/api/v1/feedback", feedback_for(body), seen)
            with lock:
                sent.update(t["trace_id"] for t in body["batch"])

    def sent_at_least(n: int) -> bool:
        for future in clients:
            if future.done():
                future.result()  # a client's failed assertion, at once
        return len(sent) >= n

    with ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client, n) for n in range(3)]
        wait_until(lambda: sent_at_least(300), 120, "traffic flowing")
        stack.postgres.restart(down_for=2.0)
        before = len(sent)
        try:
            wait_until(lambda: sent_at_least(before + 300), 180, "traffic flowing again after the restart")
        finally:
            stop.set()
        for future in clients:
            future.result()
    assert seen[200] > 0 and seen[503] > 0, seen  # the restart was noticed, and answered 503 + Retry-After
    sent.add(nudge(stack, url))
    assert_stored_once(stack, sent)
    assert_rollups_recomputed(stack)


# --- A burst of ten times the per-key rate ---------------------------------------------------------


def test_burst_of_ten_times_the_rate_gets_429_with_retry_after_and_no_5xx(processes: Stack) -> None:
    stack = processes
    rate, burst = 5.0, 10
    _, url = stack.web(CANDOR_API_RATE_PER_SECOND=str(rate), CANDOR_API_RATE_BURST=str(burst))
    stack.worker()
    answers: list[tuple[int, str | None, set[str]]] = []
    lock = threading.Lock()
    interval = 1 / (10 * rate)  # ten times the rate

    def send(i: int) -> None:
        body = batch(f"burst-{i}", 3, days(10))
        response = requests.post(url + "/api/v1/traces", data=json.dumps(body),
                                 headers={"Authorization": f"Bearer {stack.secret_key}",
                                          "Content-Type": "application/json"}, timeout=30)  # fmt: skip
        with lock:
            answers.append((response.status_code, response.headers.get("Retry-After"),
                            {t["trace_id"] for t in body["batch"]}))  # fmt: skip

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        i = 0
        while time.monotonic() - started < BURST_SECONDS:
            pool.submit(send, i)
            i += 1
            time.sleep(max(0.0, started + i * interval - time.monotonic()))
    elapsed = time.monotonic() - started

    statuses = Counter(status for status, _, _ in answers)
    print(f"burst: {len(answers)} requests in {elapsed:.0f} s at 10x the rate: {dict(statuses)}")
    assert set(statuses) <= {200, 429}, statuses  # never a 5xx, nothing else
    assert statuses[429] > statuses[200] > 0, statuses
    assert all(after and after.isdigit() and int(after) >= 1 for status, after, _ in answers if status == 429)
    # The key's budget, never more: the burst allowance and the rate over the time the burst lasted.
    assert statuses[200] <= burst + rate * (elapsed + 2), (statuses, elapsed)
    accepted = set().union(*(ids for status, _, ids in answers if status == 200))
    refused = set().union(*(ids for status, _, ids in answers if status == 429))
    assert_stored_once(stack, accepted)
    assert not stack.scalar("SELECT count(*) FROM feedback_trace WHERE trace_id = ANY(%s)", [sorted(refused)])
    nudge(stack, url)  # after 2 s the key has budget again
    assert_rollups_recomputed(stack)


# --- Stopping the demo -------------------------------------------------------------------------------


def test_demo_stops_soon_after_sigterm_to_its_process_group(stack: Stack) -> None:
    """bin/run-demo (what `make demo` runs) under traffic; SIGTERM to its process group ends web, worker and beat.

    The goal is 10 s (bin/run-demo kills what a warm stop has not ended after 6 s); asserted with slack for a
    loaded machine, far below the 40 s the worker used to hang. The time taken is printed.
    """
    port = free_port()
    env = stack.env(PORT=str(port), DJANGO_SETTINGS_MODULE="config.settings.dev", CELERY_QUEUE=stack.queue)
    said = stack.logs / "run-demo.log"  # what the script says (a process that exited, and why), for a failure
    with open(said, "ab") as log:
        demo = subprocess.Popen([str(ROOT / "bin" / "run-demo")], cwd=ROOT, env=env, start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def members() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["pid"]) if _session_of(p) == demo.pid]

        def up() -> bool:
            try:
                ok = requests.get(url + "/healthz", timeout=30).status_code == 200
            except requests.RequestException:
                return False
            names = " ".join(_command_of(p) for p in members())
            return ok and "worker" in names and "beat" in names

        try:
            wait_until(up, 120, "the demo up")
        except AssertionError as exc:
            running = [_command_of(p)[:80] for p in members()]
            raise AssertionError(f"{exc}; running: {running}; run-demo said: {said.read_text()[-2000:]!r}") from exc
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {stack.secret_key}"
        for n in range(10):  # work in flight for the worker when the signal comes
            response = session.post(url + "/api/v1/traces", json=batch(f"demo-{n}", 50, days(20)), timeout=30)
            assert response.status_code == 200, response.text
        processes = members()
        assert len(processes) >= 4  # the script, web, worker, beat (and their children)

        signalled = time.monotonic()
        os.killpg(demo.pid, signal.SIGTERM)
        gone, alive = psutil.wait_procs(processes, timeout=15)
        took = time.monotonic() - signalled
        print(f"demo stopped {took:.1f} s after SIGTERM to its process group")
        assert not alive, f"still running 15 s after SIGTERM: {[_command_of(p) for p in alive]}"
    finally:
        if demo.poll() is None:
            stop_process(demo, signal.SIGKILL)


def _command_of(process: psutil.Process) -> str:
    """Its command line; "" for one that ended as it was read (a short-lived child of the demo, not yet reaped,
    read as a zombie: CI failed once on it while the demo started)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _session_of(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None
