"""Settings for Kalshi Insights, all driven by environment variables.

Defaults let `runserver`, the poller and `pytest` run with no environment at all: SQLite in `var/`,
DEBUG on, Kalshi's public production API. Production sets SECRET_KEY, DEBUG=False, DATABASE_URL and
CELERY_BROKER_URL and runs `manage.py check --deploy`. A `.env` file in the project root is read too
(see `.env.example`); real environment variables win over it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

# Lets classes such as ModelAdmin[Market] and ModelSerializer[Market] be subscripted at runtime.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("KALSHI_INSIGHTS_VAR_DIR", BASE_DIR / "var"))

load_dotenv(BASE_DIR / ".env", override=False)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false.")


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
    return number


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
    return number


def env_secret(name: str, default: str | None = None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, default)


DEBUG = env_bool("DEBUG", True)

_secret_key = env_secret("SECRET_KEY")
if not _secret_key:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is false.")
    _secret_key = "django-insecure-local-development-only"
SECRET_KEY = _secret_key

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "markets",
    "backtests",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "kalshi_insights.urls"
WSGI_APPLICATION = "kalshi_insights.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# https://github.com/jazzband/dj-database-url
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The poller writes while the web process reads: WAL lets them overlap, and a busy timeout
    # turns momentary lock contention into a short wait instead of "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with psycopg's compiled timestamptz loader (see its docstring).
        DATABASES["default"]["ENGINE"] = "kalshi_insights.db.postgresql"
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Everything is stored and computed in UTC; Kalshi's timestamps are UTC too.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise serves straight from the app/static folders in development, and warns if the
# collectstatic target is missing.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
with contextlib.suppress(OSError):  # a read-only image has collected them at build time
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Redis, cache and Celery ----------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Redis also carries the shared Kalshi rate limit and the poll lock. Without it (the embedded
# default) both fall back to per-machine equivalents: an in-process bucket and a file lock.
REDIS_URL: str | None = (
    env_str("REDIS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
    or None
)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "kalshi_insights",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Kombu's file-system transport lets `./dev run` schedule and poll with no server at all.
    _queue_dir = VAR_DIR / "celery-broker"
    (_queue_dir / "out").mkdir(parents=True, exist_ok=True)
    (_queue_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        # Exchange-to-queue bindings; kombu's default is ./control in whatever directory the
        # process started from.
        "control_folder": str(_queue_dir / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 25 * 60, minimum=5)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_ROUTES = {
    "markets.tasks.poll_markets": {"queue": "polling"},
}

# --- Kalshi ---------------------------------------------------------------------------------------
# https://docs.kalshi.com/getting_started/api_environments
KALSHI_API_BASE = env_str("KALSHI_API_BASE", "https://external-api.kalshi.com/trade-api/v2").rstrip("/")
if not KALSHI_API_BASE.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"KALSHI_API_BASE={KALSHI_API_BASE!r} must be an http(s) URL, "
        "e.g. https://external-api.kalshi.com/trade-api/v2"
    )
# Kalshi's CDN caches /markets for 15 s, so polling faster only re-reads the same page.
KALSHI_POLL_INTERVAL = env_float("KALSHI_POLL_INTERVAL", 15.0, minimum=1.0)
# The basic tier allows ~20 reads/s; the bucket is shared by every process through Redis.
KALSHI_RATE_LIMIT = env_float("KALSHI_RATE_LIMIT", 20.0, minimum=0.1)
KALSHI_RATE_BURST = env_float("KALSHI_RATE_BURST", 1.0, minimum=1.0)
KALSHI_TIMEOUT = env_float("KALSHI_TIMEOUT", 15.0, minimum=0.1)
KALSHI_MAX_RETRIES = env_int("KALSHI_MAX_RETRIES", 5, minimum=0)
# A snapshot is written when the quote changes, and at least this often (seconds) while unchanged,
# so charts and gap detection can tell "quiet market" from "poller down".
KALSHI_SNAPSHOT_HEARTBEAT = env_int("KALSHI_SNAPSHOT_HEARTBEAT", 3600, minimum=0)
KALSHI_STORE_RAW_SNAPSHOTS = env_bool("KALSHI_STORE_RAW_SNAPSHOTS", False)
KALSHI_POLL_LOCK_TIMEOUT = env_int("KALSHI_POLL_LOCK_TIMEOUT", 10 * 60, minimum=10)
# The market table's HTML is shared by every viewer and only changes when a poll stores a page:
# it is cached (keyed by the newest poll cycle and its page count) for at most this many
# seconds, which bounds how old its "closes in" / "as of" texts can get. 0 turns it off.
KALSHI_PAGE_CACHE_SECONDS = env_float("KALSHI_PAGE_CACHE_SECONDS", 5.0, minimum=0.0)

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "poll-markets": {
        "task": "markets.tasks.poll_markets",
        "schedule": KALSHI_POLL_INTERVAL,
        # A missed tick is worthless once the next one is due.
        "options": {"queue": "polling", "expires": KALSHI_POLL_INTERVAL},
    },
}

# --- History: settlements, series fees, backfills (markets/settlement.py, reference.py, backfill.py)
# How often the settlement sweep runs (seconds), how far back its first run looks (hours), how
# many markets awaiting a result it may re-read by ticker per run, and how soon it re-reads one.
KALSHI_SETTLEMENT_SWEEP_INTERVAL = env_int("KALSHI_SETTLEMENT_SWEEP_INTERVAL", 5 * 60, minimum=30)
KALSHI_SETTLEMENT_LOOKBACK_HOURS = env_int("KALSHI_SETTLEMENT_LOOKBACK_HOURS", 48, minimum=1)
KALSHI_SETTLEMENT_REREAD_LIMIT = env_int("KALSHI_SETTLEMENT_REREAD_LIMIT", 2000, minimum=0)
KALSHI_SETTLEMENT_RECHECK_INTERVAL = env_int("KALSHI_SETTLEMENT_RECHECK_INTERVAL", 30 * 60, minimum=60)
# Fee fields change rarely and without notice; the whole series list is one request.
KALSHI_SERIES_REFRESH_INTERVAL = env_int("KALSHI_SERIES_REFRESH_INTERVAL", 6 * 3600, minimum=300)
# A backfill triggered from the web or admin may run for hours; it stops cleanly at the soft limit
# and the next run continues where it stopped.
KALSHI_BACKFILL_TIME_LIMIT = env_int("KALSHI_BACKFILL_TIME_LIMIT", 6 * 3600, minimum=60)

CELERY_BEAT_SCHEDULE["sweep-settlements"] = {
    "task": "markets.tasks.sweep_settlements",
    "schedule": KALSHI_SETTLEMENT_SWEEP_INTERVAL,
    "options": {"queue": "default", "expires": KALSHI_SETTLEMENT_SWEEP_INTERVAL},
}
CELERY_BEAT_SCHEDULE["refresh-series"] = {
    "task": "markets.tasks.refresh_series",
    "schedule": KALSHI_SERIES_REFRESH_INTERVAL,
    "options": {"queue": "default", "expires": KALSHI_SERIES_REFRESH_INTERVAL},
}
CELERY_TASK_ROUTES.update(
    {
        "markets.tasks.sweep_settlements": {"queue": "default"},
        "markets.tasks.refresh_series": {"queue": "default"},
        "markets.tasks.backfill_markets": {"queue": "default"},
    }
)

# --- DRF ------------------------------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Kalshi Insights API",
    "DESCRIPTION": "Markets, snapshots and backtests collected from Kalshi's public market data.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- API (markets/api, mounted at /api/v1/) --------------------------------------------------------
# Anonymous clients may read; writing needs a session or a token (IsAuthenticatedOrReadOnly above).
_RATE = r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$"


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as `120/minute`; `off` disables that throttle."""
    value = env_str(name, default).strip()
    if value.lower() in {"off", "none", ""}:
        return None
    if not re.match(_RATE, value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; use e.g. 120/minute, 10/second or off.")
    return value


REST_FRAMEWORK.update(
    {
        "DEFAULT_RENDERER_CLASSES": [
            "markets.api.renderers.JSONRenderer",
            "rest_framework.renderers.BrowsableAPIRenderer",
        ],
        "DEFAULT_CONTENT_NEGOTIATION_CLASS": "markets.api.exceptions.ContentNegotiation",
        "DEFAULT_PAGINATION_CLASS": "markets.api.pagination.PageNumberPagination",
        "PAGE_SIZE": 100,
        "DEFAULT_THROTTLE_CLASSES": [
            "markets.api.throttling.AnonRateThrottle",
            "markets.api.throttling.UserRateThrottle",
        ],
        # https://www.django-rest-framework.org/api-guide/throttling/ (counted in the default cache)
        "DEFAULT_THROTTLE_RATES": {
            "anon": env_rate("API_THROTTLE_ANON", "120/minute"),
            "user": env_rate("API_THROTTLE_USER", "1200/minute"),
        },
        "EXCEPTION_HANDLER": "markets.api.exceptions.exception_handler",
    }
)
# Seconds a paginated list's total `count` may be reused by a web process for the same filtered
# query. Off (0) by default: `count` then follows every write, as the first poll cycle's progress
# shows. COUNT(*) reads every matching row, 3.5 ms of database CPU on 50,000 markets, more than
# the rest of a 100-row page; a busy deployment that can let `count` lag new or removed rows by a
# few seconds may turn this on.
API_COUNT_CACHE_SECONDS = env_float("API_COUNT_CACHE_SECONDS", 0.0, minimum=0)
SPECTACULAR_SETTINGS.update(
    {
        # Tags come from the first path segment after /api/v1/ (markets, events, ...).
        "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
        "COMPONENT_SPLIT_REQUEST": True,
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "markets.api.schema.add_error_responses",
        ],
    }
)

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_CONTENT_TYPE_NOSNIFF = True
