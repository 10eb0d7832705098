"""Parameter sweeps: a grid over one strategy's parameters, ranked, with an in/out-of-sample split.

Pure Python/numpy like the engine. Targets are computed once per parameter set on the whole panel
(a decision at t only ever reads data up to t, so that is lookahead-free) and then simulated
separately before and after the split: the in-sample half ends at the split with open positions
marked to the bid, the out-of-sample half starts flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from .engine import (
    BacktestConfig,
    BacktestError,
    Int8Array,
    IntArray,
    QuotePanel,
    run_backtest,
    utc_from_ns,
)
from .strategies import ParameterError, Strategy, get_strategy

# Metrics a sweep can rank by, and whether bigger is better.
RANK_METRICS: dict[str, bool] = {
    "sharpe": True,
    "sortino": True,
    "calmar": True,
    "net_pnl": True,
    "return_on_capital": True,
    "profit_factor": True,
    "win_rate": True,
    "max_drawdown": False,
    "brier_score": False,
}


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    return float(value)


@dataclass
class SweepRow:
    params: dict[str, Any]
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any] | None
    rank: int = 0


@dataclass
class SweepResult:
    strategy: str
    metric: str
    varied: list[str]
    rows: list[SweepRow]
    split_at: datetime | None
    skipped: list[str] = field(default_factory=list)

    def heatmap(self, x: str | None = None, y: str | None = None) -> dict[str, Any] | None:
        """The ranking metric over two varied parameters (the best over any others), in and out of sample."""
        if len(self.varied) < 2:
            return None
        x = x or self.varied[0]
        y = y or self.varied[1]
        xs = sorted({r.params[x] for r in self.rows})
        ys = sorted({r.params[y] for r in self.rows})
        better = RANK_METRICS[self.metric]

        def grid(which: str) -> list[list[float | None]]:
            cells: list[list[float | None]] = [[None] * len(xs) for _ in ys]
            for r in self.rows:
                source = r.in_sample if which == "in_sample" else r.out_of_sample
                if source is None:
                    continue
                v = metric_value(source, self.metric)
                if v is None:
                    continue
                i, j = ys.index(r.params[y]), xs.index(r.params[x])
                cur = cells[i][j]
                if cur is None or (v > cur if better else v < cur):
                    cells[i][j] = v
            return cells

        return {
            "x": x,
            "y": y,
            "x_values": xs,
            "y_values": ys,
            "in_sample": grid("in_sample"),
            "out_of_sample": grid("out_of_sample") if self.split_at else None,
        }


def parse_grid(strategy: Strategy, grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Each grid value parsed by its declared parameter; unknown names rejected with the valid list."""
    unknown = sorted(set(grid) - set(strategy.params))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) for {strategy.name}: {', '.join(unknown)}. "
            f"Valid parameters: {strategy.describe_params()}"
        )
    parsed: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if not values:
            raise ParameterError(f"grid parameter {name} has no values")
        parsed[name] = list(dict.fromkeys(strategy.params[name].parse(name, v) for v in values))
    return parsed


def expand_grid(
    strategy: Strategy, base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every combination (validated); combinations that fail a cross-parameter check are skipped."""
    names = list(grid)
    combos: list[dict[str, Any]] = []
    skipped: list[str] = []
    for values in itertools.product(*(grid[n] for n in names)):
        candidate = {**base, **dict(zip(names, values, strict=True))}
        try:
            combos.append(strategy.validate(candidate))
        except ParameterError as exc:
            skipped.append(f"{dict(zip(names, values, strict=True))}: {exc}")
    return combos, skipped


def split_time(panel: QuotePanel, oos_fraction: float) -> int | None:
    if not oos_fraction:
        return None
    if not 0 < oos_fraction < 1:
        raise BacktestError("the out-of-sample fraction must be between 0 and 1 (e.g. 0.3)")
    if len(panel) < 2:
        raise BacktestError("not enough quotes to split into in-sample and out-of-sample periods")
    t0, t1 = int(panel.time.min()), int(panel.time.max())
    return t0 + int((t1 - t0) * (1 - oos_fraction))


def split_panels(panel: QuotePanel, split_ns: int) -> tuple[QuotePanel, QuotePanel, np.ndarray, np.ndarray]:
    is_mask = panel.time < split_ns
    split_at = utc_from_ns(split_ns)
    return (
        panel.take(is_mask, end=split_at),
        panel.take(~is_mask, end=panel.end),
        is_mask,
        ~is_mask,
    )


class SubPanelChanges:
    """Maps a target's change points on a panel to those of a sub-panel (`QuotePanel.take`) whose
    rows are contiguous within each market, as both halves of a time split are.

    Inside such a sub-panel a row's predecessor is its predecessor on the full panel, except at the
    sub-panel's first row of each market, where a change means "not flat" (each market starts
    flat): the full panel's changes minus those first rows, plus the first rows that are not flat.
    This spares each run of a sweep a scan of every row for its change points.
    """

    def __init__(self, panel: QuotePanel, mask: npt.NDArray[np.bool_]) -> None:
        self.mask = mask
        # Row positions in the sub-panel (meaningful only where mask holds).
        self.position = np.cumsum(mask, dtype=np.int64) - 1
        first = np.zeros(len(panel), dtype=bool)
        first[1:] = mask[1:] & ~mask[:-1]  # market boundaries are added next
        first[panel.starts[:-1][np.diff(panel.starts) > 0]] = True
        first &= mask
        self.is_first = first
        self.first_rows = np.flatnonzero(first)

    def __call__(self, target: Int8Array, changes: IntArray) -> IntArray:
        inner = changes[self.mask[changes] & ~self.is_first[changes]]
        opened = self.first_rows[target[self.first_rows] != 0]
        rows = np.concatenate([inner, opened])
        rows.sort()
        result: IntArray = self.position[rows]
        return result


def run_sweep(
    panel: QuotePanel,
    strategy: Strategy | str,
    grid: Mapping[str, Sequence[Any]],
    *,
    base_params: Mapping[str, Any] | None = None,
    metric: str = "sharpe",
    oos_fraction: float = 0.0,
    config: BacktestConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> SweepResult:
    """Run every parameter combination; rows ranked by `metric` in sample (best first)."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if metric not in RANK_METRICS:
        raise BacktestError(f"unknown metric {metric!r}; choose one of {', '.join(RANK_METRICS)}")
    parsed = parse_grid(strat, grid)
    base = dict(base_params or {})
    strat.validate({k: v for k, v in base.items() if k not in parsed})
    combos, skipped = expand_grid(strat, base, parsed)
    if not combos:
        raise ParameterError("no valid parameter combination in the grid: " + "; ".join(skipped[:3]))
    config = config or BacktestConfig()
    split_ns = split_time(panel, oos_fraction)
    if split_ns is not None:
        is_panel, oos_panel, is_mask, oos_mask = split_panels(panel, split_ns)
    # Every combination reads the same per-row lookups: build them once rather than binary search
    # them per run.
    panel.prepare_for_sweeps()
    if split_ns is not None:
        is_panel.prepare_for_sweeps()
        oos_panel.prepare_for_sweeps()
        is_changes = SubPanelChanges(panel, is_mask)
        oos_changes = SubPanelChanges(panel, oos_mask)
    rows: list[SweepRow] = []
    for i, params in enumerate(combos):
        target, changes = strat.target_and_changes(panel, params)
        if split_ns is None:
            result = run_backtest(panel, strat, params, config=config, target=target, changes=changes)
            rows.append(SweepRow(params=params, in_sample=result.metrics, out_of_sample=None))
        else:
            ins = run_backtest(
                is_panel,
                strat,
                params,
                config=config,
                target=target[is_mask],
                changes=is_changes(target, changes),
            )
            oos = run_backtest(
                oos_panel,
                strat,
                params,
                config=config,
                target=target[oos_mask],
                changes=oos_changes(target, changes),
            )
            rows.append(SweepRow(params=params, in_sample=ins.metrics, out_of_sample=oos.metrics))
        if progress:
            progress((i + 1) / len(combos))
    better = RANK_METRICS[metric]

    def key(row: SweepRow) -> tuple[int, float]:
        v = metric_value(row.in_sample, metric)
        if v is None:
            return (1, 0.0)
        return (0, -v if better else v)

    rows.sort(key=key)
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    return SweepResult(
        strategy=strat.name,
        metric=metric,
        varied=[n for n in parsed if len(parsed[n]) > 1] or list(parsed),
        rows=rows,
        split_at=utc_from_ns(split_ns) if split_ns is not None else None,
        skipped=skipped,
    )
