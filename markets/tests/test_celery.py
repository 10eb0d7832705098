"""A real Celery worker (and beat) on the real Redis broker, polling the fake exchange into the
test database. The worker is a subprocess, so the tests commit their data (transaction=True)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from kalshi_insights.celery import app
from markets import ingest
from markets.fakeexchange import QueuedFault, RunningExchange, serve
from markets.kalshi import KalshiClient
from markets.models import Market, MarketSnapshot, PollOutcome, PollRun
from markets.tasks import poll_markets
from markets.tests.subprocesses import closed_port, test_database_url

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

CELERY = str(Path(sys.executable).with_name("celery"))
LOCK_KEY = f"kalshi_insights:lock:{ingest.POLL_LOCK_NAME}"
T = TypeVar("T")


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path
    name: str = ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(args: list[str], log: Path, env: dict[str, str], name: str = "") -> Process:
    handle = log.open("wb")
    proc = subprocess.Popen(
        [CELERY, "-A", "kalshi_insights", *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stopping it stops its children too
    )
    handle.close()
    return Process(proc, log, name)


def stop(process: Process) -> None:
    if process.proc.poll() is None:
        os.killpg(process.proc.pid, signal.SIGTERM)
        try:
            process.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(timeout=10)


def wait_for(check: Callable[[], T], *, timeout: float, what: str, process: Process) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if process.proc.poll() is not None:
            code = process.proc.returncode
            pytest.fail(f"{process.log.stem} exited ({code}) while waiting for {what}:\n{process.tail()}")
        time.sleep(0.2)
    pytest.fail(f"Timed out after {timeout:g}s waiting for {what}. {process.log.stem} log:\n{process.tail()}")


def purge_polling_queue() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("polling")  # type: ignore[attr-defined]  # virtual channels have it


def redis_client() -> redis.Redis:
    assert settings.REDIS_URL, "run the suite with ./dev test, which points REDIS_URL at the test Redis"
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningExchange]:
    with serve(seed=21) as running:
        yield running


@pytest.fixture(scope="module")
def worker_env(django_db_setup: None, fake: RunningExchange) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "KALSHI_API_BASE": fake.base_url,
        "KALSHI_MAX_RETRIES": "2",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def worker(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    purge_polling_queue()
    redis_client().delete(LOCK_KEY)
    name = f"test-poller-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    # The same command as the poller in docker-compose.yml and ./dev run, solo pool for speed.
    args = ["worker", "-Q", "polling", "-c", "1", "-P", "solo", "-n", name]
    args += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    process = start(args, tmp_path_factory.mktemp("celery") / "worker.log", worker_env, name)
    try:
        wait_for(
            lambda: "ready." in process.log.read_text(),
            timeout=90,
            what="the worker to start",
            process=process,
        )
        yield process
    finally:
        stop(process)


def worker_is_idle(name: str) -> bool:
    # A solo worker answers remote control only between tasks, so an answer means "not busy".
    inspect = app.control.inspect(destination=[name], timeout=1.0)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    return name in active and not active[name] and not reserved.get(name)


@pytest.fixture(autouse=True)
def quiet_afterwards(worker: Process, fake: RunningExchange) -> Iterator[None]:
    """Leave no cycle running when pytest-django empties the tables after a test."""
    fake.exchange.set_faults(clear=True)
    yield
    fake.exchange.set_faults(clear=True)
    purge_polling_queue()
    wait_for(
        lambda: (
            worker_is_idle(worker.name) and not PollRun.objects.filter(outcome=PollOutcome.RUNNING).exists()
        ),
        timeout=60,
        what="the worker to finish its last cycle",
        process=worker,
    )


def finished_celery_runs() -> list[PollRun]:
    return list(PollRun.objects.filter(trigger="celery", finished_at__isnull=False).order_by("started_at"))


def test_a_worker_runs_poll_markets_and_snapshots_appear(worker, fake):
    poll_markets.delay()

    runs = wait_for(finished_celery_runs, timeout=60, what="a PollRun from the worker", process=worker)

    run = runs[0]
    assert run.outcome == PollOutcome.OK, run.error_messages
    open_markets = [m for m in fake.exchange.markets.values() if m.status == "active" and not m.is_combo]
    assert run.snapshots_written == len(open_markets) == MarketSnapshot.objects.count()
    dal = Market.objects.get(ticker="KXNFLGAME-26OCT08TBDAL-DAL")
    assert dal.yes_bid == Decimal(fake.exchange.markets[dal.ticker].render()["yes_bid_dollars"])

    moved = fake.exchange.advance(tickers=[dal.ticker])
    poll_markets.delay()
    second = wait_for(
        lambda: finished_celery_runs()[1:], timeout=60, what="a second PollRun", process=worker
    )[0]
    assert (second.outcome, second.snapshots_written) == (PollOutcome.OK, len(moved))


def test_beat_schedules_poll_markets_onto_the_polling_queue(worker, worker_env, tmp_path):
    # The worker consumes only `polling`: any run it records came through beat's routing.
    env = {**worker_env, "KALSHI_POLL_INTERVAL": "1"}
    beat = start(["beat", "--loglevel", "INFO", "-s", str(tmp_path / "schedule")], tmp_path / "beat.log", env)
    try:
        runs = wait_for(
            lambda: [r for r in finished_celery_runs() if r.outcome == PollOutcome.OK][1:],
            timeout=90,
            what="two scheduled cycles",
            process=beat,
        )
    finally:
        stop(beat)
    assert runs
    assert "Sending due task poll-markets (markets.tasks.poll_markets)" in beat.log.read_text()
    assert settings.CELERY_BEAT_SCHEDULE["poll-markets"]["options"]["queue"] == "polling"


def test_an_overlapping_cycle_is_skipped_by_the_lock(worker, fake):
    entered, release = threading.Event(), threading.Event()

    class HeldAtTheFirstRequest(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            entered.set()
            release.wait(timeout=60)
            return super().handle_request(request)

    outcome: dict[str, Any] = {}

    def cycle_in_this_process() -> None:
        try:
            with KalshiClient(base_url=fake.base_url, transport=HeldAtTheFirstRequest()) as client:
                outcome["run"] = ingest.run_poll_cycle(client=client, trigger="test")
        finally:
            connection.close()

    first = threading.Thread(target=cycle_in_this_process)
    first.start()
    try:
        assert entered.wait(timeout=20), "the first cycle never reached Kalshi"
        poll_markets.delay()
        skipped = wait_for(finished_celery_runs, timeout=60, what="the worker's cycle", process=worker)
    finally:
        release.set()
        first.join(timeout=60)

    assert [r.outcome for r in skipped] == [PollOutcome.SKIPPED]
    assert (skipped[0].pages, skipped[0].requests) == (0, 0)
    assert outcome["run"].outcome == PollOutcome.OK
    assert MarketSnapshot.objects.count() == outcome["run"].snapshots_written > 0


def test_a_failing_cycle_is_one_log_line_and_a_failed_run(worker, fake):
    # KALSHI_MAX_RETRIES=2 for the worker: three 503s exhaust it.
    fake.exchange.set_faults(queue=[QueuedFault("503", "/markets")] * 3)
    log_before = worker.log.read_text()

    poll_markets.delay()
    run = wait_for(finished_celery_runs, timeout=60, what="the failed cycle", process=worker)[0]

    assert run.outcome == PollOutcome.FAILED
    assert "HTTP 503" in run.error_messages[-1] and "try again later" in run.error_messages[-1]
    assert Market.objects.count() == 0

    def log_of_this_task() -> str:
        text = worker.log.read_text()[len(log_before) :]
        return text if "raised expected" in text else ""

    new_log = wait_for(log_of_this_task, timeout=20, what="the task to finish", process=worker)
    # One ERROR line of ours; Celery marks the task failed, as an expected error: no traceback.
    errors = [line for line in new_log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Poll cycle failed: GET" in errors[0] and "HTTP 503" in errors[0]
    [marked] = [line for line in new_log.splitlines() if "raised expected: TaskFailed(" in line]
    assert "INFO" in marked and "Poll cycle failed: GET" in marked
    assert "succeeded" not in new_log
    assert "Traceback" not in new_log


@pytest.mark.parametrize(
    ("setting", "url", "says"),
    [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:{port}/kalshi_insights", "Check DATABASE_URL"),
        ("REDIS_URL", "redis://127.0.0.1:{port}/0", "Redis at REDIS_URL (redis://127.0.0.1:{port}/0)"),
    ],
    ids=["database-down", "redis-down"],
)
def test_a_store_that_is_down_is_one_line_per_cycle(worker_env, tmp_path, setting, url, says):
    port = closed_port()
    # A worker of its own, on a queue of its own, with one store pointing at a closed port.
    queue = f"polling-{uuid.uuid4().hex[:8]}"
    env = {**worker_env, setting: url.format(port=port)}
    args = ["worker", "-Q", queue, "-c", "1", "-P", "solo", "-n", f"{queue}@{socket.gethostname()}"]
    args += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    down = start(args, tmp_path / "worker.log", env, queue)
    try:
        wait_for(
            lambda: "ready." in down.log.read_text(), timeout=90, what="the worker to start", process=down
        )
        for _ in range(2):
            poll_markets.apply_async(queue=queue)

        def both_failed() -> str:
            text = down.log.read_text()
            return text if text.count("raised expected") == 2 else ""

        log = wait_for(both_failed, timeout=60, what="two failed cycles", process=down)
    finally:
        stop(down)

    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 2, log
    for line in errors:
        assert "Poll cycle failed: " in line and says.format(port=port) in line
    assert "succeeded" not in log
    assert "Traceback" not in log
