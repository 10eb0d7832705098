"""`manage.py pollmarkets` as a user runs it, in a subprocess: one clear message naming the
setting to fix, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from markets.fakeexchange import RunningExchange, serve
from markets.models import Market, MarketSnapshot, PollOutcome, PollRun
from markets.tests.subprocesses import closed_port, manage, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningExchange]:
    with serve(seed=31) as running:
        yield running


@pytest.fixture
def env(fake: RunningExchange) -> dict[str, str]:
    return {"DATABASE_URL": test_database_url(), "KALSHI_API_BASE": fake.base_url, "KALSHI_MAX_RETRIES": "1"}


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [
        line
        for line in result.stderr.splitlines()
        if line.startswith(("CommandError:", "Configuration error:"))
    ]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


def test_it_polls_once_and_summarises(env, fake):
    open_markets = sum(1 for m in fake.exchange.markets.values() if m.status == "active" and not m.is_combo)

    result = manage("pollmarkets", "--once", env=env)

    assert result.returncode == 0, result.stderr
    assert (
        f"ok: 1 pages, {open_markets} markets, {open_markets} snapshots written, 0 unchanged" in result.stdout
    )
    assert Market.objects.count() == MarketSnapshot.objects.count() == open_markets
    assert PollRun.objects.get().trigger == "command"


def test_unreachable_kalshi_names_kalshi_api_base(env):
    base = f"http://127.0.0.1:{closed_port()}/trade-api/v2"

    result = manage("pollmarkets", "--once", env={**env, "KALSHI_API_BASE": base})

    assert_one_clear_error(result, "could not connect", f"Check KALSHI_API_BASE ({base})")
    run = PollRun.objects.get()
    assert (run.outcome, run.pages, run.requests) == (PollOutcome.FAILED, 0, 2)
    assert run.finished_at is not None
    assert not Market.objects.exists()


def test_a_wrong_base_url_says_so(env, fake):
    result = manage("pollmarkets", "--once", env={**env, "KALSHI_API_BASE": fake.root_url})

    assert_one_clear_error(result, "HTTP 404", f"Is KALSHI_API_BASE right? It is {fake.root_url}.")
    assert PollRun.objects.get().outcome == PollOutcome.FAILED
    assert not Market.objects.exists()


def test_a_database_that_is_down_names_database_url(env):
    result = manage(
        "pollmarkets",
        "--once",
        env={**env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/x"},
    )

    assert_one_clear_error(result, "The database is unreachable", "Check DATABASE_URL")
    assert not PollRun.objects.exists()


def test_an_unmigrated_database_says_to_migrate(env, tmp_path):
    sqlite = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
    }

    result = manage("pollmarkets", "--once", env={**env, **sqlite})

    assert_one_clear_error(result, "no Kalshi Insights tables", "python manage.py migrate")


def test_redis_that_is_down_names_redis_url(env):
    result = manage("pollmarkets", "--once", env={**env, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})

    assert_one_clear_error(result, "Redis at REDIS_URL", "is unreachable")
    assert not PollRun.objects.exists()


def test_an_unknown_option_is_an_argparse_error(env):
    result = manage("pollmarkets", "--bogus", env=env)

    assert result.returncode == 2
    assert "pollmarkets: error: unrecognized arguments: --bogus" in result.stderr
    assert "Traceback" not in result.stderr
    assert not PollRun.objects.exists()


def test_a_non_positive_interval_is_refused(env):
    result = manage("pollmarkets", "--loop", "--interval", "0", env=env)

    assert_one_clear_error(result, "--interval must be a positive number of seconds")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "KALSHI_API_BASE",
            "localhost:8000/trade-api/v2",
            "KALSHI_API_BASE='localhost:8000/trade-api/v2' must be an http(s) URL",
        ),
        ("KALSHI_POLL_INTERVAL", "fifteen", "KALSHI_POLL_INTERVAL='fifteen' is not a number."),
        ("KALSHI_POLL_INTERVAL", "0.2", "KALSHI_POLL_INTERVAL='0.2' must be at least 1.0."),
        ("KALSHI_MAX_RETRIES", "2.5", "KALSHI_MAX_RETRIES='2.5' is not a whole number."),
    ],
)
def test_a_bad_setting_is_one_configuration_error(env, variable, value, message):
    result = manage("pollmarkets", "--once", env={**env, variable: value})

    assert_one_clear_error(result, message)
    assert not PollRun.objects.exists()


def test_the_loop_survives_failing_cycles_and_stops_on_sigterm(env):
    base = f"http://127.0.0.1:{closed_port()}/trade-api/v2"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "pollmarkets", "--loop", "--interval", "1"],
        cwd=Path(settings.BASE_DIR),
        env={**os.environ, **env, "KALSHI_API_BASE": base, "KALSHI_MAX_RETRIES": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while PollRun.objects.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert "Stopped." in out
    assert "Traceback" not in err
    failures = [line for line in err.splitlines() if line.startswith("Poll cycle failed:")]
    assert len(failures) >= 3 and all(f"Check KALSHI_API_BASE ({base})" in line for line in failures)
    assert set(PollRun.objects.values_list("outcome", flat=True)) == {PollOutcome.FAILED}
