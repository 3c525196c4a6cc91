"""Provider keys at rest: MultiFernet with rotation; plaintext never printed."""

from __future__ import annotations

import logging
import pickle

import pytest
from cryptography.fernet import Fernet

from evaluation.judges.providers import ProviderConfig
from evaluation.judges.secrets import KeyRing, KeyRingError, SecretStr

PLAINTEXT = "sk-live-abcdefghijklmnopqrstuvwxyz0123"


def test_encrypt_decrypt_round_trip_and_tokens_differ() -> None:
    ring = KeyRing.from_env(KeyRing.generate_key())
    first, second = ring.encrypt(PLAINTEXT), ring.encrypt(SecretStr(PLAINTEXT))
    assert first != second and PLAINTEXT not in first
    assert ring.decrypt(first).reveal() == PLAINTEXT == ring.decrypt(second).reveal()


def test_rotation_moves_tokens_to_the_new_primary_key() -> None:
    old_key, new_key = KeyRing.generate_key(), KeyRing.generate_key()
    old_ring = KeyRing.from_env(old_key)
    token = old_ring.encrypt(PLAINTEXT)
    rotating = KeyRing.from_env(f"{new_key}, {old_key}")  # new first, old kept to read
    assert rotating.decrypt(token).reveal() == PLAINTEXT
    rotated = rotating.rotate(token)
    assert Fernet(new_key.encode()).decrypt(rotated.encode()).decode() == PLAINTEXT
    new_only = KeyRing.from_env(new_key)  # old key dropped after rotation
    assert new_only.decrypt(rotated).reveal() == PLAINTEXT
    with pytest.raises(KeyRingError, match="does not decrypt"):
        new_only.decrypt(token)


def test_bad_keyrings_are_refused_without_echoing_the_key() -> None:
    with pytest.raises(KeyRingError, match="empty"):
        KeyRing.from_env(" , ")
    with pytest.raises(KeyRingError) as caught:
        KeyRing.from_env(f"{KeyRing.generate_key()},not-a-real-key-material")
    assert "entry 2" in str(caught.value) and "not-a-real" not in str(caught.value)


def test_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    secret = SecretStr(PLAINTEXT)
    config = ProviderConfig(provider="openai", base_url="http://x/v1", api_key=secret)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r %s", config, config, f"{secret}")
    shown = caplog.text + repr(config) + str(secret) + repr([secret])
    assert PLAINTEXT not in shown and "********" in shown
    assert secret.hint() == "…0123"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret == SecretStr(PLAINTEXT) and secret != SecretStr("other")
