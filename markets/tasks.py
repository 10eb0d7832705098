"""Celery tasks: thin wrappers that build a client and call the ingest functions.

A scheduled job that fails for a reason an operator can fix (Kalshi unreachable or refusing, the
database down, Redis down) logs one ERROR line saying so and raises `TaskFailed`. The tasks list it
in `throws`, Celery's way of marking an expected error: the task's state is FAILURE, and the
worker notes "raised expected" at INFO without a traceback. The next beat tick is the retry.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from . import backfill, ingest, locks, reference, settlement
from .kalshi import KalshiClient, KalshiError

logger = logging.getLogger(__name__)


class TaskFailed(Exception):
    """A job failed for a reason already logged in one line."""


# Failures that need an operator (or time), not a traceback.
EXPECTED = (KalshiError, DatabaseError, locks.LockUnavailable)


def failed(what: str, exc: BaseException) -> TaskFailed:
    """Log one ERROR line for a failed job and return the exception that marks the task failed."""
    reason = ingest.database_problem(exc) if isinstance(exc, DatabaseError) else str(exc)
    message = f"{what} failed: {reason}"
    logger.error("%s", message)
    return TaskFailed(message)


@shared_task(ignore_result=True, throws=(TaskFailed,))
def poll_markets() -> dict[str, Any]:
    """One poll cycle (routed to the `polling` queue in settings.CELERY_TASK_ROUTES)."""
    try:
        with KalshiClient.from_settings() as client:
            run = ingest.run_poll_cycle(client=client, trigger="celery")
    except EXPECTED as exc:
        # A failed cycle is also recorded on its PollRun when the database is there to take it.
        raise failed("Poll cycle", exc) from None
    return {"poll_run": run.pk, "outcome": run.outcome, "snapshots_written": run.snapshots_written}


# --- History: backfills, settlements, series fees ------------------------------------------------


@shared_task(
    ignore_result=True,
    throws=(TaskFailed,),
    soft_time_limit=settings.KALSHI_BACKFILL_TIME_LIMIT,
    time_limit=settings.KALSHI_BACKFILL_TIME_LIMIT + 120,
)
def backfill_markets(
    tickers: list[str] | None = None,
    *,
    events: list[str] | None = None,
    series: list[str] | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    period: int = 60,
    trades: bool = False,
) -> dict[str, Any]:
    """Backfill candles (and optionally trades) for markets chosen as `manage.py backfill` does.

    Dates are ISO strings (JSON-serialisable task arguments). A run cut short by an error or the
    soft time limit keeps what it stored; queueing the same task again continues it.
    """
    try:
        selection = backfill.Selection(
            tickers=tuple(tickers or ()),
            events=tuple(events or ()),
            series=tuple(series or ()),
            status=status,
        )
        start = backfill.parse_when(since) if since else None
        end = backfill.parse_when(until, end_of_day=True) if until else None
    except (backfill.BackfillError, ValueError) as exc:
        raise failed("Backfill", exc) from None
    try:
        with KalshiClient.from_settings() as client:
            run = backfill.run_backfill(
                client=client,
                selection=selection,
                since=start,
                until=end,
                period=period,
                trades=trades,
                trigger="celery",
            )
    except (*EXPECTED, backfill.BackfillError, SoftTimeLimitExceeded) as exc:
        # Recorded on the HistoryRun; the rows already stored are kept and a rerun continues.
        raise failed("Backfill", exc) from None
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}


@shared_task(ignore_result=True, throws=(TaskFailed,))
def sweep_settlements() -> dict[str, Any]:
    """Re-read closed markets until final (beat: KALSHI_SETTLEMENT_SWEEP_INTERVAL)."""
    try:
        with KalshiClient.from_settings() as client:
            run = settlement.sweep_settlements(client=client, trigger="celery")
    except EXPECTED as exc:
        raise failed("Settlement sweep", exc) from None
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}


@shared_task(ignore_result=True, throws=(TaskFailed,))
def refresh_series() -> dict[str, Any]:
    """Re-read series and open events so fee fields stay current (beat: KALSHI_SERIES_REFRESH_INTERVAL)."""
    try:
        with KalshiClient.from_settings() as client:
            run = reference.refresh_series(client=client, trigger="celery")
    except EXPECTED as exc:
        raise failed("Series refresh", exc) from None
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}
