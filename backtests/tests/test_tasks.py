"""A run created through the API is executed by a real Celery worker on the real Redis broker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from backtests.models import BacktestRun, RunStatus
from backtests.tasks import execute_backtest_run
from backtests.tests.conftest import wait_for

LAD = "KXMLBGAME-26AUG072140LADAZ-LAD"


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_it_runs_a_launched_backtest_in_a_celery_worker(recorded, start_celery_worker):
    worker = start_celery_worker()
    api = APIClient()
    api.force_authenticate(User.objects.create_user("quant"))
    response = api.post(
        "/api/v1/backtests/", {"strategy": "hold_to_settlement", "tickers": [LAD]}, format="json"
    )
    assert response.status_code == 201

    def finished():
        run = BacktestRun.objects.get(pk=response.json()["id"])
        return run if run.is_finished else None

    run = wait_for(finished, timeout=90, what="the worker to finish the run")
    assert worker.poll() is None
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.progress == 1.0
    assert run.trades.get().pnl == Decimal("-6.39")
    assert set(run.timings) == {"load", "simulate", "save"}


@pytest.mark.django_db
def test_it_ignores_a_missing_run_and_does_not_rerun_a_finished_one(recorded):
    execute_backtest_run(987654)  # deleted before the worker got to it: logged, nothing raised
    run = BacktestRun.objects.create(strategy="hold_to_settlement", tickers=[LAD], status=RunStatus.SUCCEEDED)
    execute_backtest_run(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.started_at is None
