"""Mean reversion on the mid: fade moves beyond a z-score band, exit when the mid comes back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Param, ParameterError, Strategy

if TYPE_CHECKING:
    from backtests.engine import BoolArray, FloatArray, Int8Array, IntArray, QuotePanel


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
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    xv = np.maximum(x, 0)  # rows without a mid yet (-1) add nothing to the sums
    s1 = np.zeros(n + 1, dtype=np.int64)
    s2 = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(xv, out=s1[1:])
    sq = xv * xv
    np.cumsum(sq, out=s2[1:])
    # Window sums ending at each row: row i sums rows i-window+1 .. i. Rows that would reach back
    # before a market's first mid are masked below, so sums across a market boundary (and the
    # clamped ones at the start of the panel) never surface. int64 wraps in the running sums
    # cancel in the differences, which only need each window's true sum to fit.
    w = min(window, n)
    w_s1 = np.empty(n, dtype=np.int64)
    w_s2 = sq  # reused as the buffer
    np.subtract(s1[w:], s1[: n + 1 - w], out=w_s1[w - 1 :])
    np.subtract(s2[w:], s2[: n + 1 - w], out=w_s2[w - 1 :])
    w_s1[: w - 1] = s1[1:w]
    w_s2[: w - 1] = s2[1:w]
    num = xv
    num *= window
    num -= w_s1
    var = w_s2
    var *= window
    var -= np.multiply(w_s1, w_s1, out=w_s1)  # w_s1 is not needed after this
    # A flat window has var == 0 and then also num == 0: z is exactly 0 (0 / 1), no special case.
    np.maximum(var, 1, out=var)
    z = np.sqrt(var, dtype=np.float64)
    np.divide(num, z, out=z)
    # NaN until the window is full: once a market has a mid it keeps one (carried forward), so
    # the incomplete rows are a prefix of each market, as long as its rows without a mid plus
    # window - 1.
    lengths = np.diff(panel.starts)
    no_mid = np.bincount(panel.market_of(np.flatnonzero(x < 0)), minlength=panel.n_markets)
    prefix = np.minimum(no_mid + window - 1, lengths)
    incomplete = np.repeat(
        np.tile(np.array([True, False]), panel.n_markets),
        np.column_stack([prefix, lengths - prefix]).ravel(),
    )
    z[incomplete] = np.nan
    result: FloatArray = z
    panel.cache[key] = result
    return result


def _held_since(flag: BoolArray, update: BoolArray) -> BoolArray:
    """`flag` at the last position at or before each one where `update` holds (`update[0]` must).

    Equal to `flag[last_true(update)]`, but built from the flag's changes at the update positions
    and a cumulative sum of those (in int8; the values stay 0 or 1), which avoids an int64 index
    per position and a random gather: several times faster.
    """
    at = np.flatnonzero(update)
    steps = np.zeros(len(flag), dtype=np.int8)
    steps[at] = np.diff(flag[at].view(np.int8), prepend=np.int8(0))
    held: BoolArray = np.cumsum(steps, dtype=np.int8).view(np.bool_)
    return held


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
        return self.target_and_changes(panel, params)[0]

    def target_and_changes(self, panel: QuotePanel, params: Mapping[str, Any]) -> tuple[Int8Array, IntArray]:
        z = rolling_zscore(panel, params["window"])
        nan5 = panel.cache.get(("zscore-nan5", params["window"]))
        if nan5 is None:
            nan5 = panel.cache[("zscore-nan5", params["window"])] = np.isnan(z).view(np.int8) * np.int8(5)
        e, x = params["entry_z"], params["exit_z"]
        # Which band of the z axis each quote is in: 0 below -entry, 1 below -exit, 2 within ±exit,
        # 3 below +entry, 4 above it, 5 no z yet. The target can only change where the band does,
        # so the state machine runs on runs of equal bands, not on every quote.
        band = nan5.copy()
        with np.errstate(invalid="ignore"):
            band += z >= -e
            band += z >= -x
            band += z > x
            band += z > e
        if not params["allow_no"]:
            band[band == 4] = 3
        n = len(band)
        if n == 0:
            return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64)
        first_row = panel.first_row
        new_run = np.empty(n, dtype=bool)
        new_run[0] = True
        np.not_equal(band[1:], band[:-1], out=new_run[1:])
        new_run |= first_row
        starts = np.flatnonzero(new_run)
        b = band[starts]
        first = first_row[starts]
        # The hysteresis rule (engine.hysteresis with entries at bands 0 / 4, exits at >= 2 / <= 2
        # or no z, and a reset at each market's first quote) reduces to: long while the last run
        # that is not band 1 (which neither enters nor exits a long) is band 0, counting a market's
        # first run as such a run; short while the last run that is not band 3 is band 4. Two
        # "last such run" lookups replace the general three-lookup hysteresis.
        long = _held_since(b == 0, (b != 1) | first)
        short = _held_since(b == 4, (b != 3) | first)
        compressed = long.view(np.int8) - short.view(np.int8)
        step = np.diff(compressed, prepend=np.int8(0))
        # The target can only change at a run start: where the run's side differs from the run
        # before, or at a market's first run when it is not flat (each market starts flat), which
        # is engine.target_changes, found here on the runs instead of on every row.
        changed = step != 0
        changed[first] = compressed[first] != 0
        # Expand the runs back to rows: a cumulative sum of the changes at run starts is several
        # times faster than np.repeat over ~1/3 as many runs as rows (values stay within int8).
        out = np.zeros(n, dtype=np.int8)
        out[starts] = step
        return np.cumsum(out, dtype=np.int8), starts[changed]
