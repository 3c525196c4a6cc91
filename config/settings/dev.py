"""Local development: debug on, everything else from base."""

import os

from .base import *  # noqa: F403

# On unless DJANGO_DEBUG says otherwise: the benchmarks serve with it off, as production does
# (debug mode wraps every cursor to record its queries).
DEBUG = env_bool("DJANGO_DEBUG", True)  # noqa: F405
# A local Ollama / vLLM over plain http (base URLs elsewhere must be https to public hosts).
JUDGE_ALLOWED_HOSTS = [h for h in os.environ.get("JUDGE_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
# Alert webhooks to a local receiver; emails (alerts, the weekly digest) written to .var/mail/.
ALERT_WEBHOOK_ALLOWED_HOSTS = [
    h for h in os.environ.get("ALERT_WEBHOOK_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h
]
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(BASE_DIR / ".var" / "mail"))  # noqa: F405
