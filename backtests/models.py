"""Backtest runs and their trades."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RunKind(models.TextChoices):
    SINGLE = "single", "Single run"
    SWEEP = "sweep", "Parameter sweep"


class BacktestRunQuerySet(models.QuerySet["BacktestRun"]):
    def finished(self) -> BacktestRunQuerySet:
        return self.filter(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])

    def active(self) -> BacktestRunQuerySet:
        return self.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])

    def succeeded(self) -> BacktestRunQuerySet:
        return self.filter(status=RunStatus.SUCCEEDED)

    def for_list(self) -> BacktestRunQuerySet:
        """What the list page and API show: no equity curves or sweep tables."""
        return self.defer("equity_curve", "sweep_results").select_related("created_by")


class BacktestRun(models.Model):
    """One backtest (or sweep): what to run, on which markets, and what came out."""

    strategy = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True, help_text="Validated strategy parameters.")
    kind = models.CharField(max_length=10, choices=RunKind.choices, default=RunKind.SINGLE)
    grid = models.JSONField(default=dict, blank=True, help_text="Sweep grid: parameter → list of values.")
    rank_metric = models.CharField(max_length=30, default="sharpe")
    oos_fraction = models.FloatField(default=0.0, help_text="Share of the period held out of sample.")

    # Market selection: the union of these; all empty means every market with quotes in the period.
    tickers = models.JSONField(default=list, blank=True)
    event_tickers = models.JSONField(default=list, blank=True)
    series_tickers = models.JSONField(default=list, blank=True)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)

    contracts = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal(10))
    capital = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal(1000))
    cap_to_displayed_size = models.BooleanField(default=False)

    status = models.CharField(
        max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(
        default=dict, blank=True, help_text="Seconds spent loading, simulating, saving."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backtest_runs",
    )

    markets_count = models.PositiveIntegerField(default=0)
    quotes_count = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    split_metrics = models.JSONField(
        default=dict, blank=True, help_text="In-sample and out-of-sample metrics when a split was asked for."
    )
    equity_curve = models.JSONField(
        default=list, blank=True, help_text="[[ISO time, equity], ...] thinned for charts."
    )
    sweep_results = models.JSONField(default=dict, blank=True)

    objects = BacktestRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="run_progress_0_1"
            ),
            models.CheckConstraint(condition=Q(contracts__gt=0), name="run_contracts_positive"),
            models.CheckConstraint(condition=Q(capital__gt=0), name="run_capital_positive"),
            models.CheckConstraint(
                condition=Q(oos_fraction__gte=0) & Q(oos_fraction__lt=1), name="run_oos_fraction_0_1"
            ),
            models.CheckConstraint(
                condition=Q(start__isnull=True) | Q(end__isnull=True) | Q(end__gt=F("start")),
                name="run_end_after_start",
            ),
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="run_status_valid"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.strategy} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("backtests:detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)

    @property
    def is_sweep(self) -> bool:
        return self.kind == RunKind.SWEEP

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def selection_label(self) -> str:
        parts = [
            *self.tickers,
            *(f"event {e}" for e in self.event_tickers),
            *(f"series {s}" for s in self.series_tickers),
        ]
        if not parts:
            return "all markets"
        return ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")

    def metric(self, name: str) -> Any:
        return self.metrics.get(name)


class BacktestTrade(models.Model):
    """One round trip: a position opened and closed by the strategy, or held to settlement/the end."""

    class Side(models.TextChoices):
        YES = "yes", "YES"
        NO = "no", "NO"

    class ExitReason(models.TextChoices):
        SIGNAL = "signal", "Strategy exit"
        SETTLEMENT = "settlement", "Settlement"
        MARKED = "marked_to_bid", "Marked to bid (unsettled)"

    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="trades")
    market = models.ForeignKey(
        "markets.Market", null=True, blank=True, on_delete=models.SET_NULL, related_name="backtest_trades"
    )
    ticker = models.CharField(max_length=200)
    side = models.CharField(max_length=3, choices=Side.choices)
    contracts = models.DecimalField(max_digits=14, decimal_places=2)
    entry_time = models.DateTimeField()
    entry_price = models.DecimalField(max_digits=10, decimal_places=6)
    exit_time = models.DateTimeField()
    exit_price = models.DecimalField(max_digits=10, decimal_places=6)
    exit_reason = models.CharField(max_length=20, choices=ExitReason.choices)
    fees = models.DecimalField(max_digits=14, decimal_places=2)
    pnl = models.DecimalField(max_digits=18, decimal_places=8)

    class Meta:
        ordering = ["entry_time", "id"]
        indexes = [models.Index(fields=["run", "entry_time"], name="bt_trade_run_entry_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(contracts__gt=0), name="bt_trade_contracts_positive"),
            models.CheckConstraint(
                condition=Q(entry_price__gte=0)
                & Q(entry_price__lte=1)
                & Q(exit_price__gte=0)
                & Q(exit_price__lte=1),
                name="bt_trade_prices_0_1",
            ),
            models.CheckConstraint(condition=Q(fees__gte=0), name="bt_trade_fees_non_negative"),
            models.CheckConstraint(
                condition=Q(exit_time__gte=F("entry_time")), name="bt_trade_exit_after_entry"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticker} {self.side} {self.contracts} @ {self.entry_price}"

    @property
    def hold(self) -> timedelta:
        return self.exit_time - self.entry_time
