"""Is the collector healthy? Data freshness, polling gaps, and whether beat and the poller are alive.

Everything here must answer quickly even when Redis or the workers are down: the status page is
where a user looks exactly when something is broken.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from .models import MarketSnapshot, PollOutcome, PollRun

logger = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3
WORKER_CHECK_CACHE_KEY = "markets:status:workers"
WORKER_CHECK_CACHE_SECONDS = 30
POLLING_QUEUE = "polling"
# One thread is enough: a broker that hangs holds one thread, not one per page view.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-check")


def poll_interval() -> timedelta:
    return timedelta(seconds=settings.KALSHI_POLL_INTERVAL)


def stale_after() -> timedelta:
    """Data older than this many poll intervals is flagged as stale on every page."""
    return STALE_AFTER_INTERVALS * poll_interval()


@dataclass(frozen=True, slots=True)
class Freshness:
    as_of: datetime | None  # when the latest successful poll cycle finished
    age: timedelta | None
    stale: bool
    stale_after: timedelta
    last_run: PollRun | None  # latest successful cycle
    # The newest finished cycle when it failed after the last success: a user who sees no data or
    # stale data needs its reason (no network, a wrong KALSHI_API_BASE) where they are looking.
    failure: PollRun | None = None


def data_freshness(now: datetime | None = None) -> Freshness:
    """How old the newest polled data is; stale after STALE_AFTER_INTERVALS poll intervals."""
    now = now or timezone.now()
    limit = stale_after()
    # Every page asks this: when the newest finished cycle is the latest success (the usual case), it
    # answers both questions in one query.
    newest = PollRun.objects.finished().order_by("-started_at").first()
    failure = newest if newest is not None and newest.outcome == PollOutcome.FAILED else None
    if newest is not None and failure is None and newest.finished_at is not None:
        run: PollRun | None = newest
    else:
        run = PollRun.objects.latest_success()
    if run is None or run.finished_at is None:
        return Freshness(as_of=None, age=None, stale=True, stale_after=limit, last_run=None, failure=failure)
    age = max(now - run.finished_at, timedelta(0))
    return Freshness(
        as_of=run.finished_at, age=age, stale=age > limit, stale_after=limit, last_run=run, failure=failure
    )


@dataclass(frozen=True, slots=True)
class Scheduler:
    last_start: datetime | None
    trigger: str
    alive: bool


def scheduler_state(now: datetime | None = None) -> Scheduler:
    """Beat (or `pollmarkets --loop`) is alive if a cycle started, even a skipped one, recently."""
    now = now or timezone.now()
    run = PollRun.objects.order_by("-started_at").only("started_at", "trigger").first()
    if run is None:
        return Scheduler(last_start=None, trigger="", alive=False)
    return Scheduler(
        last_start=run.started_at, trigger=run.trigger, alive=now - run.started_at <= stale_after()
    )


@dataclass(frozen=True, slots=True)
class Gap:
    start: datetime
    end: datetime | None  # None: still going on

    @property
    def length(self) -> timedelta | None:
        return None if self.end is None else self.end - self.start


def polling_gaps(*, since: datetime, now: datetime | None = None, limit: int = 20) -> list[Gap]:
    """Where no successful cycle started for longer than `stale_after()`, newest first."""
    now = now or timezone.now()
    threshold = stale_after()
    gaps = [Gap(a, b) for a, b in PollRun.objects.gaps(since=since, longer_than=threshold)]
    latest = PollRun.objects.latest_success()
    if latest is not None and now - latest.started_at > threshold:
        gaps.append(Gap(latest.started_at, None))
    return list(reversed(gaps))[:limit]


@dataclass(frozen=True, slots=True)
class Workers:
    checked_at: datetime
    answered: list[str] = field(default_factory=list)  # worker names that replied
    pollers: list[str] = field(default_factory=list)  # of those, the ones consuming `polling`
    error: str = ""  # why we could not ask, if we could not

    @property
    def poller_alive(self) -> bool:
        return bool(self.pollers)


def worker_state(*, timeout: float = 0.5, use_cache: bool = True) -> Workers:
    """Ask the Celery workers which queues they consume; cached for WORKER_CHECK_CACHE_SECONDS.

    Takes up to 2 × `timeout` when no worker answers (it asks twice), and never much longer
    (+1.5 s for a broker that accepts connections but does not answer): the broadcast runs in a
    helper thread that the page stops waiting for.
    """
    if use_cache:
        cached = safe_cache_get(WORKER_CHECK_CACHE_KEY)
        if isinstance(cached, Workers):
            return cached
    broker = settings.CELERY_BROKER_URL
    now = timezone.now()
    if broker.startswith(("filesystem://", "memory://")):
        state = Workers(
            checked_at=now,
            error="The file-system broker cannot broadcast, so workers cannot be asked; "
            "judge the poller by the poll cycles below.",
        )
    else:
        future = _executor.submit(_ask_workers, timeout)
        try:
            answered, pollers = future.result(timeout=2 * timeout + 1.5)
            state = Workers(checked_at=now, answered=answered, pollers=pollers)
        except FutureTimeout:
            state = Workers(
                checked_at=now, error=f"The broker did not answer within {2 * timeout + 1.5:g} s."
            )
        except Exception as exc:  # any broker failure is a status to show, not a page error
            logger.warning("Could not ask the Celery workers: %s", exc)
            state = Workers(checked_at=now, error=f"Could not reach the broker: {exc}")
    if use_cache:
        safe_cache_set(WORKER_CHECK_CACHE_KEY, state, WORKER_CHECK_CACHE_SECONDS)
    return state


def _ask_workers(timeout: float) -> tuple[list[str], list[str]]:
    from kalshi_insights.celery import app

    # A broadcast can be missed (a worker busy with the previous one, a reply arriving a moment
    # late); one silent round is not proof that nobody is there, so ask twice before saying so.
    replies: dict[str, Any] = (
        app.control.inspect(timeout=timeout).active_queues()
        or app.control.inspect(timeout=timeout).active_queues()
        or {}
    )
    answered = sorted(replies)
    pollers = sorted(
        name for name, queues in replies.items() if any(q.get("name") == POLLING_QUEUE for q in queues or [])
    )
    return answered, pollers


def safe_cache_get(key: str) -> Any:
    """cache.get that treats a cache that is down (Redis) as a miss: pages must still render."""
    try:
        return cache.get(key)
    except Exception:
        return None


def safe_cache_set(key: str, value: Any, seconds: int) -> None:
    with contextlib.suppress(Exception):
        cache.set(key, value, seconds)


def snapshot_count_estimate() -> int | None:
    """Rows in the snapshot table without COUNT(*) over millions: PostgreSQL's planner estimate."""
    if connection.vendor != "postgresql":
        return MarketSnapshot.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [MarketSnapshot._meta.db_table]
        )
        row = cursor.fetchone()
    estimate = int(row[0]) if row else -1
    if estimate < 0:
        return None  # never analyzed yet
    if estimate < 100_000:
        return MarketSnapshot.objects.count()  # small enough to count exactly
    return estimate
