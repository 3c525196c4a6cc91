"""Local development: debug on, everything else from base."""

import os

from .base import *  # noqa: F403

DEBUG = True
# A local Ollama / vLLM over plain http (base URLs elsewhere must be https to public hosts).
JUDGE_ALLOWED_HOSTS = [h for h in os.environ.get("JUDGE_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
