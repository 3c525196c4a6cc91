"""httpx transports that check every address they connect to, not only the URL when it was saved.

A host that resolved to a public address when its URL was checked can resolve to 127.0.0.1 or
169.254.169.254 at the moment of the request (DNS rebinding: a short TTL, a second answer). These
transports resolve the host themselves when they open a connection, ask ``refuse(host, addresses)``
whether any of those addresses is off limits, and connect to the address they checked: the request
cannot go anywhere but where the check looked. TLS still verifies the certificate of the host named
in the URL (httpcore passes the URL's host to the handshake, whatever address the socket reached).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

# Why a connection to ``host`` at these addresses must not be opened, or None to open it.
Refuse = Callable[[str, list[str]], str | None]
# What a refused connection's error says first (httpx keeps the message, not the exception's class).
REFUSED = "address refused: "


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _checked(refuse: Refuse, host: str, addresses: list[str]) -> str:
    if not addresses:
        raise httpcore.ConnectError(f"the host {host} does not resolve")
    problem = refuse(host, addresses)
    if problem:
        raise httpcore.ConnectError(REFUSED + problem)
    return addresses[0]


class _CheckedBackend(httpcore.NetworkBackend):
    def __init__(self, refuse: Refuse) -> None:
        self._refuse = refuse
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"the host {host} does not resolve ({exc})") from exc
        address = _checked(self._refuse, host, _addresses(infos))
        return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable from here")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncCheckedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, refuse: Refuse, inner: httpcore.AsyncNetworkBackend) -> None:
        self._refuse = refuse
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"the host {host} does not resolve ({exc})") from exc
        address = _checked(self._refuse, host, _addresses(infos))
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable from here")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(
    refuse: Refuse, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True
) -> httpx.HTTPTransport:
    """httpx's own transport (pooling, HTTP/1.1, its errors), connecting only where ``refuse`` allows."""
    transport = httpx.HTTPTransport(limits=limits, verify=verify)
    # httpx builds its connection pool without a way to name the network backend: set on the pool it
    # built (httpcore's ConnectionPool keeps it here; tests/evaluation/test_network.py fails if it moves).
    transport._pool._network_backend = _CheckedBackend(refuse)
    return transport


def async_checked_transport(
    refuse: Refuse, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncHTTPTransport:
    """The asyncio form of ``checked_transport``."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=verify)
    pool = transport._pool
    pool._network_backend = _AsyncCheckedBackend(refuse, pool._network_backend)
    return transport
