"""Test settings: fast hashing; the database is the same real PostgreSQL as dev."""

import os

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The live server tests fire many requests from one key; keep rate limits out of their way
# unless the environment sets them (the shared-budget test starts the web server with a small one).
API_RATE_LIMIT_PER_SECOND = float(os.environ.get("CANDOR_API_RATE_PER_SECOND", "100000"))
API_RATE_LIMIT_BURST = int(os.environ.get("CANDOR_API_RATE_BURST", "100000"))

# Each test session publishes to its own queue, so a worker never meets tasks for the
# schemas of an earlier, already dropped, test database.
CELERY_TASK_DEFAULT_QUEUE = os.environ.setdefault("CANDOR_TEST_QUEUE", f"candor-test-{os.getpid()}")
# Database connections live as in production (60 s, health-checked): a live-server thread keeps
# its connection for its kept-alive client and closes it when the client goes (ThreadedWSGIServer.
# close_request); the session's teardown ends whatever is left. (A connection per request cost
# each live-server request ~8 ms.)
# One test database per run, so two runs on one machine (or one checkout) never collide.
DATABASES["default"]["TEST"] = {"NAME": f"test_candor_{os.getpid()}"}  # noqa: F405
JUDGE_ALLOWED_HOSTS = ["127.0.0.1"]  # the fake provider (tests/fixtures/fake_llm.py) is plain http on loopback
# Alert webhooks to the tests' local receivers (tests of the refusal clear this list).
ALERT_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
