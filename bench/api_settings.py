"""Settings for the API benchmark's gunicorn: the project's, in production mode, plus a baseline URL."""

from __future__ import annotations

import os
from pathlib import Path

# Production mode is decided when the project's settings are imported.
os.environ["DEBUG"] = "false"
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
# The benchmark's single client would hit any real rate limit within a second.
os.environ["API_THROTTLE_ANON"] = "off"
os.environ["API_THROTTLE_USER"] = "off"

from kalshi_insights.settings import *  # noqa: E402, F403

ROOT_URLCONF = "bench.api_urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# WhiteNoise warns on every worker start when STATIC_ROOT does not exist; the API serves no files.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # noqa: F405
