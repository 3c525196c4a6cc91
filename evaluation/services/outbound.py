"""Where Candor's workers may send requests on an organization's behalf (judge providers, alert
webhooks): one server-side-request-forgery check for both."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings


def allowed_hosts(setting: str) -> set[str]:
    """Hosts named by ``settings.<setting>``, else the environment variable of that name
    (comma-separated): they may be reached over plain http or at an internal address."""
    configured = getattr(settings, setting, None)
    if configured is None:
        configured = os.environ.get(setting, "").split(",")
    return {h.strip().lower().strip("[]") for h in configured if h.strip()}


def internal_address(address: str) -> bool:
    """Loopback, private, link-local (169.254.169.254), reserved or multicast: not the internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def connect_refusal(setting: str) -> Callable[[str, list[str]], str | None]:
    """What the checked transports (evaluation.judges.network) ask at every connection: an internal
    address is refused unless its host is in ``allowed_hosts(setting)``. The URL check on save cannot
    see where the host resolves later (DNS rebinding); this sees the address the socket connects to."""
    allowed = allowed_hosts(setting)

    def refuse(host: str, addresses: list[str]) -> str | None:
        if host.lower().strip("[]") in allowed:
            return None
        inside = [a for a in addresses if internal_address(a)]
        if inside:
            return (
                f"the host {host} resolves to an internal address ({inside[0]}): refused (server-side request forgery)"
            )
        return None

    return refuse


def outbound_url_problem(url: str, *, what: str, setting: str, internal: str) -> str | None:
    """Why a worker must not send to ``url``, or None: https to public addresses only (every address
    the host resolves to), unless the host is in ``allowed_hosts(setting)``. ``what`` names the URL
    in messages ("the base URL"); ``internal`` is the message for a host that resolves inside."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return f"{what} is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return f"{what} must be an https:// URL"
    if parts.username or parts.password:
        return f"{what} must not carry credentials"
    if host in allowed_hosts(setting):
        return None
    if parts.scheme != "https":
        return f"{what} must use https ({host} is not in {setting})"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return f"the host {host} does not resolve"
    if not addresses or any(internal_address(str(a)) for a in addresses):
        return internal.format(host=host)
    return None
