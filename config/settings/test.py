"""Test settings: fast hashing; the database is the same real PostgreSQL as dev."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The live server tests fire many requests from one key; keep rate limits out of their way.
API_RATE_LIMIT_PER_SECOND = 100000.0
API_RATE_LIMIT_BURST = 100000
