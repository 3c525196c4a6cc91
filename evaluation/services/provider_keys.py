"""Provider keys per organization: encrypted at rest with the keyring, never shown back (a hint only)."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from evaluation.judges.providers import ProviderConfig
from evaluation.judges.secrets import KeyRingError, SecretStr
from evaluation.models import Judge, ProviderKey
from evaluation.services.shared import JudgeServiceError, keyring

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


def allowed_hosts() -> set[str]:
    """Hosts a base URL may name over plain http or at an internal address (a local Ollama or
    vLLM): settings.JUDGE_ALLOWED_HOSTS, else the JUDGE_ALLOWED_HOSTS environment variable (comma-separated)."""
    configured = getattr(settings, "JUDGE_ALLOWED_HOSTS", None)
    if configured is None:
        configured = os.environ.get("JUDGE_ALLOWED_HOSTS", "").split(",")
    return {h.strip().lower().strip("[]") for h in configured if h.strip()}


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def base_url_problem(base_url: str) -> str | None:
    """Why the worker must not POST judge calls (with the key) to this URL, or None.

    https only, to a public address; plain http or an internal address (loopback, private,
    link-local such as 169.254.169.254) only for a host in ``allowed_hosts()``."""
    try:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return "the base URL is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "the base URL must be an https:// URL"
    if parts.username or parts.password:
        return "the base URL must not carry credentials"
    if host in allowed_hosts():
        return None
    if parts.scheme != "https":
        return f"the base URL must use https ({host} is not in JUDGE_ALLOWED_HOSTS)"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return f"the host {host} does not resolve"
    if not addresses or any(_internal(str(a)) for a in addresses):
        return f"the host {host} resolves to an internal address; only public endpoints are allowed"
    return None


def provider_key_create(
    *, provider: str, name: str, secret: str, base_url: str = "", azure_api_version: str = "", created_by: str = ""
) -> ProviderKey:
    if provider not in DEFAULT_BASE_URLS:
        raise JudgeServiceError(f"unknown provider {provider!r}; expected openai or anthropic", field="provider")
    if not name.strip():
        raise JudgeServiceError("name the key, e.g. production", field="name")
    base_url = base_url.strip()
    if base_url:
        problem = base_url_problem(base_url)
        if problem:
            raise JudgeServiceError(problem, field="base_url")
    value = SecretStr(secret.strip())
    try:
        token = keyring().encrypt(value)
    except KeyRingError as exc:
        raise JudgeServiceError(str(exc)) from None
    try:
        with transaction.atomic():
            return ProviderKey.objects.create(
                provider=provider, name=name.strip(), base_url=(base_url or DEFAULT_BASE_URLS[provider]),
                azure_api_version=azure_api_version.strip(), secret_encrypted=token, hint=value.hint(),
                created_by=created_by,
            )  # fmt: skip
    except IntegrityError:
        raise JudgeServiceError(f"a {provider} key named {name.strip()!r} exists already", field="name") from None


def provider_key_delete(*, key: ProviderKey) -> None:
    key.delete()


def provider_key_for(judge: Judge, provider: str) -> ProviderKey | None:
    """The judge's own key when it names one for this provider, else the organization's newest."""
    if judge.provider_key_id is not None and judge.provider_key is not None and judge.provider_key.provider == provider:
        return judge.provider_key
    return ProviderKey.objects.filter(provider=provider).order_by("-created_at", "-id").first()


def provider_config(key: ProviderKey, *, timeout_s: float, max_retries: int, max_connections: int) -> ProviderConfig:
    """The engine's connection for a stored key (the secret decrypted into a SecretStr)."""
    return ProviderConfig(
        provider=key.provider,  # type: ignore[arg-type]
        base_url=key.base_url,
        api_key=keyring().decrypt(key.secret_encrypted),
        timeout_s=timeout_s,
        max_retries=max_retries,
        azure_api_version=key.azure_api_version or None,
        max_connections=max_connections,
    )
