"""Warnings sent once: a customer's budget past each threshold in a day or a month (email and the
organization's webhook, POSTed to a local receiver over real HTTP)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from billing.models import Notice
from billing.services.accounts import notify_webhook_set
from billing.services.budgets import budget_set, budget_thresholds_sweep
from billing.services.notices import notice_deliver
from tests.billing.helpers import send_traces, spend_traces
from tests.fixtures.organizations import Org, unique


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_budget_thresholds_warn_once_each(db: None, org_a: Org, receiver: tuple[str, list[dict[str, Any]]],
                                          settings: Any) -> None:  # fmt: skip
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    url, received = receiver
    notify_webhook_set(organization=org_a.organization, url=url)
    customer = unique("c")
    budget = budget_set(organization=org_a.organization, customer_id=customer, monthly_cap_usd="10",
                        thresholds=[50, 90, 100])  # fmt: skip
    send_traces(org_a, spend_traces(customer, ["6"]))
    today = datetime.now(UTC).date()
    assert budget_thresholds_sweep(organization=org_a.organization, today=today) == 1
    send_traces(org_a, spend_traces(customer, ["3.5"]))
    assert budget_thresholds_sweep(organization=org_a.organization, today=today) == 1  # 90% now; 50% was sent
    assert budget_thresholds_sweep(organization=org_a.organization, today=today) == 0
    notices = Notice.objects.filter(organization=org_a.organization, kind="customer_budget").order_by("id")
    assert [n.payload["threshold"] for n in notices] == [50, 90]
    assert all(n.key.startswith(f"budget:{budget.id}:{customer}:month:") for n in notices)
    assert len(mail.outbox) == 2 and customer in mail.outbox[0].subject
    for notice in notices:  # the Celery task's work (on commit, in production)
        notice_deliver(notice=notice)
    assert [r["threshold"] for r in received] == [50, 90]
    assert received[0]["type"] == "customer_budget.warning" and received[0]["customer_id"] == customer


def test_a_webhook_to_an_internal_address_is_refused(db: None, org_a: Org, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = []
    for url in ("http://127.0.0.1:9/hook", "https://169.254.169.254/latest", "ftp://example.com/"):
        with pytest.raises(ValidationError):
            notify_webhook_set(organization=org_a.organization, url=url)
