"""Production: the database and the secret key must come from the environment, never a default."""

import os

from django.core.exceptions import ImproperlyConfigured

# Checked before base loads, so the message names every missing variable at once.
_missing = [name for name in ("DATABASE_URL", "DJANGO_SECRET_KEY") if not os.environ.get(name)]
if _missing:
    raise ImproperlyConfigured(
        f"config.settings.prod needs {' and '.join(_missing)} in the environment "
        "(production never starts the embedded PostgreSQL nor uses the development secret key)."
    )

from .base import *  # noqa: E402, F403

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Behind a TLS-terminating proxy: trust its header to know the request was HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Provider keys at rest: no key derived from the secret key here; saving or using a provider key
# fails with a clear message until JUDGE_KEYRING is set (evaluation.services.provider_keys).
JUDGE_KEYRING = os.environ.get("JUDGE_KEYRING", "")
