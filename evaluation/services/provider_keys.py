"""Provider keys per organization: encrypted at rest with the keyring, never shown back (a hint only)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from evaluation.judges.providers import ProviderConfig
from evaluation.judges.secrets import KeyRingError, SecretStr
from evaluation.models import Judge, ProviderKey
from evaluation.services import outbound
from evaluation.services.shared import JudgeServiceError, keyring

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


def allowed_hosts() -> set[str]:
    """Hosts a base URL may name over plain http or at an internal address (a local Ollama or
    vLLM): settings.JUDGE_ALLOWED_HOSTS, else the JUDGE_ALLOWED_HOSTS environment variable."""
    return outbound.allowed_hosts("JUDGE_ALLOWED_HOSTS")


def base_url_problem(base_url: str) -> str | None:
    """Why the worker must not POST judge calls (with the key) to this URL, or None.

    https only, to a public address; plain http or an internal address (loopback, private,
    link-local such as 169.254.169.254) only for a host in ``allowed_hosts()``."""
    return outbound.outbound_url_problem(
        base_url,
        what="the base URL",
        setting="JUDGE_ALLOWED_HOSTS",
        internal="the host {host} resolves to an internal address; only public endpoints are allowed",
    )


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
