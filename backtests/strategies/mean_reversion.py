"""Mean reversion on the mid: fade moves beyond a z-score band, exit when the mid comes back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backtests.engine import ffill_first, hysteresis

from .base import Param, ParameterError, Strategy

if TYPE_CHECKING:
    from backtests.engine import FloatArray, Int8Array, QuotePanel


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
    n = len(x)
    valid = x >= 0
    xv = np.where(valid, x, 0)
    s1 = np.zeros(n + 1, dtype=np.int64)
    s2 = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(xv, out=s1[1:])
    np.cumsum(xv * xv, out=s2[1:])
    # A market's mid, once it has one, is carried forward: the window is complete once it holds
    # `window` rows from the market's first two-sided quote on.
    first_valid = ffill_first(valid, panel)
    hi = np.arange(1, n + 1)
    lo = hi - window
    full = (lo >= first_valid) & (first_valid >= 0)
    lo_c = np.maximum(lo, 0)
    w_s1 = s1[hi] - s1[lo_c]
    var = window * (s2[hi] - s2[lo_c]) - w_s1 * w_s1
    num = window * xv - w_s1
    with np.errstate(invalid="ignore", divide="ignore"):
        z = num / np.sqrt(var.astype(np.float64))
    z[var == 0] = 0.0
    z[~full] = np.nan
    result: FloatArray = z
    panel.cache[key] = result
    return result


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
            raise ParameterError(f"exit_z ({values['exit_z']}) must be below entry_z ({values['entry_z']})")

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        z = rolling_zscore(panel, params["window"])
        nan = panel.cache.get(("zscore-nan", params["window"]))
        if nan is None:
            nan = panel.cache[("zscore-nan", params["window"])] = np.isnan(z)
        e, x = params["entry_z"], params["exit_z"]
        # Which band of the z axis each quote is in: 0 below -entry, 1 below -exit, 2 within ±exit,
        # 3 below +entry, 4 above it, 5 no z yet. The target can only change where the band does,
        # so the state machine runs on runs of equal bands, not on every quote.
        with np.errstate(invalid="ignore"):
            band = (z >= -e).astype(np.int8)
            band += z >= -x
            band += z > x
            band += z > e
        band += nan.view(np.int8) * 5
        if not params["allow_no"]:
            band[band == 4] = 3
        n = len(band)
        if n == 0:
            return np.zeros(0, dtype=np.int8)
        starts = np.flatnonzero(np.concatenate([[True], band[1:] != band[:-1]]) | panel.first_row)
        b = band[starts]
        compressed = hysteresis(
            b == 0,
            b == 4,
            (b >= 2),
            (b <= 2) | (b == 5),
            panel.first_row[starts],
        )
        return np.repeat(compressed, np.diff(np.append(starts, n)))
