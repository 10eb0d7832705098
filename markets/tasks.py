"""Celery tasks: thin wrappers that build a client and call the ingest functions."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from . import backfill, ingest, reference, settlement
from .kalshi import KalshiClient, KalshiError

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def poll_markets() -> dict[str, Any]:
    """One poll cycle (routed to the `polling` queue in settings.CELERY_TASK_ROUTES)."""
    with KalshiClient.from_settings() as client:
        try:
            run = ingest.run_poll_cycle(client=client, trigger="celery")
        except KalshiError as exc:
            # Already recorded on the PollRun; the next beat tick is the retry.
            logger.error("Poll cycle failed: %s", exc)
            return {"outcome": "failed", "error": str(exc)}
    return {"poll_run": run.pk, "outcome": run.outcome, "snapshots_written": run.snapshots_written}


# --- History: backfills, settlements, series fees ------------------------------------------------


@shared_task(
    ignore_result=True,
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
        logger.error("Backfill not started: %s", exc)
        return {"outcome": "failed", "error": str(exc)}
    with KalshiClient.from_settings() as client:
        try:
            run = backfill.run_backfill(
                client=client,
                selection=selection,
                since=start,
                until=end,
                period=period,
                trades=trades,
                trigger="celery",
            )
        except (KalshiError, backfill.BackfillError, SoftTimeLimitExceeded) as exc:
            # Recorded on the HistoryRun; the rows already stored are kept and a rerun continues.
            logger.error("Backfill stopped: %s", exc)
            return {"outcome": "failed", "error": str(exc)}
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}


@shared_task(ignore_result=True)
def sweep_settlements() -> dict[str, Any]:
    """Re-read closed markets until final (beat: KALSHI_SETTLEMENT_SWEEP_INTERVAL)."""
    with KalshiClient.from_settings() as client:
        try:
            run = settlement.sweep_settlements(client=client, trigger="celery")
        except KalshiError as exc:
            logger.error("Settlement sweep failed: %s", exc)
            return {"outcome": "failed", "error": str(exc)}
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}


@shared_task(ignore_result=True)
def refresh_series() -> dict[str, Any]:
    """Re-read series and open events so fee fields stay current (beat: KALSHI_SERIES_REFRESH_INTERVAL)."""
    with KalshiClient.from_settings() as client:
        try:
            run = reference.refresh_series(client=client, trigger="celery")
        except KalshiError as exc:
            logger.error("Series refresh failed: %s", exc)
            return {"outcome": "failed", "error": str(exc)}
    return {"history_run": run.pk, "outcome": run.outcome, "summary": run.summary}
