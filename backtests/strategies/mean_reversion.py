"""Mean reversion on the mid: fade moves beyond a z-score band, exit when the mid comes back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import hysteresis
from .base import Param, ParameterError, Strategy

if TYPE_CHECKING:
    from ..engine import FloatArray, Int8Array, QuotePanel


def rolling_zscore(panel: QuotePanel, window: int) -> FloatArray:
    """z of the mid against its mean and (population) deviation over the last `window` quotes.

    Computed from exact integer rolling sums of twice the mid in micro-dollars, so a flat market
    has a deviation of exactly zero (z = 0) rather than float noise. NaN until a market has
    `window` quotes with a mid. Cached on the panel, so a sweep pays for each window once.
    """
    key = ("zscore", window)
    cached = panel.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    x = panel.mid2
    valid = x >= 0
    xv = np.where(valid, x, 0)
    s1 = np.concatenate([[0], np.cumsum(xv)])
    s2 = np.concatenate([[0], np.cumsum(xv * xv)])
    cnt = np.concatenate([[0], np.cumsum(valid)])
    n = len(x)
    hi = np.arange(1, n + 1)
    lo = hi - window
    ok = (lo >= panel.row_start) & (lo >= 0)
    lo_c = np.maximum(lo, 0)
    w_s1 = s1[hi] - s1[lo_c]
    w_s2 = s2[hi] - s2[lo_c]
    full = ok & (cnt[hi] - cnt[lo_c] == window)
    num = window * xv - w_s1
    var = window * w_s2 - w_s1 * w_s1
    z = np.full(n, np.nan)
    flat = full & (var == 0)
    z[flat] = 0.0
    live = full & (var > 0)
    z[live] = num[live] / np.sqrt(var[live].astype(np.float64))
    panel.cache[key] = z
    return z


class MeanReversion(Strategy):
    name = "mean_reversion"
    label = "Mean reversion (z-score of the mid)"
    description = (
        "Buys YES when the mid falls more than entry_z deviations below its rolling mean and NO when it "
        "rises more than entry_z above it; exits when |z| is back within exit_z."
    )
    params = {
        "window": Param(int, 60, "Rolling window in quotes.", 2, 1000),
        "entry_z": Param(float, 2.0, "Enter beyond this many deviations.", 0.1, 10.0),
        "exit_z": Param(float, 0.5, "Exit once back within this many deviations.", 0.0, 10.0),
        "allow_no": Param(bool, True, "Also fade rises by buying NO."),
    }

    def check(self, values: Mapping[str, Any]) -> None:
        if values["exit_z"] >= values["entry_z"]:
            raise ParameterError(
                f"exit_z ({values['exit_z']}) must be below entry_z ({values['entry_z']})"
            )

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        z = rolling_zscore(panel, params["window"])
        e, x = params["entry_z"], params["exit_z"]
        nan = np.isnan(z)
        with np.errstate(invalid="ignore"):
            enter_long = z < -e
            enter_short = (z > e) if params["allow_no"] else np.zeros(len(z), dtype=bool)
            exit_long = nan | (z >= -x)
            exit_short = nan | (z <= x)
        return hysteresis(enter_long, enter_short, exit_long, exit_short, panel.first_row)
