"""Judge scores per second through the real pipeline: the broker, a Celery worker process, the
database, and a fake LLM provider over HTTP (its own process) answering after a fixed latency.

1. Starts the fake provider (OpenAI shape, BENCH_LATENCY_MS, default 500 ms) in a process of its own.
2. Creates a fresh organization with a provider key pointing at it, an LLM judge enabled at 100%,
   BENCH_SCORES traces, and lets the sampling sweep queue one pending score per trace.
3. Starts one Celery worker process (solo pool) on a queue of its own and sends it the runner task.
4. Times from the first call to the last verdict written (worker start-up excluded), and compares
   with the ideal: the provider's latency times the number of rounds at the organization's cap.

Ends with: RESULT judges scores_per_s=... provider_latency_ms=500 concurrency=... overhead_ms=...
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
QUEUE = f"bench-judges-{uuid.uuid4().hex[:8]}"
os.environ["CELERY_QUEUE"] = QUEUE

import django  # noqa: E402

from config.embedded_db import ensure_database_url  # noqa: E402

ensure_database_url()
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from evaluation.judges.versions import JudgeVersionSpec  # noqa: E402
from evaluation.models import Score  # noqa: E402
from evaluation.services.judges import judge_create, judge_enable  # noqa: E402
from evaluation.services.provider_keys import provider_key_create  # noqa: E402
from evaluation.services.sampling import sampling_sweep  # noqa: E402
from evaluation.services.shared import utc_now  # noqa: E402
from evaluation.tasks import schedule_scores_run  # noqa: E402
from tenants.models import Organization  # noqa: E402
from tenants.schema import activate_public, activate_tenant  # noqa: E402
from tenants.services import organization_create  # noqa: E402

SCORES = int(os.environ.get("BENCH_SCORES", "3000"))
LATENCY_MS = int(os.environ.get("BENCH_LATENCY_MS", "500"))
FAKE = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.fixtures.fake_llm import FakeLLM
fake = FakeLLM()
fake.latency_s = {LATENCY_MS / 1000}
print(fake.openai_base_url, flush=True)
while True:
    time.sleep(3600)
"""


def traces_load(n: int) -> None:
    import msgspec

    from feedback import services

    rows = [
        {"trace_id": f"bj-{i}", "feature": "bench", "input": f"Question {i}: how do I export my data?",
         "output": f"Go to Settings > Data > Export and pick CSV ({i}).", "model": "gpt-4o-mini"}
        for i in range(n)
    ]  # fmt: skip
    for start in range(0, n, 1000):
        result = services.traces_ingest(body=msgspec.json.encode({"batch": rows[start : start + 1000]}))
        assert not result.errors, result.errors[:3]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    fake = subprocess.Popen([sys.executable, "-c", FAKE], stdout=subprocess.PIPE, text=True)
    base_url = (fake.stdout.readline() if fake.stdout else "").strip()
    slug = f"bench-judges-{uuid.uuid4().hex[:8]}"
    created = organization_create(slug=slug, owner_email=f"bench@{slug}.test", allowed_origins=[])
    organization = created.organization
    worker = None
    try:
        activate_tenant(organization)
        provider_key_create(provider="openai", name="bench", secret="sk-bench-0123456789abcdef", base_url=base_url)
        spec = JudgeVersionSpec(
            kind="llm", scale="binary", provider="openai", model="gpt-4o-mini",
            prompt_template="Question: {{ input }}\nAnswer: {{ output }}\nIs the answer helpful?",
        )  # fmt: skip
        judge = judge_create(name="bench", spec=spec)
        traces_load(SCORES)
        judge_enable(judge=judge, base_rate=1.0)
        queued = sampling_sweep(now=utc_now() + timedelta(minutes=1), max_batches=100)
        cap = int(settings.JUDGE_ORG_CONCURRENCY)
        print(f"{queued:,} scores queued; fake provider at {base_url} answering after {LATENCY_MS} ms; "
              f"organization cap {cap} calls in flight", flush=True)  # fmt: skip
        env = dict(os.environ, DATABASE_URL=os.environ["DATABASE_URL"], CELERY_QUEUE=QUEUE)
        worker = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "celery"), "-A", "config", "worker", "--pool=solo", "-Q", QUEUE,
             "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        schedule_scores_run(organization.schema_name)
        scores = Score.objects.filter(judge_id=judge.id)
        deadline = time.monotonic() + 600
        while scores.filter(status__in=["pending", "running"]).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
            connection.close_if_unusable_or_obsolete()
        worker_cpu, fake_cpu = cpu_seconds(worker.pid), cpu_seconds(fake.pid)
        done = scores.filter(status="ok").count()
        errors = scores.filter(status="error").count()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM max(scored_at) - min(scored_at)) FROM evaluation_score WHERE judge_id = %s",
                [judge.id],
            )
            (span,) = cursor.fetchone()
        seconds = float(span or 0) + LATENCY_MS / 1000  # the first verdict was written one latency after its call
        per_s = done / seconds if seconds else 0.0
        rounds = -(-queued // cap)
        ideal = rounds * LATENCY_MS / 1000
        concurrency = per_s * LATENCY_MS / 1000
        overhead_ms = max(0.0, seconds * min(cap, queued) / max(done, 1) * 1000 - LATENCY_MS)
        print(
            f"{done:,} scores ok, {errors:,} errors in {seconds:.2f}s = {per_s:,.1f} scores/s from one worker process"
        )
        print(f"concurrency: {concurrency:.0f} calls in flight on average (cap {cap}); ideal {ideal:.2f}s "
              f"({rounds} rounds of {LATENCY_MS} ms)")  # fmt: skip
        print(f"CPU per score: worker {worker_cpu * 1000 / max(done, 1):.2f} ms, fake provider "
              f"{fake_cpu * 1000 / max(done, 1):.2f} ms (2 cores shared by both and the database)")  # fmt: skip
        print(f"overhead beyond the provider's latency: {overhead_ms:.1f} ms per score in each call slot "
              f"(slot time per score {seconds * cap / max(done, 1) * 1000:.0f} ms vs {LATENCY_MS} ms)")  # fmt: skip
        print(
            f"RESULT judges scores_per_s={per_s:.1f} provider_latency_ms={LATENCY_MS} concurrency={concurrency:.0f} "
            f"cap={cap} overhead_ms={overhead_ms:.1f} worker_cpu_ms={worker_cpu * 1000 / max(done, 1):.2f} "
            f"scores={done} errors={errors}"
        )
        return 0 if done == queued else 1
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        fake.terminate()
        activate_public()
        Organization.objects.filter(pk=organization.pk).first().delete(force_drop=True)  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
