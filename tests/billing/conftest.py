"""Fixtures for billing's tests (the root conftest stays untouched): the fake Stripe server, and
settings that point the real `stripe` library at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.fake_stripe import FakeStripe, running_fake_stripe

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
PRICES = {"team": "price_team_fake", "business": "price_business_fake"}


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    yield from running_fake_stripe()


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripe, settings: Any) -> Iterator[FakeStripe]:
    """The session's fake Stripe, emptied per test, with Candor configured to use it."""
    fake_stripe_server.reset()
    settings.STRIPE_SECRET_KEY = "sk_test_fake_0123456789"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake_stripe_server.url
    settings.STRIPE_PRICES = PRICES
    yield fake_stripe_server
    fake_stripe_server.reset()
