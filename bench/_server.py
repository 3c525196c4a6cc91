"""Shared by the benchmarks: a free port and a gunicorn serving Candor on it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(port: int, workers: int = int(os.environ.get("BENCH_WORKERS", "4"))) -> Iterator[str]:
    """Serve Candor on 127.0.0.1:port until the block ends; yields the base URL."""
    env = dict(os.environ)
    # Rollup tasks go to a queue no worker reads: the benchmark measures ingestion alone.
    env.setdefault("CELERY_QUEUE", f"bench-{port}")
    # Served as production serves: debug off (config.settings.dev turns it on otherwise).
    env.setdefault("DJANGO_DEBUG", "0")
    # config/gunicorn.py starts the embedded PostgreSQL if DATABASE_URL is unset.
    # Threads as config/gunicorn.py sets them for production (GUNICORN_THREADS, 4: the gthread
    # worker, which keeps connections alive) unless BENCH_THREADS says otherwise (1: the sync worker).
    threads = ["--threads", os.environ["BENCH_THREADS"]] if os.environ.get("BENCH_THREADS") else []
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), *threads, "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
