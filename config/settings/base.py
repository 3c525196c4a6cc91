"""Settings shared by every environment; everything that varies comes from the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    return env(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


SECRET_KEY = env("DJANGO_SECRET_KEY", "dev-insecure-change-me-in-production-0123456789abcdef")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,.localhost,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- Database -------------------------------------------------------------------------
# Read, never started here: manage.py, config/serve.py, the Celery app and the test session
# start the embedded PostgreSQL (config.embedded_db) and set DATABASE_URL before Django loads this.
DATABASE_URL = env("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Run Candor through manage.py, make or bin/run-demo (they start the "
        "embedded PostgreSQL and set it), or set DATABASE_URL to a PostgreSQL URL."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
# Statements run through psycopg's own cursors (ingestion's raw cursor binds server-side) are prepared
# from their fifth run on a connection: PostgreSQL then neither parses nor plans them again. An OTLP
# export runs ~30 statements, most of them every time: 16% of PostgreSQL's CPU per span went to that
# (19.4 -> 16.3 us in one process). Django's own cursors bind client-side and never prepare. A migration that
# changes the type of a column such a statement returns fails it ("cached plan must not change result type") on
# connections older than the migration, until they close (CONN_MAX_AGE, 60 s): restart web and workers after one.
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

# --- Apps: public schema (shared) and per-organization schema (tenant) -----------------
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    # Public schema only: every billing table is keyed by organization (plans, ledger, budgets).
    "billing",
]
TENANT_APPS = [
    "feedback",
    "evaluation",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Organization"
TENANT_DOMAIN_MODEL = "tenants.Domain"
# A new organization's schema is created by running the tenant migrations: measured at
# 0.23 s, faster than django-tenants' clone_schema (1.2 s) at this size. Revisit when it grows.
# Guard against code that flips the schema in the middle of a request.
TENANT_LIMIT_SET_CALLS = True
PUBLIC_SCHEMA_NAME = "public"

AUTH_USER_MODEL = "tenants.User"
LOGIN_URL = "tenants:login"
LOGIN_REDIRECT_URL = "tenants:portal-home"
LOGOUT_REDIRECT_URL = "tenants:login"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Widget events and the budget check, served before everything they do not need.
    "tenants.hotpath.HotPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tenants.middleware.PublicSchemaMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.HtmxVaryMiddleware",
    "tenants.middleware.OrganizationMiddleware",
]

ROOT_URLCONF = "config.urls"
PUBLIC_SCHEMA_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.organization",
                "billing.context_processors.billing_banner",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on a missing root; files come from the finders
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve straight from static/ in every environment: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = env_bool("WHITENOISE_AUTOREFRESH", False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: tenant-aware keys so one organization never reads another's entry ----------
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.SecretKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.authentication.HasOrganizationKey"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.api.throttling.KeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "tenants.api.errors.exception_handler",
    # drf-spectacular's, minus base classes' docstrings as operation descriptions.
    "DEFAULT_SCHEMA_CLASS": "tenants.api.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Candor API",
    "DESCRIPTION": "Capture feedback on AI outputs, tie it to traces and prompt versions, report success.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: JSON Schema 2020-12, which the write bodies are generated in (from the msgspec types).
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tenants.api.openapi.postprocess",
        "billing.api.openapi.postprocess",
    ],
    # Fields called "status" hold different choice sets: each gets a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "ScoreStatusEnum": ["pending", "running", "ok", "error"],
        "ExperimentStatusEnum": ["running", "stopped"],
        "GuardrailStatusEnum": ["ok", "breached", "waiting", "not_applicable"],
        "JudgeScaleEnum": ["binary", "ordinal", "continuous"],
        "RubricScaleEnum": ["binary", "ordinal", "continuous", "categorical", "free_text"],
    },
}
# Index migrations build CONCURRENTLY (writes go on) on tables at least this large (tenants/online_ddl.py).
INDEX_CONCURRENTLY_FROM_BYTES = int(env("CANDOR_INDEX_CONCURRENTLY_FROM_BYTES", str(8 * 1024 * 1024)))
# Per-key request budget for the API (requests per second, burst allowance), one budget per
# key across every web process and machine (tenants.ratelimit).
API_RATE_LIMIT_PER_SECOND = float(env("CANDOR_API_RATE_PER_SECOND", "50"))
API_RATE_LIMIT_BURST = int(env("CANDOR_API_RATE_BURST", "200"))
# The budget check (called before every LLM request) has a budget of its own per web process:
# it never spends the key's shared API budget above (tenants.ratelimit.key_check_rate_wait).
BUDGET_CHECK_RATE_PER_SECOND = float(env("CANDOR_BUDGET_CHECK_RATE_PER_SECOND", "2000"))
BUDGET_CHECK_RATE_BURST = int(env("CANDOR_BUDGET_CHECK_RATE_BURST", "4000"))
if BUDGET_CHECK_RATE_PER_SECOND <= 0 or BUDGET_CHECK_RATE_BURST < 1:
    raise ImproperlyConfigured(
        "CANDOR_BUDGET_CHECK_RATE_PER_SECOND must be above 0 and CANDOR_BUDGET_CHECK_RATE_BURST at least 1."
    )
if API_RATE_LIMIT_PER_SECOND <= 0 or API_RATE_LIMIT_BURST < 1:
    raise ImproperlyConfigured("CANDOR_API_RATE_PER_SECOND must be above 0 and CANDOR_API_RATE_BURST at least 1.")
API_MAX_BODY_BYTES = 5 * 1024 * 1024
# PostgreSQL's work_mem for the reports that aggregate raw traces (drift): their sorts and hashes spill
# to disk past it. Per query node and connection: raise it with care on a small database server.
REPORT_WORK_MEM = env("CANDOR_REPORT_WORK_MEM", "64MB")
if not re.fullmatch(r"[1-9][0-9]{0,6}(kB|MB|GB)", REPORT_WORK_MEM):
    raise ImproperlyConfigured("CANDOR_REPORT_WORK_MEM must be a size such as 64MB (kB, MB or GB).")
# GenAI messages of OTLP log events wait this long for their trace's spans, then a daily sweep deletes
# them (feedback.services.otlp_logs.genai_messages_prune; a trace keeps the text it took from them).
_retention = env("CANDOR_GENAI_MESSAGE_RETENTION_DAYS", "7")
if not _retention.isdigit() or int(_retention) < 1:
    raise ImproperlyConfigured("CANDOR_GENAI_MESSAGE_RETENTION_DAYS must be a whole number of days, at least 1.")
GENAI_MESSAGE_RETENTION_DAYS = int(_retention)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES + 1024 * 1024


# --- Celery ---------------------------------------------------------------------------
# Broker defaults to the same PostgreSQL (kombu's SQLAlchemy transport): one process less.
def _sqlalchemy_broker_url(database_url: str) -> str:
    parsed = dj_database_url.parse(database_url)
    auth = quote(parsed["USER"] or "")
    if parsed.get("PASSWORD"):
        auth += ":" + quote(parsed["PASSWORD"])
    host = parsed.get("HOST") or ""
    port = f":{parsed['PORT']}" if parsed.get("PORT") else ""
    if host.startswith("/"):
        return f"sqla+postgresql+psycopg://{auth}@/{parsed['NAME']}?host={quote(host)}"
    return f"sqla+postgresql+psycopg://{auth}@{host}{port}/{parsed['NAME']}"


CELERY_BROKER_URL = env("CELERY_BROKER_URL") or _sqlalchemy_broker_url(DATABASE_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or None
# Where the rate-limit budgets live: "" is this database (an UNLOGGED table); a Redis URL (or,
# when CANDOR_RATE_LIMIT_URL is unset, a Redis broker) moves that write per request off it;
# CANDOR_RATE_LIMIT_URL=database keeps them in the database next to a Redis broker.
_rate_limit_url = env("CANDOR_RATE_LIMIT_URL") or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
RATE_LIMIT_URL = "" if _rate_limit_url == "database" else _rate_limit_url
if RATE_LIMIT_URL and not RATE_LIMIT_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"CANDOR_RATE_LIMIT_URL starts {RATE_LIMIT_URL.split(':', 1)[0]!r}: use a redis://, rediss:// or "
        "unix:// URL, or 'database'."
    )
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# The queue tasks go to (and workers read); benchmarks use their own so no worker competes.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "celery")
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # Safety net for partitions whose refresh was throttled or lost: every 30 s.
    "rollups-sweep": {"task": "feedback.tasks.rollups_sweep", "schedule": 30.0, "options": {"expires": 25}},
    # Judges: select newly landed traces (after each rule's delay) and run what is queued.
    "judges-sweep": {"task": "evaluation.tasks.judges_sweep", "schedule": 15.0, "options": {"expires": 14}},
    # Calibration: recompute what new labels or scores touched (labels also nudge a sweep at once).
    "calibrations-sweep": {"task": "evaluation.tasks.calibrations_sweep", "schedule": 15.0, "options": {"expires": 14}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "WARNING")},
}

CANDOR_DEMO_HOST_PAGE = env_bool("CANDOR_DEMO_HOST_PAGE", True)


# --- Judges ---------------------------------------------------------------------------
# Fernet keys (comma-separated, first encrypts) for the organizations' provider keys at rest.
# Dev and test derive one from SECRET_KEY so they run with no set-up; prod requires the variable.
def _dev_keyring(secret: str) -> str:
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(b"candor-judge-keyring:" + secret.encode()).digest()).decode()


JUDGE_KEYRING = env("JUDGE_KEYRING") or _dev_keyring(SECRET_KEY)
# Judge calls in flight at once for one organization (provider latency, not CPU, is the limit).
JUDGE_ORG_CONCURRENCY = int(env("JUDGE_ORG_CONCURRENCY", "128"))


# --- Billing (Stripe) -----------------------------------------------------------------
# With no secret key (the demo), the billing pages say so; ledger, caps and budgets still work.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
# Empty: Stripe's own hosts. Tests point the library at their local fake Stripe server.
STRIPE_API_BASE = env("STRIPE_API_BASE")
# The Stripe Price of each paid plan's subscription (billing.plans).
STRIPE_PRICES = {"team": env("STRIPE_PRICE_TEAM"), "business": env("STRIPE_PRICE_BUSINESS")}
# Billing Meter event names, one per metered unit (billing.plans.METERS).
STRIPE_METER_EVENTS = {"events": "candor_events", "judge_runs": "candor_judge_runs"}
# After a failed payment the organization keeps working this long (with a banner), then is suspended.
BILLING_GRACE_DAYS = int(env("BILLING_GRACE_DAYS", "7"))
CELERY_BEAT_SCHEDULE["billing-sweep"] = {
    # Recount the usage ledger, move spend caps, warn on budgets, report usage to Stripe.
    "task": "billing.tasks.billing_sweep",
    "schedule": 60.0,
    "options": {"expires": 55},
}


# --- Experiments, drift, alerts, digest (evaluation.services) -----------------------------------
# Hosts an alert webhook may name at an internal address or over http (a local receiver in dev and
# tests); every other webhook must be https to a public address (server-side request forgery).
ALERT_WEBHOOK_ALLOWED_HOSTS = [h for h in env("ALERT_WEBHOOK_ALLOWED_HOSTS", "").split(",") if h]
# A receiver slower than this is a failed attempt (retried with backoff); the beat never waits on one.
ALERT_WEBHOOK_TIMEOUT_S = float(env("ALERT_WEBHOOK_TIMEOUT_S", "5"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Candor <noreply@candor.localhost>")
# Where PMs reach the portal (e.g. https://candor.example.com): mail sent by the beat (the weekly digest)
# links its features, drift, traces and alerts there. Unset, the mail carries no links (a worker has no
# request to take the host from).
PUBLIC_URL = env("CANDOR_PUBLIC_URL", "").rstrip("/")


def _crontab(**kwargs: str) -> object:
    from celery.schedules import crontab

    return crontab(**kwargs)


CELERY_BEAT_SCHEDULE.update(
    {
        # Alert rules against their baselines, then any due webhook / email deliveries.
        "alerts-sweep": {"task": "evaluation.tasks.alerts_sweep", "schedule": 300.0, "options": {"expires": 290}},
        # Each feature's drift versus its baseline window, kept for the digest and history.
        "drift-daily": {
            "task": "evaluation.tasks.drift_daily",
            "schedule": _crontab(minute="15", hour="3"),
            "options": {"expires": 3600},
        },
        # GenAI log messages past their retention (GENAI_MESSAGE_RETENTION_DAYS), every organization's.
        "genai-messages-prune": {
            "task": "feedback.tasks.genai_messages_prune_sweep",
            "schedule": _crontab(minute="40", hour="2"),
            "options": {"expires": 3600},
        },
        "digest-weekly": {
            "task": "evaluation.tasks.digest_weekly",
            "schedule": _crontab(minute="0", hour="8", day_of_week="mon"),
            "options": {"expires": 3600},
        },
    }
)
