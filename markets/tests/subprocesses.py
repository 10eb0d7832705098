"""Helpers for tests that run the project's commands as separate processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def test_database_url() -> str:
    """pytest-django's test database, as a DATABASE_URL for another process."""
    s = connection.settings_dict
    credentials = quote(s["USER"] or "")
    if s["PASSWORD"]:
        credentials += ":" + quote(s["PASSWORD"])
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]  # a helper, despite its name


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def manage(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run `python manage.py ARGS` with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
