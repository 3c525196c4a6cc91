"""make demo, after demo_setup: experiments, drift, alerts and the weekly digest on the demo data
(idempotent: a second run only re-sends what is pending).

* support-copilot runs an experiment with a 10% holdback (the non-AI path) for the last 13 days.
  The generator emits no variants for support-copilot, so its traces of that period are re-sent,
  through the same ingestion service, with experiment=support-holdback and variant=ai (a resent
  trace is merged), and one holdback trace per nine AI ones is added (fallback, no prompt version),
  with ticket_resolved outcomes at the non-AI path's lower rate, tied to them with variant=holdback.
* checkout-assist's experiment (control / ai_on / 10% holdback) already is in the generator's data.
* The alert beat is replayed every 12 hours (00:00 and 12:00 UTC) over the last 28 days, then now, against a
  signed webhook to a local receiver (started here; what it receives goes to .var/demo-webhooks.jsonl
  with the signature check) and an email channel; deliveries are sent at the end, then the
  receiver's channel is disabled (the receiver stops with this command).
* Drift snapshots for every feature; the weekly digest emailed to the PM (dev writes mail to .var/mail/).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from evaluation.models import Alert, ChannelKind, DriftSnapshot, Experiment, NotificationChannel
from evaluation.services.alerts import alerts_evaluate, channel_create, deliveries_send
from evaluation.services.digest import digest_send
from evaluation.services.drift import drift_snapshots_daily
from evaluation.services.experiments import experiment_create
from evaluation.services.shared import keyring, utc_now
from evaluation.services.webhooks import verify
from feedback import services
from feedback.models import Feature, Trace
from feedback.rollups import rollups_refresh
from tenants.schema import activate_public, activate_tenant
from tenants.selectors import organization_find

KEY = "support-holdback"
EXPERIMENT_DAYS = 13
HOLDBACK_SHARE = 0.10
HOLDBACK_RESOLVE_RATE = 0.40  # tickets the non-AI path (help-center search) resolves
REPLAY_DAYS = 28
REPLAY_STEP_HOURS = 12
RECEIVER = "Demo receiver (local, during make demo)"

_encode = msgspec.json.Encoder().encode


class _Receiver(BaseHTTPRequestHandler):
    log_path: Path
    secret = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        valid = verify(
            self.secret,
            body,
            self.headers.get("Candor-Timestamp", ""),
            self.headers.get("Candor-Signature", ""),
            now=time.time(),
        )
        record = {
            "received_at": datetime.now(UTC).isoformat(),
            "signature_valid": valid,
            "event": self.headers.get("Candor-Event"),
            "body": json.loads(body or b"{}"),
        }
        with self.log_path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        self.send_response(200 if valid else 400)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Command(BaseCommand):
    help = "Add the demo's experiments (with a holdback arm), alert history with webhook deliveries, drift and digest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="acme")
        parser.add_argument("--replay-days", type=int, default=REPLAY_DAYS, help="days of alert beat to replay")
        parser.add_argument(
            "--webhook-log", default="", help="where the local receiver logs (.var/demo-webhooks.jsonl)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_find(options["slug"])
        if organization is None:
            self.stderr.write(f"No organization {options['slug']!r}: run demo_setup first.")
            return
        log_path = Path(options["webhook_log"] or Path(settings.BASE_DIR) / ".var" / "demo-webhooks.jsonl")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _Receiver.log_path = log_path
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        activate_tenant(organization)
        try:
            started = time.perf_counter()
            if not Feature.objects.filter(key="support-copilot").exists():
                self.stderr.write("No support-copilot feature: run demo_setup first.")
                return
            first_run = not Experiment.objects.filter(key=KEY).exists()
            replay = not Alert.objects.exists()
            if first_run:
                self._experiments()
            if not DriftSnapshot.objects.exists():
                drift_snapshots_daily()
            _Receiver.secret = self._channels(server.server_address[1])
            if replay:
                self._replay_alerts(options["replay_days"])
            due = deliveries_send(now=utc_now())
            for _ in range(3):  # a retry comes due within a minute (backoff): wait for it once or twice
                if due is None or due - utc_now() > timedelta(seconds=90):
                    break
                time.sleep(max((due - utc_now()).total_seconds(), 0.0) + 0.1)
                due = deliveries_send(now=utc_now())
            # The receiver lives only as long as this command: park its channel so the worker does not
            # retry into a closed port (the deliveries made here stay in the history).
            NotificationChannel.objects.filter(kind=ChannelKind.WEBHOOK, name=RECEIVER).update(enabled=False)
            alerts = Alert.objects.count()
            sent = digest_send(organization=organization, base_url=f"http://localhost:{os.environ.get('PORT', '8000')}")
            self.stdout.write(
                f"  Experiments, drift, {alerts} alerts (webhooks logged to {log_path}), digest to {sent} PM(s) in "
                f"{time.perf_counter() - started:.1f}s" + (f"; deliveries pending until {due:%H:%M}" if due else "")
            )
        finally:
            activate_public()
            server.shutdown()

    def _experiments(self) -> None:
        now = utc_now()
        start = datetime.combine((now - timedelta(days=EXPERIMENT_DAYS)).date(), datetime.min.time(), UTC)
        rng = random.Random(11)
        ai = list(
            Trace.objects.filter(feature__key="support-copilot", started_at__gte=start, fallback=False)
            .exclude(trace_id__startswith="tr_demo_")
            .order_by("started_at", "trace_id")
            .values("trace_id", "started_at", "customer_id", "user_id", "metadata")
        )
        resend = [
            {
                "trace_id": t["trace_id"],
                "feature": "support-copilot",
                "started_at": t["started_at"].isoformat(),
                "experiment": KEY,
                "variant": "ai",
            }
            for t in ai
        ]
        holdback: list[dict[str, Any]] = []
        outcomes: list[dict[str, Any]] = []
        # One holdback trace per nine AI ones, each beside an AI trace (its customer, user and time), taken in
        # time order: a whole day's holdback traffic is the same whatever the hour the demo is built.
        due = rng.random()
        for like in ai:
            due += HOLDBACK_SHARE / (1 - HOLDBACK_SHARE)
            if due < 1.0:
                continue
            due -= 1.0
            i = len(holdback)
            at = max(start, like["started_at"] - timedelta(seconds=rng.uniform(0, 1800)))
            trace_id = f"tr_holdback_{i:06d}"
            holdback.append(
                {
                    "trace_id": trace_id,
                    "feature": "support-copilot",
                    "started_at": at.isoformat(),
                    "customer_id": like["customer_id"],
                    "user_id": like["user_id"],
                    "session_id": f"ses_hb_{i:06d}",
                    "input": "How do I reset my password?",
                    "status": "ok",
                    "fallback": True,
                    "latency_ms": round(rng.lognormvariate(3.0, 0.3), 1),
                    "metadata": like["metadata"],
                    "experiment": KEY,
                    "variant": "holdback",
                }
            )
            resolved = rng.random() < HOLDBACK_RESOLVE_RATE
            resolved_at = at + timedelta(hours=rng.uniform(0.5, 6))
            if resolved and resolved_at <= now:  # a later one has not happened yet
                outcomes.append(
                    {
                        "outcome_id": f"oc_holdback_{i:06d}",
                        "name": "ticket_resolved",
                        "trace_id": trace_id,
                        "session_id": f"ses_hb_{i:06d}",
                        "customer_id": like["customer_id"],
                        "variant": "holdback",
                        "value_usd": 4.0,
                        "occurred_at": resolved_at.isoformat(),
                    }
                )
        for start_at in range(0, len(resend), 1000):
            self._ok(services.traces_ingest(body=_encode({"batch": resend[start_at : start_at + 1000]})))
        for start_at in range(0, len(holdback), 1000):
            self._ok(services.traces_ingest(body=_encode({"batch": holdback[start_at : start_at + 1000]})))
        for start_at in range(0, len(outcomes), 1000):
            self._ok(services.outcomes_ingest(body=_encode({"batch": outcomes[start_at : start_at + 1000]})))
        rollups_refresh(limit=100_000)
        experiment_create(
            key=KEY,
            feature_key="support-copilot",
            name="Support Copilot vs. help-center search (10% holdback)",
            hypothesis="Drafted answers resolve more tickets than the non-AI help-center search.",
            arms=[
                {"name": "holdback", "allocation": HOLDBACK_SHARE, "holdback": True},
                {"name": "ai", "allocation": 1 - HOLDBACK_SHARE},
            ],
            control="holdback",
            primary_metric="conversion",  # tickets resolved: the non-AI path has no output to judge
            mde=0.05,
            max_days=28,
            started_at=start,
        )
        checkout_start = Trace.objects.filter(feature__key="checkout-assist").order_by("started_at").first()
        if checkout_start is not None and not Experiment.objects.filter(key="checkout-assist").exists():
            experiment_create(
                key="checkout-assist",
                feature_key="checkout-assist",
                name="Checkout add-on suggestions",
                hypothesis="Suggesting one add-on (checkout-v3.1) converts more shoppers.",
                arms=[
                    {"name": "holdback", "allocation": 0.10, "holdback": True},
                    {"name": "control", "allocation": 0.45},
                    {"name": "ai_on", "allocation": 0.45},
                ],
                control="control",  # the hypothesis' baseline; the holdback is the yardstick of the AI's value
                primary_metric="conversion",
                mde=0.03,
                max_days=45,
                started_at=checkout_start.started_at,
            )
        self.stdout.write(f"  Experiment {KEY}: {len(ai):,} AI traces, {len(holdback):,} holdback traces")

    def _channels(self, port: int) -> str:
        """The demo's webhook (to this run's local receiver) and the PM's email; the webhook's secret."""
        url = f"http://127.0.0.1:{port}/candor-alerts"
        channel = NotificationChannel.objects.filter(kind=ChannelKind.WEBHOOK, name=RECEIVER).first()
        if channel is None:
            channel, secret = channel_create(kind=ChannelKind.WEBHOOK, name=RECEIVER, url=url)
        else:  # the receiver listens on a new port each run
            NotificationChannel.objects.filter(id=channel.id).update(url=url, enabled=True)
            secret = keyring().decrypt(channel.secret_encrypted).reveal()
        if not NotificationChannel.objects.filter(kind=ChannelKind.EMAIL).exists():
            channel_create(kind=ChannelKind.EMAIL, name="PM email", email="pm@acme.test")
        return secret

    def _replay_alerts(self, days: int) -> None:
        # The beat's past runs at fixed hours of the day (00:00 and 12:00 UTC), as the demo's whole days are
        # laid from midnight: the alert history is the same whatever the hour the demo is built. Then one
        # run now, as the beat will.
        now = utc_now()
        at = datetime.combine(now.date(), datetime.min.time(), UTC) - timedelta(days=days)
        while at < now:
            alerts_evaluate(now=at)
            at += timedelta(hours=REPLAY_STEP_HOURS)
        alerts_evaluate(now=now)

    def _ok(self, result: services.IngestResult) -> None:
        if result.errors:
            raise RuntimeError(f"demo batch rejected items: {result.errors[:3]}")
