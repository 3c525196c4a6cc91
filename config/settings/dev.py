"""Local development: debug on, everything else from base."""

from .base import *  # noqa: F403

DEBUG = True
