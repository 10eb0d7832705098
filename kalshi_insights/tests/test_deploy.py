"""The deployment files users run and we cannot (no Docker engine here): keep them consistent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_it_runs_every_process_from_one_image():
    services = compose()["services"]
    assert set(services) == {"db", "redis", "web", "beat", "poller", "worker"}
    django = [services[name] for name in ("web", "beat", "poller", "worker")]
    assert {s["image"] for s in django} == {"kalshi-insights"}
    assert all(s["build"] == "." for s in django)
    for service in django:
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert set(service["depends_on"]) == {"db", "redis"}


def test_its_commands_are_the_ones_the_readme_describes():
    services = compose()["services"]
    assert "manage.py migrate" in services["web"]["command"]
    assert "gunicorn kalshi_insights.wsgi" in services["web"]["command"]
    assert services["beat"]["command"].startswith("celery -A kalshi_insights beat")
    # The poller is one process on its own queue, so poll cycles never wait behind a backtest.
    assert "-Q polling -c 1" in services["poller"]["command"]
    assert "-Q default" in services["worker"]["command"]
    assert (ROOT / "Dockerfile").read_text().count("collectstatic") == 1


def test_production_settings_pass_djangos_deploy_check_but_for_tls_choices():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "a-long-random-value-for-this-test-only-0123456789abcdefghijklmnop",
        "ALLOWED_HOSTS": "example.com",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "System check identified" in result.stdout + result.stderr, result.stderr
    # Only the TLS-at-the-proxy choices may warn: HSTS and the HTTPS redirect are the operator's.
    warnings = set(re.findall(r"\((security\.\w+)\)", result.stderr))
    assert warnings <= {"security.W004", "security.W008"}, result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "", "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
