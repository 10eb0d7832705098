"""Momentum / breakout: follow the mid when it breaks out of its recent range (a Donchian channel)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtests.engine import MICRO, hysteresis

from .base import Param, ParameterError, Strategy

if TYPE_CHECKING:
    from backtests.engine import Int8Array, IntArray, QuotePanel


def prior_extremes(panel: QuotePanel, lookback: int) -> tuple[IntArray, IntArray]:
    """Highest and lowest 2×mid (micro) over the `lookback` quotes *before* each row, same market.

    -1 where the market has fewer than `lookback` earlier quotes with a mid. Cached per lookback.
    """
    key = ("extremes", lookback)
    cached = panel.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    x = panel.mid2
    s = pd.Series(np.where(x >= 0, x, np.nan))
    hi = s.rolling(lookback, min_periods=lookback).max().shift(1).to_numpy()
    lo = s.rolling(lookback, min_periods=lookback).min().shift(1).to_numpy()
    idx = np.arange(len(x))
    ok = (idx - lookback >= panel.row_start) & ~np.isnan(hi)
    hi_i = np.where(ok, np.nan_to_num(hi, nan=-1), -1).astype(np.int64)
    lo_i = np.where(ok, np.nan_to_num(lo, nan=-1), -1).astype(np.int64)
    panel.cache[key] = (hi_i, lo_i)
    return hi_i, lo_i


class Momentum(Strategy):
    name = "momentum"
    label = "Momentum / breakout"
    description = (
        "Buys YES when the mid rises threshold above the highest mid of the last `lookback` quotes and NO "
        "when it falls threshold below the lowest; exits when the mid crosses back through the "
        "`exit_lookback` channel on the other side."
    )
    params = {
        "lookback": Param(int, 30, "Breakout channel length in quotes.", 2, 2000),
        "exit_lookback": Param(int, 15, "Exit channel length in quotes.", 2, 2000),
        "threshold": Param(float, 0.01, "How far beyond the channel the mid must go, in dollars.", 0.0, 0.5),
        "allow_no": Param(bool, True, "Also follow breakdowns by buying NO."),
    }

    def check(self, values: Mapping[str, Any]) -> None:
        if values["exit_lookback"] > values["lookback"]:
            raise ParameterError("exit_lookback must not exceed lookback")

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        hi, lo = prior_extremes(panel, params["lookback"])
        xhi, xlo = prior_extremes(panel, params["exit_lookback"])
        x = panel.mid2
        thr2 = round(params["threshold"] * 2 * MICRO)
        valid = (hi >= 0) & (x >= 0)
        enter_long = valid & (x >= hi + thr2) & (x > hi)
        enter_short = (
            valid & (x <= lo - thr2) & (x < lo) if params["allow_no"] else np.zeros(len(x), dtype=bool)
        )
        exit_ok = (xhi >= 0) & (x >= 0)
        exit_long = exit_ok & (x < xlo)
        exit_short = exit_ok & (x > xhi)
        return hysteresis(enter_long, enter_short, exit_long, exit_short, panel.first_row)
