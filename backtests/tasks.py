"""Celery tasks: thin wrappers around backtests.runs."""

from __future__ import annotations

import logging

from celery import shared_task

from . import runs
from .models import BacktestRun

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def execute_backtest_run(run_id: int) -> None:
    """Run one queued backtest; failures are recorded on the run itself."""
    run = BacktestRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("Backtest run %s no longer exists.", run_id)
        return
    runs.execute_run(run)
