"""Candor's web server: `python -m config.serve --bind HOST:PORT` (bin/run-demo, the benchmarks, tests).

uWSGI (the pyuwsgi wheel: no compiler needed) serves config.wsgi over HTTP/1.1 with keep-alive.
It parses HTTP and runs its worker threads in C: a trivial WSGI app from 4 kept-alive clients
answered 13k-24k requests/s on it against 4.5k-5.8k on gunicorn's gthread worker (the server's
own CPU around each request is what decides how many browsers' requests two cores answer).

Starts the embedded PostgreSQL first when DATABASE_URL is unset, so every worker inherits the URL,
then becomes uWSGI (exec). Processes and threads: --processes / WEB_CONCURRENCY (default 2),
--threads / WEB_THREADS (default 4). --access-log PATH writes one line per request, with the
pid of the process that served it; --log-file PATH takes the server's own log off stderr.
SIGTERM or SIGINT stops it (requests in flight get 5 s).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What an access line says (the shared rate limit's test reads the pid).
ACCESS_FORMAT = '%(addr) - [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) "%(uagent)" pid=<%(pid)>'


def uwsgi_arguments(
    bind: str,
    processes: int,
    threads: int,
    access_log: str | None = None,
    log_file: str | None = None,
    listen: int = 1024,
) -> list[str]:
    """uWSGI's command line for Candor."""
    arguments = [
        "--master",
        f"--http11-socket={bind}",
        "--module=config.wsgi:application",
        f"--chdir={ROOT}",
        f"--pythonpath={ROOT}",
        f"--processes={processes}",
        f"--threads={threads}",
        "--enable-threads",  # the judge runner's event loop and Celery's publisher run threads of their own
        "--lazy-apps",  # each worker loads Django after the fork: no connection is shared across processes
        "--need-app",
        "--single-interpreter",
        "--thunder-lock",
        "--die-on-term",  # SIGTERM stops the server (uWSGI would otherwise reload)
        "--reload-mercy=5",
        "--worker-reload-mercy=5",
        f"--listen={listen}",
        "--buffer-size=32768",  # request headers up to 32 KB (4 KB by default: long cookies would fail)
        "--http-timeout=60",
        "--ignore-sigpipe",
        "--ignore-write-errors",
        "--disable-write-exception",  # a browser that went away is not our error
        "--vacuum",
    ]
    if log_file:
        arguments.append(f"--logto={log_file}")  # uWSGI's own lines and what the processes print
    if access_log:
        arguments += [f"--req-logger=file:{access_log}", f"--log-format={ACCESS_FORMAT}"]
    else:
        arguments.append("--disable-logging")
    return arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default=os.environ.get("WEB_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}"))
    parser.add_argument("--processes", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", "4")))
    parser.add_argument("--access-log", default=None, help="a file for one line per request")
    parser.add_argument("--log-file", default=None, help="a file for the server's own log (default: stderr)")
    options = parser.parse_args(argv)

    from config.embedded_db import ensure_database_url

    ensure_database_url()
    uwsgi = str(Path(sys.executable).with_name("uwsgi"))
    arguments = uwsgi_arguments(
        options.bind, options.processes, options.threads, access_log=options.access_log, log_file=options.log_file
    )
    os.execv(uwsgi, [uwsgi, *arguments])


if __name__ == "__main__":
    main()
