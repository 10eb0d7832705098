"""Celery tasks: thin wrappers that build a client and call the ingest functions."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from . import ingest
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
