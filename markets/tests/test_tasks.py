"""The Celery tasks run in-process (`Task.apply`): a failed job is a failed task with one clear line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from markets import tasks
from markets.fakeexchange import QueuedFault, RunningExchange, serve
from markets.models import PollOutcome, PollRun
from markets.tests.subprocesses import closed_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings) -> Iterator[RunningExchange]:
    with serve(seed=2) as running:
        settings.KALSHI_API_BASE = running.base_url
        settings.KALSHI_MAX_RETRIES = 1
        yield running


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_cycle_that_succeeds_is_a_successful_task(fake):
    result = tasks.poll_markets.apply()

    assert result.state == "SUCCESS"
    assert isinstance(result.result, dict) and result.result["outcome"] == PollOutcome.OK
    assert PollRun.objects.get().outcome == PollOutcome.OK


def test_a_failed_cycle_is_a_failed_task_and_one_error_line(fake, caplog):
    fake.exchange.set_faults(queue=[QueuedFault("503", "/markets")] * 2)

    with caplog.at_level(logging.INFO):
        result = tasks.poll_markets.apply()

    assert result.state == "FAILURE"
    assert isinstance(result.result, tasks.TaskFailed)
    [line] = errors(caplog)
    assert line.startswith("Poll cycle failed: GET ") and "HTTP 503" in line and "try again later" in line
    assert str(result.result) == line
    assert PollRun.objects.get().outcome == PollOutcome.FAILED  # recorded for the admin too
    assert "poll_markets" in tasks.poll_markets.name and tasks.TaskFailed in tasks.poll_markets.throws


def test_redis_down_for_the_lock_names_redis_url_once_per_cycle(fake, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"

    with caplog.at_level(logging.INFO):
        first = tasks.poll_markets.apply()
        second = tasks.poll_markets.apply()

    assert (first.state, second.state) == ("FAILURE", "FAILURE")
    lines = errors(caplog)
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("Poll cycle failed: Redis at REDIS_URL (redis://127.0.0.1:")
        assert "is unreachable" in line and "unset REDIS_URL" in line
    # The shared rate limit falls back to one per process, and says so once, not every cycle.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("rate limit is per-process only" in w for w in warnings) == 1
    assert PollRun.objects.count() == 0 and fake.exchange.requests["total"] == 0


def test_the_other_jobs_fail_the_same_way(fake, caplog):
    fake.exchange.set_faults(rate_5xx=1.0)

    with caplog.at_level(logging.INFO):
        results = [
            tasks.sweep_settlements.apply(),
            tasks.refresh_series.apply(),
            tasks.backfill_markets.apply(kwargs={"series": ["KXNFLGAME"]}),
            tasks.backfill_markets.apply(kwargs={"status": "finalized"}),
        ]

    assert [r.state for r in results] == ["FAILURE"] * 4
    lines = errors(caplog)
    assert [line.split(" failed: ")[0] for line in lines] == [
        "Settlement sweep",
        "Series refresh",
        "Backfill",
        "Backfill",
    ]
    assert "Did you mean 'settled'?" in lines[-1]
