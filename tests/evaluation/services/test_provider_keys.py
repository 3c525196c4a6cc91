"""Provider key base URLs: https to public hosts only, unless the host is in JUDGE_ALLOWED_HOSTS
(a local Ollama); internal addresses (metadata service, private ranges, loopback) are refused."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from evaluation.models import ProviderKey
from evaluation.services.provider_keys import base_url_problem, provider_key_create
from evaluation.services.shared import JudgeServiceError
from tests.fixtures.organizations import in_tenant

RESOLVES = {
    "api.example.com": "93.184.215.14",
    "metadata.example.com": "169.254.169.254",
    "intranet.example.com": "10.1.2.3",
    "localhost": "127.0.0.1",
    "v6.example.com": "::1",
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.JUDGE_ALLOWED_HOSTS = ["127.0.0.1", "ollama.internal"]

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            address = RESOLVES.get(host) or str(__import__("ipaddress").ip_address(host))
        except ValueError:
            raise socket.gaierror(f"unknown host {host}") from None
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v1", None),
        ("https://93.184.215.14/v1", None),
        ("http://127.0.0.1:8000/v1", None),  # allowed host: plain http is fine
        ("http://ollama.internal:11434/v1", None),
        ("http://api.example.com/v1", "must use https"),
        ("https://169.254.169.254/latest/meta-data", "internal address"),
        ("http://169.254.169.254/latest/meta-data", "must use https"),
        ("https://metadata.example.com/v1", "internal address"),
        ("https://intranet.example.com/v1", "internal address"),
        ("https://10.0.0.5/v1", "internal address"),
        ("https://192.168.1.1/v1", "internal address"),
        ("https://localhost/v1", "internal address"),
        ("https://v6.example.com/v1", "internal address"),
        ("https://[::ffff:127.0.0.1]/v1", "internal address"),
        ("https://0.0.0.0/v1", "internal address"),
        ("https://nowhere.example.com/v1", "does not resolve"),
        ("https://user:pw@api.example.com/v1", "credentials"),
        ("ftp://api.example.com/v1", "must be an https:// URL"),
        ("https:///v1", "must be an https:// URL"),
    ],
)
def test_base_url_rules(url: str, expected: str | None) -> None:
    problem = base_url_problem(url)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_the_allow_list_comes_from_settings(settings: Any) -> None:
    settings.JUDGE_ALLOWED_HOSTS = []
    assert "must use https" in (base_url_problem("http://127.0.0.1:8000/v1") or "")
    assert "internal address" in (base_url_problem("https://127.0.0.1/v1") or "")


def test_an_internal_base_url_is_refused_on_save(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        with pytest.raises(JudgeServiceError) as caught:
            provider_key_create(
                provider="openai", name="meta", secret="sk-test-0123456789abcdef", base_url="https://169.254.169.254/"
            )
        assert caught.value.field == "base_url" and "internal address" in str(caught.value)
        assert not ProviderKey.objects.filter(name="meta").exists()
        key = provider_key_create(provider="openai", name="default", secret="sk-test-0123456789abcdef", base_url="")
        assert key.base_url == "https://api.openai.com/v1"
        local = provider_key_create(
            provider="openai", name="local", secret="sk-test-0123456789abcdef", base_url=" http://127.0.0.1:11434/v1 "
        )
        assert local.base_url == "http://127.0.0.1:11434/v1"
