"""Shared by the benchmarks: a free port, Candor's web server on it, and a lean HTTP client."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".var" / "log" / "bench-web.log"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def web_server(port: int, workers: int = int(os.environ.get("BENCH_WORKERS", "4"))) -> Iterator[str]:
    """Serve Candor on 127.0.0.1:port as production does (config/serve.py) until the block ends; yields the base URL."""
    env = dict(os.environ)
    # Rollup tasks go to a queue no worker reads: the benchmark measures ingestion alone.
    env.setdefault("CELERY_QUEUE", f"bench-{port}")
    # Served as production serves: debug off (config.settings.dev turns it on otherwise).
    env.setdefault("DJANGO_DEBUG", "0")
    # config/serve.py starts the embedded PostgreSQL if DATABASE_URL is unset. Threads per process
    # as in production (WEB_THREADS, 4) unless BENCH_THREADS says otherwise.
    threads = ["--threads", os.environ["BENCH_THREADS"]] if os.environ.get("BENCH_THREADS") else []
    (ROOT / ".var" / "log").mkdir(parents=True, exist_ok=True)
    with open(LOG, "ab") as log:  # uWSGI's own lines (start, errors), not one per request
        server = subprocess.Popen(
            [sys.executable, "-m", "config.serve", "--bind", f"127.0.0.1:{port}", "--processes", str(workers),
             *threads],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
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


def server_cpu_seconds(port: int) -> float:
    """CPU seconds (user + system) used so far by the web server's processes on ``port`` (Linux /proc):
    what requests cost the server, whatever else the machine is doing."""
    marker = f"--http11-socket=127.0.0.1:{port}".encode()
    return _cpu_seconds(lambda cmdline: marker in cmdline)


def postgres_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this machine's PostgreSQL processes (Linux /proc; the
    embedded server's and any other local cluster's: the benchmarks run against one of them), backends and
    autovacuum workers that have exited included (their postmaster's reaped children); background work
    (autovacuum, checkpoints) lands in whichever span it runs."""
    # Its children rename themselves "postgres: ..." (Debian's "postgres: 15/main: ..." too); the postmaster, by its
    # program's name (its path varies).
    return _cpu_seconds(
        lambda cmdline: cmdline.startswith(b"postgres") or os.path.basename(cmdline.split(b"\0", 1)[0]) == b"postgres"
    )


def worker_connections(port: int, connections: list[http.client.HTTPConnection]) -> list[int]:
    """How many of these (connected, answered) client connections each web server process on ``port`` holds, most
    first (Linux /proc): a kept-alive connection stays with the process that accepted it."""
    marker = f"--http11-socket=127.0.0.1:{port}".encode()
    inode_of: dict[int, str] = {}  # the client's port -> the inode of the server's end of its connection
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if int(local[1], 16) == port:
            inode_of[int(remote[1], 16)] = fields[9]
    wanted = {inode_of.get(conn.sock.getsockname()[1]) for conn in connections if conn.sock is not None}
    held: list[int] = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or marker not in (entry / "cmdline").read_bytes():
                continue
            sockets = {os.readlink(fd).removeprefix("socket:[").removesuffix("]") for fd in (entry / "fd").iterdir()}
        except OSError:  # gone meanwhile
            continue
        if count := len(sockets & wanted):
            held.append(count)
    return sorted(held, reverse=True)


def balanced_connections(port: int, clients: int, workers: int, tries: int = 40) -> list[http.client.HTTPConnection]:
    """``clients`` kept-alive connections spread evenly over the ``workers`` web server processes. A kept-alive
    connection stays with whichever process accepted it: four clients' connections landed 2 + 2, 3 + 1 or all 4 in
    one of two processes, at random (a fresh set each time), and a path measured on 4 + 0 ran on one process's
    interpreter. Every path of a benchmark that shares these runs on the same split; if none even comes up in
    ``tries``, the last one is kept (say it with ``worker_connections``)."""
    connections: list[http.client.HTTPConnection] = []
    for _ in range(tries):
        for conn in connections:
            conn.close()
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(clients)]
        for conn in connections:  # all open at once, so no process takes one back from a closed one
            conn.request("GET", "/api/v1/traces")  # refused at once (no key): only so a process takes it
            conn.getresponse().read()
        held = worker_connections(port, connections)
        if sum(held) == clients and len(held) == workers and max(held) - min(held) <= 1:
            break
    return connections


def _cpu_seconds(matches: Callable[[bytes], bool]) -> float:
    """User + system CPU seconds of the processes whose command line ``matches``, with those of their children that
    have exited (a process's seconds move to its parent's when the parent reaps it: read alone, a backend or
    autovacuum worker exiting in a span took its seconds with it, and a path's PostgreSQL CPU came out 8 us a span,
    or below zero)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not matches((entry / "cmdline").read_bytes()):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # utime, stime, cutime, cstime (fields 14 to 17 of stat): its own and its reaped children's
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


class KeepAlive:
    """One client's kept-alive HTTP/1.1 connection, as lean as Python allows: requests are bytes
    built by the caller, a response is read by its Content-Length. The benchmarks' clients run on
    the server's own two CPUs, and http.client spent ~240 us of CPU per request there."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)

    def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request."""
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-response")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP response: {data[:300]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if b"content-length" not in headers:
            raise ConnectionError(f"a response without Content-Length: {head[:300]!r}")
        length = int(headers[b"content-length"])
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-body")
            body += chunk
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        return int(lines[0].split()[1]), body

    def close(self) -> None:
        self.sock.close()


def http_request(
    method: str, path: str, port: int, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
