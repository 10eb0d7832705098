"""The one Django boundary of the backtester: create a run, execute it, save what came out.

`execute_run(run)` is called by the `runbacktest` command, the Celery task and (through the task)
the pages and the API. It loads quotes through the markets QuerySets, calls the pure engine, and
stores metrics, the equity curve and trades on the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from markets.models import Market

from . import data, engine, sweeps
from .engine import BacktestConfig, BacktestError, BacktestResult
from .models import BacktestRun, BacktestTrade, RunKind, RunStatus
from .strategies import ParameterError, get_strategy

logger = logging.getLogger(__name__)

MAX_GRID_SIZE = 2000
# Progress is written at most this often (seconds): the page polls it, nobody needs more.
PROGRESS_INTERVAL = 0.5


class RunInputError(ValueError):
    """A run that cannot be created as asked; the message says what to change."""


class NoData(RunInputError):
    """The selection matched no markets or no quotes."""


def create_run(
    *,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    tickers: Iterable[str] = (),
    event_tickers: Iterable[str] = (),
    series_tickers: Iterable[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    rank_metric: str = "sharpe",
    oos_fraction: float = 0.0,
    contracts: Decimal | int | str = 10,
    capital: Decimal | int | str = 1000,
    cap_to_displayed_size: bool = False,
    created_by: Any = None,
) -> BacktestRun:
    """Validate everything a run needs and save it as queued. Raises ParameterError/RunInputError."""
    strat = get_strategy(strategy)
    grid = dict(grid or {})
    params = dict(params or {})
    if grid:
        parsed_grid = sweeps.parse_grid(strat, grid)
        overlap = sorted(set(parsed_grid) & set(params))
        if overlap:
            raise ParameterError(f"{', '.join(overlap)} given both as a parameter and in the grid")
        combos, skipped = sweeps.expand_grid(strat, params, parsed_grid)
        if not combos:
            raise ParameterError("no valid parameter combination in the grid: " + "; ".join(skipped[:3]))
        if len(combos) > MAX_GRID_SIZE:
            raise RunInputError(
                f"the grid has {len(combos)} combinations; at most {MAX_GRID_SIZE} are allowed"
            )
        validated = strat.validate(dict(params.items()))
        grid_json = {k: list(v) for k, v in parsed_grid.items()}
    else:
        validated = strat.validate(params)
        grid_json = {}
    if rank_metric not in sweeps.RANK_METRICS:
        raise RunInputError(f"unknown metric {rank_metric!r}; choose one of {', '.join(sweeps.RANK_METRICS)}")
    if not 0 <= oos_fraction < 1:
        raise RunInputError("the out-of-sample fraction must be at least 0 and below 1 (e.g. 0.3)")
    for name, value in (("start", start), ("end", end)):
        if value is not None and timezone.is_naive(value):
            raise RunInputError(f"{name} must carry a time zone (UTC)")
    if start is not None and end is not None and end <= start:
        raise RunInputError("end must be after start")
    try:
        contracts_d = Decimal(str(contracts))
        capital_d = Decimal(str(capital))
        BacktestConfig(contracts=contracts_d, capital=capital_d)
    except InvalidOperation:
        raise RunInputError("contracts and capital must be numbers") from None
    except BacktestError as exc:
        raise RunInputError(str(exc)) from None
    tickers, event_tickers, series_tickers = _clean(tickers), _clean(event_tickers), _clean(series_tickers)
    unknown = sorted(
        set(tickers) - set(Market.objects.filter(ticker__in=tickers).values_list("ticker", flat=True))
    )
    if unknown:
        raise NoData(f"no market with ticker {', '.join(unknown)} has been collected")
    return BacktestRun.objects.create(
        strategy=strat.name,
        params=validated,
        kind=RunKind.SWEEP if grid_json else RunKind.SINGLE,
        grid=grid_json,
        rank_metric=rank_metric,
        oos_fraction=oos_fraction,
        tickers=tickers,
        event_tickers=event_tickers,
        series_tickers=series_tickers,
        start=start,
        end=end,
        contracts=contracts_d,
        capital=capital_d,
        cap_to_displayed_size=cap_to_displayed_size,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )


def _clean(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def selected_markets(run: BacktestRun) -> list[Market]:
    return list(
        Market.objects.selected(
            tickers=run.tickers, event_tickers=run.event_tickers, series_tickers=run.series_tickers
        )
        .with_event()
        .order_by("id")
    )


class _Progress:
    """Writes progress to the run row (an UPDATE, never a full save), throttled."""

    def __init__(self, run: BacktestRun, callback: Callable[[float, str], None] | None) -> None:
        self.run = run
        self.callback = callback
        self.last = 0.0

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        fraction = max(0.0, min(1.0, fraction))
        self.run.progress = fraction
        self.run.progress_message = message[:200]
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            BacktestRun.objects.filter(pk=self.run.pk).update(
                progress=fraction, progress_message=message[:200]
            )
        if self.callback:
            self.callback(fraction, message)

    def phase(self, lo: float, hi: float, message: str) -> Callable[[float], None]:
        return lambda f: self(lo + (hi - lo) * f, message)


def execute_run(run: BacktestRun, *, progress: Callable[[float, str], None] | None = None) -> BacktestRun:
    """Run a queued backtest or sweep to completion and save it; returns the run.

    Input problems (no data, bad parameters) end the run as failed with a message; anything
    unexpected is recorded the same way and re-raised.
    """
    claimed = BacktestRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), progress=0, error=""
    )
    if not claimed:
        # Another worker got there first, or the run already ran.
        run.refresh_from_db()
        logger.info("Backtest run %s is %s; not running it again.", run.pk, run.status)
        return run
    run.refresh_from_db()
    report = _Progress(run, progress)
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        report(0.0, "Selecting markets", force=True)
        markets = selected_markets(run)
        if not markets:
            raise NoData(
                f"No markets match {run.selection_label}. "
                "Collect them first (pollmarkets) or widen the selection."
            )
        panel = data.load_panel(
            markets, start=run.start, end=run.end, progress=report.phase(0.0, 0.4, "Loading quotes")
        )
        timings["load"] = time.perf_counter() - t0
        if len(panel) == 0:
            raise NoData(
                f"No quotes stored for {run.selection_label}{_period(run)}. "
                "Widen the period or collect data first."
            )
        run.markets_count = sum(1 for n in (panel.starts[1:] - panel.starts[:-1]) if n > 0)
        run.quotes_count = len(panel)
        config = BacktestConfig(
            contracts=run.contracts, capital=run.capital, cap_to_displayed_size=run.cap_to_displayed_size
        )
        t1 = time.perf_counter()
        if run.kind == RunKind.SWEEP:
            _execute_sweep(run, panel, config, report)
            result = None
        else:
            result = _execute_single(run, panel, config, report)
        timings["simulate"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        report(0.95, "Saving results", force=True)
        with transaction.atomic():
            if result is not None:
                _save_trades(run, result, markets)
            run.status = RunStatus.SUCCEEDED
            run.progress = 1.0
            run.progress_message = "Done"
            run.finished_at = timezone.now()
            timings["save"] = time.perf_counter() - t2
            run.timings = {k: round(v, 4) for k, v in timings.items()}
            run.save()
        if progress:
            progress(1.0, "Done")
    except (RunInputError, ParameterError, BacktestError) as exc:
        _fail(run, str(exc), timings)
    except Exception as exc:
        _fail(run, f"{type(exc).__name__}: {exc}", timings)
        raise
    return run


def _period(run: BacktestRun) -> str:
    if run.start and run.end:
        return f" between {run.start:%Y-%m-%d %H:%M} and {run.end:%Y-%m-%d %H:%M} UTC"
    if run.start:
        return f" after {run.start:%Y-%m-%d %H:%M} UTC"
    if run.end:
        return f" before {run.end:%Y-%m-%d %H:%M} UTC"
    return ""


def _fail(run: BacktestRun, message: str, timings: dict[str, float]) -> None:
    logger.warning("Backtest run %s failed: %s", run.pk, message)
    BacktestRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED,
        error=message,
        finished_at=timezone.now(),
        timings={k: round(v, 4) for k, v in timings.items()},
    )
    run.refresh_from_db()


def _execute_single(
    run: BacktestRun, panel: engine.QuotePanel, config: BacktestConfig, report: _Progress
) -> BacktestResult:
    strat = get_strategy(run.strategy)
    result = engine.run_backtest(
        panel, strat, run.params, config=config, progress=report.phase(0.4, 0.8, "Simulating")
    )
    run.metrics = result.metrics
    run.warnings = result.warnings
    run.equity_curve = [[engine.utc_from_ns(t).isoformat(), str(v)] for t, v in result.downsampled_equity()]
    if run.oos_fraction:
        split_ns = sweeps.split_time(panel, run.oos_fraction)
        assert split_ns is not None
        is_panel, oos_panel, is_mask, oos_mask = sweeps.split_panels(panel, split_ns)
        ins = engine.run_backtest(is_panel, strat, run.params, config=config, target=result.target[is_mask])
        oos = engine.run_backtest(oos_panel, strat, run.params, config=config, target=result.target[oos_mask])
        run.split_metrics = {
            "split_at": engine.utc_from_ns(split_ns).isoformat(),
            "in_sample": ins.metrics,
            "out_of_sample": oos.metrics,
        }
    report(0.9, "Simulated")
    return result


def _execute_sweep(
    run: BacktestRun, panel: engine.QuotePanel, config: BacktestConfig, report: _Progress
) -> None:
    base = {k: v for k, v in run.params.items() if k not in run.grid}
    result = sweeps.run_sweep(
        panel,
        run.strategy,
        run.grid,
        base_params=base,
        metric=run.rank_metric,
        oos_fraction=run.oos_fraction,
        config=config,
        progress=report.phase(0.4, 0.9, "Sweeping parameters"),
    )
    run.sweep_results = {
        "metric": result.metric,
        "varied": result.varied,
        "split_at": result.split_at.isoformat() if result.split_at else None,
        "skipped": result.skipped[:50],
        "rows": [
            {"rank": r.rank, "params": r.params, "in_sample": r.in_sample, "out_of_sample": r.out_of_sample}
            for r in result.rows
        ],
        "heatmap": result.heatmap(),
    }
    best = result.rows[0]
    run.metrics = best.in_sample
    run.params = best.params


def _save_trades(run: BacktestRun, result: BacktestResult, markets: Sequence[Market]) -> None:
    ids = {m.ticker: m.pk for m in markets}
    BacktestTrade.objects.filter(run=run).delete()
    BacktestTrade.objects.bulk_create(
        [
            BacktestTrade(
                run=run,
                market_id=ids.get(r.ticker),
                ticker=r.ticker,
                side=r.side,
                contracts=r.contracts,
                entry_time=r.entry_time,
                entry_price=r.entry_price,
                exit_time=r.exit_time,
                exit_price=r.exit_price,
                exit_reason=r.exit_reason,
                fees=r.fees,
                pnl=r.pnl,
            )
            for r in result.trade_records()
        ],
        batch_size=1000,
    )
