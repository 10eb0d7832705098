"""The backtest engine for Kalshi binary contracts. Pure Python/numpy/pandas: no ORM import.

What "honest" means here, precisely:

* **Fills at the touch, one quote later.** A strategy's decision at quote *i* may use data up to and
  including *i*; the order executes at quote *i + 1* (or the first later quote where it can). Buying
  YES pays the yes ask, selling YES receives the yes bid; NO goes through the no side (no ask =
  1 − yes bid, no bid = 1 − yes ask). Nothing fills when the needed side of the book is empty
  (Kalshi's empty book is yes bid 0 / yes ask 1; the Jan-2026 legacy shape used yes ask 0), or at or
  after the market's close time. Fills can optionally be capped at the displayed size.
* **Fees per fill**: ``ceil_to_cent(rate × contracts × P × (1 − P))`` with Kalshi's taker rate 0.07
  (maker 0.0175 — 0.035 on combo series — only where the series charges maker fees and the order
  rested), scaled by the series' ``fee_multiplier`` (an event override wins).
* **Settlement**: positions open at close pay ``settlement_value`` per YES contract and
  1 − ``settlement_value`` per NO contract (scalar outcomes included). Markets that have not settled
  within the test are marked to the bid (liquidation value) and flagged.

Money is exact. Prices are held as integer millionths of a dollar (the database's 6 decimals),
contracts as integer hundredths (Kalshi's 0.01 granularity), so cash moves in integer units of
1e-8 dollars and every P&L figure the user sees is an exact Decimal; numpy only vectorises integer
arithmetic. Risk metrics (Sharpe, Sortino, Calmar) are floats by nature.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    from .strategies.base import Strategy

MICRO = 1_000_000  # price unit: 1e-6 dollar
CENTI = 100  # contract unit: 0.01 contract
LEDGER = Decimal(MICRO * CENTI)  # cash unit: 1e-8 dollar = one centi-contract at one micro-dollar
CENT_IN_LEDGER = MICRO  # 1 cent = 1e-2 dollar = 1e6 ledger units
NS_PER_DAY = 86_400 * 1_000_000_000
DAYS_PER_YEAR = 365  # Kalshi trades every day; daily returns are annualised over 365 days, not 252

TAKER_RATE = Fraction(7, 100)
MAKER_RATE = Fraction(175, 10_000)  # 0.25 × taker
COMBO_MAKER_RATE = Fraction(35, 1_000)  # 0.5 × taker, on quadratic_with_combo_maker_fees series
NO_ROW = np.iinfo(np.int64).max

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]
Int32Array = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]

# Fill legs, as stored in FillArrays.leg.
BUY_YES, SELL_YES, BUY_NO, SELL_NO = 1, 2, 3, 4
LEG_NAMES = {BUY_YES: "buy_yes", SELL_YES: "sell_yes", BUY_NO: "buy_no", SELL_NO: "sell_no"}


class BacktestError(ValueError):
    """Bad input to the engine: the message says what is wrong and how to fix it."""


# --------------------------------------------------------------------------------------------------
# Exact money helpers
# --------------------------------------------------------------------------------------------------


def to_micro(value: Decimal | str | float | int | None, *, empty: int) -> int:
    """A dollar price as integer millionths; None becomes `empty`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return empty
    if isinstance(value, float):
        # Floats only arrive from notebooks; prices live on a grid far coarser than 1e-6.
        return round(value * MICRO)
    d = Decimal(value) * MICRO
    if d != d.to_integral_value():
        raise BacktestError(f"price {value} has more than 6 decimals")
    return int(d)


def to_centi(value: Decimal | str | float | int | None, *, unknown: int = -1) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return unknown
    if isinstance(value, float):
        return round(value * CENTI)
    d = Decimal(value) * CENTI
    if d != d.to_integral_value():
        raise BacktestError(f"contract count {value} has more than 2 decimals")
    return int(d)


def ledger_to_dollars(units: int | np.integer[Any]) -> Decimal:
    """Ledger units (1e-8 dollar) as an exact Decimal in dollars."""
    return Decimal(int(units)) / LEDGER


def maker_rate(fee_type: str) -> Fraction:
    """The maker rate a series charges: only the *_maker_fees fee types charge makers at all."""
    if fee_type == "quadratic_with_maker_fees":
        return MAKER_RATE
    if fee_type == "quadratic_with_combo_maker_fees":
        return COMBO_MAKER_RATE
    return Fraction(0)


@lru_cache(maxsize=65_536)
def fee_cents(contracts_centi: int, price_micro: int, rate: Fraction, multiplier: Fraction) -> int:
    """Kalshi's trading fee for one fill in whole cents, rounded up: exact integer arithmetic."""
    if contracts_centi <= 0 or rate == 0 or multiplier == 0:
        return 0
    # cents = rate × mult × (c/100) × (p/1e6) × (1 − p/1e6) × 100
    numerator = rate.numerator * multiplier.numerator * contracts_centi * price_micro * (MICRO - price_micro)
    denominator = rate.denominator * multiplier.denominator * MICRO * MICRO
    return -(-numerator // denominator)


def fee_cents_array(
    qty: IntArray, price: IntArray, rate: Fraction, mult_num: IntArray, mult_den: IntArray
) -> IntArray:
    """`fee_cents` for many fills at once, still exact.

    float64 gives the quotient to ~1e-16; only fills whose quotient lands within 1e-6 of a whole
    cent (where rounding up could go either way) are recomputed with exact integers.
    """
    if len(qty) == 0:
        return np.zeros(0, dtype=np.int64)
    q = (
        float(rate)
        * (mult_num / mult_den)
        * qty.astype(np.float64)
        * price.astype(np.float64)
        * (MICRO - price).astype(np.float64)
        / float(MICRO * MICRO)
    )
    out = np.ceil(q).astype(np.int64)
    near = np.abs(q - np.rint(q)) < 1e-6
    for i in np.flatnonzero(near):
        out[i] = fee_cents(int(qty[i]), int(price[i]), rate, Fraction(int(mult_num[i]), int(mult_den[i])))
    return out


def trading_fee(
    contracts: Decimal | int,
    price: Decimal | str,
    *,
    multiplier: Decimal | str = Decimal(1),
    maker: bool = False,
    fee_type: str = "quadratic",
) -> Decimal:
    """The fee in dollars for one fill of `contracts` at `price`: ceil_to_cent(rate·C·P·(1−P))."""
    rate = maker_rate(fee_type) if maker else TAKER_RATE
    cents = fee_cents(
        to_centi(Decimal(contracts)), to_micro(price, empty=0), rate, Fraction(Decimal(multiplier))
    )
    return Decimal(cents) / 100


# --------------------------------------------------------------------------------------------------
# Input: one panel of quote series, one contiguous segment per market
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketInfo:
    """What the engine needs to know about a market besides its quotes."""

    ticker: str
    settlement_value: Decimal | None = None
    close_time: datetime | None = None
    fee_type: str = "quadratic"
    fee_multiplier: Decimal = Decimal(1)
    title: str = ""

    @property
    def close_ns(self) -> int:
        if self.close_time is None:
            return NO_ROW
        if self.close_time.tzinfo is None:
            raise BacktestError(f"{self.ticker}: close_time must be timezone-aware (UTC)")
        return int(self.close_time.timestamp() * 1_000_000) * 1_000


def _ns(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BacktestError(f"{value} must be timezone-aware (UTC)")
    return int(value.timestamp() * 1_000_000) * 1_000


@dataclass(eq=False)
class QuotePanel:
    """Quote series of one or more markets, concatenated; market m owns rows starts[m]:starts[m+1].

    Prices are integer micro-dollars with empty sides normalised (bid 0 = no bid, ask MICRO = no
    ask); counts are integer centi-contracts, -1 where unknown. Rows are sorted by time within a
    market. Strategies read the derived views (mid, masks, time to close) cached on the panel.
    """

    markets: list[MarketInfo]
    time: IntArray
    bid: IntArray
    ask: IntArray
    last: IntArray
    volume: IntArray
    bid_size: IntArray
    ask_size: IntArray
    starts: IntArray
    end: datetime | None = None
    # Strategies may memoise expensive intermediates here (rolling stats keyed by window), which
    # is what makes parameter sweeps cheap.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in ("bid", "ask", "last", "volume", "bid_size", "ask_size"):
            if len(getattr(self, name)) != n:
                raise BacktestError(f"column {name} has {len(getattr(self, name))} rows, expected {n}")
        if len(self.starts) != len(self.markets) + 1 or self.starts[-1] != n:
            raise BacktestError("starts must have one entry per market plus the row count")

    def __len__(self) -> int:
        return len(self.time)

    @property
    def n_markets(self) -> int:
        return len(self.markets)

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        markets: Sequence[MarketInfo],
        columns: Mapping[str, npt.ArrayLike],
        *,
        end: datetime | None = None,
    ) -> QuotePanel:
        """Build from integer columns (`ticker_index`, `time` ns, `yes_bid`/`yes_ask` micro, ...).

        Missing prices must already be encoded: bid < 0 or ask <= 0 or ask >= MICRO count as empty.
        """
        idx = np.asarray(columns["ticker_index"], dtype=np.int64)
        t = np.asarray(columns["time"], dtype=np.int64)
        order: IntArray | None = None
        if len(t) > 1 and not _sorted_by_market_and_time(idx, t):
            order = np.lexsort((t, idx)).astype(np.int64)
            idx, t = idx[order], t[order]

        def col(name: str, default: int) -> IntArray:
            if name not in columns:
                # A read-only broadcast instead of a filled copy: absent columns cost no memory
                # traffic, and any attempt to write into one fails loudly.
                return np.broadcast_to(np.int64(default), (len(t),))
            arr = np.asarray(columns[name], dtype=np.int64)
            return arr[order] if order is not None else arr

        bid = np.maximum(col("yes_bid", 0), 0)
        ask = np.minimum(col("yes_ask", MICRO), MICRO)
        np.copyto(ask, MICRO, where=ask <= 0)
        # A duplicate timestamp in one market (two sources saw the same instant) keeps the last row.
        if len(t) > 1:
            # Equal timestamps are rare, so the market check only runs on those candidates.
            same_t = np.flatnonzero(t[1:] == t[:-1])
            dup_rows = same_t[idx[same_t + 1] == idx[same_t]]
            if len(dup_rows):
                keep = np.ones(len(t), dtype=bool)
                keep[dup_rows] = False
                idx, t, bid, ask = idx[keep], t[keep], bid[keep], ask[keep]
                rest = {n: col(n, -1)[keep] for n in ("last_price", "volume", "yes_bid_size", "yes_ask_size")}
            else:
                rest = {n: col(n, -1) for n in ("last_price", "volume", "yes_bid_size", "yes_ask_size")}
        else:
            rest = {n: col(n, -1) for n in ("last_price", "volume", "yes_bid_size", "yes_ask_size")}
        if len(idx) and idx[0] < 0:
            raise BacktestError("ticker_index must not be negative")
        # Rows are ordered by market now: each market's first row is a binary search away (an
        # index beyond the markets leaves starts[-1] short of the row count, which is rejected).
        starts = np.searchsorted(idx, np.arange(len(markets) + 1), side="left").astype(np.int64)
        return cls(
            markets=list(markets),
            time=t,
            bid=bid,
            ask=ask,
            last=rest["last_price"],
            volume=rest["volume"],
            bid_size=rest["yes_bid_size"],
            ask_size=rest["yes_ask_size"],
            starts=starts,
            end=end,
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        markets: Sequence[MarketInfo] | Mapping[str, MarketInfo] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> QuotePanel:
        """Build from a DataFrame with columns `ticker`, `time`, `yes_bid`, `yes_ask` and optionally
        `last_price`, `volume`, `yes_bid_size`, `yes_ask_size` (prices in dollars: Decimal, str or
        float; a missing price is an empty side). Markets not described get no settlement.
        """
        missing = {"ticker", "time", "yes_bid", "yes_ask"} - set(frame.columns)
        if missing:
            raise BacktestError(
                f"the quote frame lacks column(s) {', '.join(sorted(missing))}; "
                "expected ticker, time, yes_bid, yes_ask [, last_price, volume, yes_bid_size, yes_ask_size]"
            )
        infos: dict[str, MarketInfo]
        if markets is None:
            infos = {}
        elif isinstance(markets, Mapping):
            infos = dict(markets)
        else:
            infos = {m.ticker: m for m in markets}
        tickers = list(dict.fromkeys([*infos.keys(), *pd.unique(frame["ticker"]).tolist()]))
        present = set(frame["ticker"])
        tickers = [t for t in tickers if t in present]
        info_list = [infos.get(t, MarketInfo(ticker=t)) for t in tickers]
        times = pd.to_datetime(frame["time"], utc=True)
        t_ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        mask = np.ones(len(frame), dtype=bool)
        if (s := _ns(start)) is not None:
            mask &= t_ns >= s
        if (e := _ns(end)) is not None:
            mask &= t_ns <= e
        position = {t: i for i, t in enumerate(tickers)}
        columns: dict[str, npt.ArrayLike] = {
            "ticker_index": frame["ticker"].map(position).to_numpy(dtype=np.int64)[mask],
            "time": t_ns[mask],
            "yes_bid": _micro_column(frame["yes_bid"], empty=0)[mask],
            "yes_ask": _micro_column(frame["yes_ask"], empty=MICRO)[mask],
        }
        if "last_price" in frame:
            columns["last_price"] = _micro_column(frame["last_price"], empty=-1)[mask]
        for name in ("volume", "yes_bid_size", "yes_ask_size"):
            if name in frame:
                columns[name] = np.array([to_centi(v) for v in frame[name]], dtype=np.int64)[mask]
        return cls.from_arrays(info_list, columns, end=end)

    # ---- derived views (cached) -------------------------------------------------------------------

    @cached_property
    def market_index(self) -> IntArray:
        return np.repeat(np.arange(self.n_markets, dtype=np.int64), np.diff(self.starts))

    def market_of(self, rows: IntArray) -> IntArray:
        """`market_index[rows]`, by binary search in `starts` unless the per-row array is built."""
        if "market_index" in self.__dict__:
            return self.market_index[rows]
        # The last market starting at or before the row: empty markets share their start with the
        # next market, and side="right" skips past them.
        return np.searchsorted(self.starts, rows, side="right") - 1

    @cached_property
    def row_start(self) -> IntArray:
        """For each row, the first row of its market."""
        return self.starts[:-1][self.market_index]

    @cached_property
    def first_row(self) -> BoolArray:
        mask = np.zeros(len(self), dtype=bool)
        nonempty = self.starts[:-1][np.diff(self.starts) > 0]
        mask[nonempty] = True
        return mask

    @cached_property
    def close_ns(self) -> IntArray:
        return np.array([m.close_ns for m in self.markets], dtype=np.int64)

    @cached_property
    def row_close_ns(self) -> IntArray:
        return np.repeat(self.close_ns, np.diff(self.starts))

    @cached_property
    def has_bid(self) -> BoolArray:
        return self.bid > 0

    @cached_property
    def has_ask(self) -> BoolArray:
        return self.ask < MICRO

    @cached_property
    def two_sided(self) -> BoolArray:
        return self.has_bid & self.has_ask & (self.bid <= self.ask)

    @cached_property
    def tradable(self) -> BoolArray:
        """Rows at which an order may execute: before the market's close and within the period."""
        ok = self.time < self.row_close_ns
        if (e := _ns(self.end)) is not None:
            ok &= self.time <= e
        return ok

    @cached_property
    def fee_fractions(self) -> tuple[IntArray, IntArray]:
        """Each market's fee multiplier as an exact fraction (numerators, denominators)."""
        fracs = [Fraction(m.fee_multiplier) for m in self.markets]
        return (
            np.array([f.numerator for f in fracs], dtype=np.int64),
            np.array([f.denominator for f in fracs], dtype=np.int64),
        )

    @cached_property
    def next_ask_row(self) -> IntArray:
        """First tradable row at or after each row with a yes ask (buy YES / sell NO)."""
        return next_true(self.tradable & self.has_ask)

    @cached_property
    def next_bid_row(self) -> IntArray:
        """First tradable row at or after each row with a yes bid (sell YES / buy NO)."""
        return next_true(self.tradable & self.has_bid)

    @cached_property
    def ask_gaps(self) -> NextTrue:
        """Where a buy YES / sell NO can not fill (no ask, or not tradable): the exceptions."""
        return NextTrue(self.tradable & self.has_ask)

    @cached_property
    def bid_gaps(self) -> NextTrue:
        """Where a sell YES / buy NO can not fill (no bid, or not tradable)."""
        return NextTrue(self.tradable & self.has_bid)

    def next_ask_at(self, rows: IntArray) -> IntArray:
        """`next_ask_row[rows]`. A single run asks this for a few thousand rows, where looking
        past the (few) gaps beats building the per-row array; sweeps build it once
        (`prepare_for_sweeps`)."""
        if "next_ask_row" in self.__dict__:
            return self.next_ask_row[rows]
        return self.ask_gaps.at(rows)

    def next_bid_at(self, rows: IntArray) -> IntArray:
        """`next_bid_row[rows]`, like `next_ask_at`."""
        if "next_bid_row" in self.__dict__:
            return self.next_bid_row[rows]
        return self.bid_gaps.at(rows)

    @cached_property
    def yes_mark(self) -> IntArray:
        """What a YES contract would fetch: the yes bid, carried over quotes without one."""
        # An empty bid is stored as 0, the fill value itself.
        return fill_forward(self.bid.copy(), self.has_bid, self.first_row)

    @cached_property
    def no_mark(self) -> IntArray:
        """What a NO contract would fetch: 1 − yes ask, carried over quotes without an ask."""
        # An empty ask is stored as MICRO, the fill value itself.
        out = fill_forward(self.ask.copy(), self.has_ask, self.first_row)
        np.subtract(MICRO, out, out=out)
        return out

    @cached_property
    def yes_mark_steps(self) -> MarkSteps:
        """Where the yes mark changes and by how much; it is constant in between. (A step at a
        market's first row compares with the previous market: harmless, as only steps strictly
        inside a holding period are ever read.)"""
        return MarkSteps.build(self, self.yes_mark)

    @cached_property
    def no_mark_steps(self) -> MarkSteps:
        """Where the no mark changes and by how much."""
        return MarkSteps.build(self, self.no_mark)

    @cached_property
    def interleaved_marks(self) -> IntArray:
        """Row r's NO mark at 2r and its YES mark at 2r + 1: valuing a position at a row is then
        one gather from one cache line instead of a gather from each mark and a select."""
        out = np.empty(2 * len(self), dtype=np.int64)
        out[0::2] = self.no_mark
        out[1::2] = self.yes_mark
        return out

    def prepare_for_sweeps(self) -> None:
        """Build the per-row lookup arrays that many runs over this panel share: one gather per
        lookup instead of a binary search each run."""
        for name in (
            "market_index",
            "next_ask_row",
            "next_bid_row",
            "time_rank",
            "sorted_time",
            "interleaved_marks",
        ):
            getattr(self, name)
        self.yes_mark_steps.index_rows(len(self), self.time_rank)
        self.no_mark_steps.index_rows(len(self), self.time_rank)

    @cached_property
    def settlement_micro(self) -> IntArray:
        """Each market's settlement value in micro-dollars (0 where there is none)."""
        return np.array(
            [
                to_micro(m.settlement_value, empty=0) if m.settlement_value is not None else 0
                for m in self.markets
            ],
            dtype=np.int64,
        )

    @cached_property
    def settled(self) -> BoolArray:
        """Markets whose outcome the test may use: settled, and closed within the test period
        (knowing any other outcome would be lookahead)."""
        end_ns = _ns(self.end)
        out = np.zeros(self.n_markets, dtype=bool)
        for i, m in enumerate(self.markets):
            if m.settlement_value is None or m.close_time is None:
                continue
            out[i] = end_ns is None or m.close_ns <= end_ns
        out.flags.writeable = False
        return out

    @cached_property
    def valuation_stop(self) -> IntArray:
        """Per market, the row from which on it is no longer valued at the marks: its end, or for a
        settled market the first quote at or after the close (it is worth the settlement from
        then on)."""
        stop = self.starts[1:].copy()
        for m in np.flatnonzero(self.settled & (np.diff(self.starts) > 0)):
            lo, hi = int(self.starts[m]), int(self.starts[m + 1])
            stop[m] = lo + int(np.searchsorted(self.time[lo:hi], self.markets[m].close_ns, side="left"))
        return stop

    @cached_property
    def time_range(self) -> tuple[int, int]:
        return int(self.time.min()), int(self.time.max())

    @cached_property
    def mid2(self) -> IntArray:
        """Twice the mid in micro-dollars (an exact integer), carried forward over one-sided quotes.

        Rows before a market's first two-sided quote hold -1.
        """
        raw = self.bid + self.ask
        np.copyto(raw, -1, where=~self.two_sided)
        return fill_forward(raw, self.two_sided, self.first_row)

    @cached_property
    def mid(self) -> FloatArray:
        """The mid in dollars (NaN before the first two-sided quote)."""
        m = self.mid2.astype(np.float64) / (2 * MICRO)
        m[self.mid2 < 0] = np.nan
        return m

    @cached_property
    def seconds_to_close(self) -> FloatArray:
        out = (self.row_close_ns - self.time).astype(np.float64) / 1e9
        out[self.row_close_ns == NO_ROW] = np.inf
        return out

    @cached_property
    def time_order(self) -> IntArray:
        """Row indices in global time order (identity when already sorted): the portfolio clock.
        Rows at the same instant come in no particular order (an unstable sort is twice as fast,
        and every user only needs equal times to be adjacent)."""
        if len(self.time) < 2 or bool(np.all(self.time[1:] >= self.time[:-1])):
            return np.arange(len(self.time), dtype=np.int64)
        return np.argsort(self.time).astype(np.int64)

    @cached_property
    def sorted_time(self) -> IntArray:
        return self.time[self.time_order]

    @cached_property
    def time_rank(self) -> IntArray:
        """Each row's position in global time order (the inverse of `time_order`)."""
        rank = np.empty(len(self), dtype=np.int64)
        rank[self.time_order] = np.arange(len(self), dtype=np.int64)
        return rank

    # ---- slicing ------------------------------------------------------------------------------------

    def rows_between(self, start_ns: int | None, end_ns: int | None) -> BoolArray:
        mask = np.ones(len(self), dtype=bool)
        if start_ns is not None:
            mask &= self.time >= start_ns
        if end_ns is not None:
            mask &= self.time < end_ns
        return mask

    def take(self, mask: BoolArray, *, end: datetime | None) -> QuotePanel:
        """The rows in `mask` as a new panel (markets left with no rows are kept, empty)."""
        idx = self.market_index[mask]
        counts = np.bincount(idx, minlength=self.n_markets)
        starts = np.zeros(self.n_markets + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return QuotePanel(
            markets=self.markets,
            time=self.time[mask],
            bid=self.bid[mask],
            ask=self.ask[mask],
            last=self.last[mask],
            volume=self.volume[mask],
            bid_size=self.bid_size[mask],
            ask_size=self.ask_size[mask],
            starts=starts,
            end=end,
        )

    def to_frame(self) -> pd.DataFrame:
        """The quotes as a DataFrame with Decimal-free float columns, for charts and notebooks."""
        return pd.DataFrame(
            {
                "ticker": [self.markets[i].ticker for i in self.market_index],
                "time": pd.to_datetime(self.time, utc=True),
                "yes_bid": np.where(self.has_bid, self.bid / MICRO, np.nan),
                "yes_ask": np.where(self.has_ask, self.ask / MICRO, np.nan),
                "last_price": np.where(self.last >= 0, self.last / MICRO, np.nan),
            }
        )


@dataclass(eq=False)
class MarkSteps:
    """The rows where a mark changes (sorted), by how much, and at what time."""

    rows: IntArray
    delta: IntArray
    time: IntArray
    # For sweeps: the number of steps at or before each panel row (a gather instead of a search),
    # and per step a row of (delta, time, sort key for the portfolio curve, see mark_to_market):
    # a run gathers the steps inside its holding periods, and one gather of such rows touches a
    # third of the cache lines that gathers from three arrays do.
    upto: npt.NDArray[np.int32] | None = None
    table: npt.NDArray[np.int64] | None = None

    @classmethod
    def build(cls, panel: QuotePanel, mark: IntArray) -> MarkSteps:
        """From a mark per row."""
        d = mark[1:] - mark[:-1]
        nz = np.flatnonzero(d != 0)  # a boolean mask scans several times faster than int64 values
        return cls(rows=nz + 1, delta=d[nz], time=panel.time[nz + 1])

    def index_rows(self, n: int, time_rank: IntArray) -> None:
        if self.upto is None:
            mask = np.zeros(n, dtype=bool)
            mask[self.rows] = True
            self.upto = np.cumsum(mask, dtype=np.int32)
            self.table = np.column_stack([self.delta, self.time, 2 * time_rank[self.rows]])

    def count_upto(self, rows: IntArray) -> npt.NDArray[np.signedinteger[Any]]:
        """How many steps are at or before each of `rows` (all >= 0)."""
        if self.upto is not None:
            return self.upto[rows]
        return np.searchsorted(self.rows, rows, side="right")


def _ranges(starts: IntArray, counts: IntArray) -> IntArray:
    """starts[0], starts[0] + 1, ... (counts[0] values), then the same for each following range."""
    total = int(counts.sum())
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)


class NextTrue:
    """ "The first row at or after r where a mask holds" for a mostly-true mask, without a per-row
    array: only the false rows (the gaps) are stored, and a row inside a run of gaps answers with
    the row after the run (NO_ROW past the end)."""

    def __init__(self, mask: BoolArray) -> None:
        self.gaps = np.flatnonzero(~mask)
        run_end = np.append(self.gaps[1:] != self.gaps[:-1] + 1, True) if len(self.gaps) else self.gaps
        after_run = self.gaps[run_end] + 1
        after_run[after_run >= len(mask)] = NO_ROW
        # Each gap's run is the number of runs that ended before it.
        self.after = after_run[np.cumsum(run_end) - run_end]

    def at(self, rows: IntArray) -> IntArray:
        if len(self.gaps) == 0:
            return rows.copy()
        k = np.minimum(np.searchsorted(self.gaps, rows), len(self.gaps) - 1)
        return np.where(self.gaps[k] == rows, self.after[k], rows)


def _micro_column(series: pd.Series[Any], *, empty: int) -> IntArray:
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
        out = np.rint(values * MICRO)
        out[np.isnan(values)] = empty
        result: IntArray = out.astype(np.int64)
        return result
    return np.array([to_micro(v, empty=empty) for v in series], dtype=np.int64)


def _sorted_by_market_and_time(idx: IntArray, t: IntArray) -> bool:
    """Whether rows are ordered by market, then time (the order the loader and the database give)."""
    if not bool(np.all(idx[1:] >= idx[:-1])):
        return False
    # Time only goes backwards where a new market begins: check just those few rows.
    back = np.flatnonzero(t[1:] < t[:-1])
    return bool(np.all(idx[back + 1] > idx[back]))


def fill_forward(values: IntArray, valid: BoolArray, first_row: BoolArray) -> IntArray:
    """Fill, in place, every row where `valid` is false with the value of the last valid row
    before it in its market; rows before a market's first valid one take the market's first row's
    value (so `values` should hold the fill value at invalid rows).

    Only the gaps are touched: each run of consecutive gap rows copies the row just before the
    run, which is valid or a market's first row and hence in the same market. Quotes are mostly
    complete, so this costs one scan of the mask instead of a per-row index array.
    """
    gaps = np.flatnonzero(~(valid | first_row))
    if len(gaps):
        run_start = np.empty(len(gaps), dtype=bool)
        run_start[0] = True
        np.not_equal(gaps[1:], gaps[:-1] + 1, out=run_start[1:])
        source = gaps[run_start] - 1
        values[gaps] = values[source[np.cumsum(run_start) - 1]]
    return values


def last_true(mask: BoolArray) -> IntArray:
    """For each row, the last row at or before it where `mask` holds (-1 if none).

    A running count of true rows indexes the list of true rows: a cumulative sum and a gather are
    several times faster than numpy's sequential maximum.accumulate over row indices.
    """
    rows = np.empty(int(np.count_nonzero(mask)) + 1, dtype=np.int64)
    rows[0] = -1
    rows[1:] = np.flatnonzero(mask)
    # 32-bit counts halve the memory traffic (panels stay far below 2**31 rows).
    return rows[np.cumsum(mask, dtype=np.int32)]


def next_true(mask: BoolArray) -> IntArray:
    """For each row, the first row at or after it where `mask` holds (NO_ROW if none)."""
    n = len(mask)
    rows = np.empty(int(np.count_nonzero(mask)) + 1, dtype=np.int64)
    rows[:-1] = np.flatnonzero(mask)
    rows[-1] = NO_ROW
    # The number of true rows strictly before each row is the index of the next one.
    before = np.zeros(n, dtype=np.int32)
    if n:
        np.cumsum(mask[:-1], dtype=np.int32, out=before[1:])
    return rows[before]


def hysteresis(
    enter_long: BoolArray,
    enter_short: BoolArray,
    exit_long: BoolArray,
    exit_short: BoolArray,
    first_row: BoolArray,
) -> Int8Array:
    """Target side per row (+1 YES, -1 NO, 0 flat) from entry/exit conditions, vectorised.

    The sequential rule it reproduces exactly, row by row, with `prev` the previous row's target
    (0 at each market's first row):

        if prev == +1 and exit_long: prev = 0
        if prev == -1 and exit_short: prev = 0
        if prev == 0: prev = +1 if enter_long else -1 if enter_short else 0

    where an entry always counts as an exit of the opposite side (exit_short |= enter_long,
    exit_long |= enter_short). That makes every row either *set* the target or *clamp* it towards
    0, so "the last row that set / clamped" lookups replace the loop.
    """
    xl = exit_long | enter_short | first_row
    xs = exit_short | enter_long | first_row
    set_rows = enter_long | enter_short | (xl & xs)
    last_set = last_true(set_rows)
    last_xl = last_true(xl & ~set_rows)
    last_xs = last_true(xs & ~set_rows)
    at = np.maximum(last_set, 0)
    value = np.where(enter_long[at], 1, np.where(enter_short[at], -1, 0)).astype(np.int8)
    value[last_set < 0] = 0
    value[(value == 1) & (last_xl > last_set)] = 0
    value[(value == -1) & (last_xs > last_set)] = 0
    return value


def first_signal_side(side: Int8Array, panel: QuotePanel) -> Int8Array:
    """Hold the side of each market's first non-zero signal from that row to the end of the market."""
    n = len(panel)
    ar = np.arange(n, dtype=np.int64)
    first_idx = np.full(panel.n_markets, NO_ROW, dtype=np.int64)
    nz = side != 0
    if nz.any():
        rows = ar[nz]
        mk = panel.market_index[nz]
        # rows are sorted, so the first occurrence of each market is its first signal
        uniq, pos = np.unique(mk, return_index=True)
        first_idx[uniq] = rows[pos]
    f = first_idx[panel.market_index]
    out = np.zeros(n, dtype=np.int8)
    held = ar >= f
    out[held] = side[np.minimum(f[held], n - 1)]
    return out


# --------------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestConfig:
    """How orders are sized and capital is counted."""

    contracts: Decimal = Decimal(10)
    capital: Decimal = Decimal(1000)
    cap_to_displayed_size: bool = False

    def __post_init__(self) -> None:
        if self.contracts <= 0 or self.contracts != self.contracts.quantize(Decimal("0.01")):
            raise BacktestError("contracts must be positive with at most 2 decimals (Kalshi's 0.01 step)")
        if self.capital <= 0:
            raise BacktestError("capital must be positive")


@dataclass
class FillArrays:
    row: IntArray
    market: IntArray
    leg: IntArray
    qty: IntArray  # centi-contracts
    price: IntArray  # micro-dollars, in the leg's own side (NO legs at NO prices)
    fee: IntArray  # cents
    maker: BoolArray
    position_after: IntArray  # signed centi-contracts (+YES / -NO)
    cash: IntArray  # ledger units, signed

    @classmethod
    def empty(cls) -> FillArrays:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, z, np.zeros(0, dtype=bool), z, z)


@dataclass
class TripArrays:
    """Round trips: a position from flat to flat (or to settlement / the final mark)."""

    market: IntArray
    side: IntArray  # +1 YES, -1 NO
    qty: IntArray  # centi-contracts (largest size held)
    entry_row: IntArray
    exit_row: IntArray  # -1 when closed by settlement or the final mark
    entry_ns: IntArray
    exit_ns: IntArray
    entry_cost: IntArray  # ledger units paid for the contracts (no fees)
    exit_value: IntArray  # ledger units received (sale, settlement or mark)
    fees: IntArray  # cents, entry and exit
    exit_reason: list[str]

    @property
    def pnl(self) -> IntArray:
        return self.exit_value - self.entry_cost - self.fees * CENT_IN_LEDGER


@dataclass(frozen=True)
class TradeRecord:
    """One round trip with exact Decimal money, as the trades table and the database store it."""

    ticker: str
    side: str
    contracts: Decimal
    entry_time: datetime
    entry_price: Decimal
    exit_time: datetime
    exit_price: Decimal
    exit_reason: str
    fees: Decimal
    pnl: Decimal


@dataclass
class BacktestResult:
    """Everything one run produced. DataFrames are built on demand with exact Decimal money columns."""

    strategy: str
    params: dict[str, Any]
    config: BacktestConfig
    panel: QuotePanel
    target: Int8Array
    fills: FillArrays
    trips: TripArrays
    final_pnl: IntArray  # per market, ledger units
    settled: BoolArray  # per market: settled within the test (else marked to the bid)
    curve_ns: IntArray
    curve_pnl: IntArray  # portfolio P&L, ledger units, at curve_ns
    metrics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    # ---- DataFrames ---------------------------------------------------------------------------------

    def trade_records(self) -> list[TradeRecord]:
        t = self.trips
        return [
            TradeRecord(
                ticker=self.panel.markets[int(m)].ticker,
                side="yes" if side > 0 else "no",
                contracts=Decimal(int(q)) / CENTI,
                entry_time=utc_from_ns(int(en)),
                entry_price=_vwap(cost, q),
                exit_time=utc_from_ns(int(ex)),
                exit_price=_vwap(value, q),
                exit_reason=reason,
                fees=Decimal(int(fee)) / 100,
                pnl=ledger_to_dollars(pnl),
            )
            for m, side, q, en, ex, cost, value, reason, fee, pnl in zip(
                t.market,
                t.side,
                t.qty,
                t.entry_ns,
                t.exit_ns,
                t.entry_cost,
                t.exit_value,
                t.exit_reason,
                t.fees,
                t.pnl,
                strict=True,
            )
        ]

    @property
    def trades(self) -> pd.DataFrame:
        """Round trips with exact Decimal prices, fees and P&L."""
        columns = [f.name for f in dataclasses.fields(TradeRecord)]
        frame = pd.DataFrame([dataclasses.astuple(r) for r in self.trade_records()], columns=columns)
        for name in ("entry_time", "exit_time"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame

    @property
    def fills_frame(self) -> pd.DataFrame:
        f = self.fills
        return pd.DataFrame(
            {
                "ticker": [self.panel.markets[m].ticker for m in f.market],
                "time": pd.to_datetime(self.panel.time[f.row], utc=True),
                "action": [LEG_NAMES[int(x)] for x in f.leg],
                "contracts": [Decimal(int(q)) / CENTI for q in f.qty],
                "price": [Decimal(int(p)) / MICRO for p in f.price],
                "fee": [Decimal(int(c)) / 100 for c in f.fee],
                "maker": f.maker,
                "position_after": [Decimal(int(p)) / CENTI for p in f.position_after],
            }
        )

    @property
    def equity(self) -> pd.DataFrame:
        """Portfolio equity (capital + P&L) at every quote of the test, exact Decimal dollars."""
        capital = self.config.capital
        return pd.DataFrame(
            {
                "time": pd.to_datetime(self.curve_ns, utc=True),
                "pnl": [ledger_to_dollars(v) for v in self.curve_pnl],
                "equity": [capital + ledger_to_dollars(v) for v in self.curve_pnl],
            }
        )

    @property
    def positions(self) -> pd.DataFrame:
        """Per market: final P&L and how it ended (settled or marked to the bid)."""
        return pd.DataFrame(
            {
                "ticker": [m.ticker for m in self.panel.markets],
                "rows": np.diff(self.panel.starts),
                "settled": self.settled,
                "settlement_value": [m.settlement_value for m in self.panel.markets],
                "pnl": [ledger_to_dollars(v) for v in self.final_pnl],
            }
        )

    @property
    def net_pnl(self) -> Decimal:
        return ledger_to_dollars(int(self.final_pnl.sum()))

    @property
    def fees_paid(self) -> Decimal:
        return Decimal(int(self.fills.fee.sum())) / 100

    def downsampled_equity(self, max_points: int = 1500) -> list[tuple[int, Decimal]]:
        """The equity curve thinned for charts: each bucket keeps its lowest and last points."""
        n = len(self.curve_ns)
        capital = self.config.capital
        if n <= max_points:
            keep = np.arange(n)
        else:
            buckets = np.linspace(0, n, max_points // 2 + 1).astype(np.int64)
            lows = [
                b + int(np.argmin(self.curve_pnl[b:e]))
                for b, e in zip(buckets[:-1], buckets[1:], strict=True)
                if e > b
            ]
            keep = np.unique(np.concatenate([np.array(lows, dtype=np.int64), buckets[1:] - 1, [0]]))
        return [(int(self.curve_ns[i]), capital + ledger_to_dollars(self.curve_pnl[i])) for i in keep]


def _vwap(ledger_amount: int | np.integer[Any], qty_centi: int | np.integer[Any]) -> Decimal:
    if int(qty_centi) == 0:
        return Decimal(0)
    return (Decimal(int(ledger_amount)) / Decimal(int(qty_centi)) / MICRO).quantize(Decimal("0.000001"))


# --------------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------------


def target_changes(panel: QuotePanel, target: Int8Array) -> IntArray:
    """The rows where the target changes: where it differs from the row before, and at a market's
    first row wherever it is not flat (each market starts flat). Ascending."""
    n = len(panel)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    changed = np.empty(n, dtype=bool)
    np.not_equal(target[1:], target[:-1], out=changed[1:])
    first_rows = panel.starts[:-1][np.diff(panel.starts) > 0]
    changed[first_rows] = target[first_rows] != 0
    return np.flatnonzero(changed)


def simulate_fills(
    panel: QuotePanel,
    target: Int8Array,
    config: BacktestConfig,
    *,
    changes: IntArray | None = None,
) -> FillArrays:
    """Turn a target side per row into fills at the next quote(s), honouring the book.

    The loop runs once per *change* of target, not once per quote: the first row at which the
    needed side of the book is present is looked up ("next row where ...", see next_ask_at).
    `changes` must equal `target_changes(panel, target)`; a strategy that already knows its change
    points passes them to spare a scan of every row.
    """
    n = len(panel)
    if n == 0:
        return FillArrays.empty()
    size = to_centi(config.contracts)
    if changes is None:
        changes = target_changes(panel, target)
    seg_last = panel.starts[1:] - 1  # last row of each market
    # An order from the target set at row k may execute at rows k+1 .. window_end (inclusive):
    # up to the next change in the same market, or the market's last row.
    if len(changes):
        mk_changes = panel.market_of(changes)
        nxt_change = np.append(changes[1:], NO_ROW)
        same = np.append(mk_changes[1:] == mk_changes[:-1], False)
        window_end = np.where(same, nxt_change, seg_last[mk_changes])
    else:
        window_end = np.zeros(0, dtype=np.int64)

    if not config.cap_to_displayed_size:
        return _fills_uncapped(panel, target, changes, window_end, size)
    nxt_ask = panel.next_ask_row
    nxt_bid = panel.next_bid_row
    bid, ask = panel.bid, panel.ask
    bid_size, ask_size = panel.bid_size, panel.ask_size
    cap = config.cap_to_displayed_size
    rates = [
        (TAKER_RATE, maker_rate(m.fee_type), Fraction(m.fee_multiplier), m.fee_type) for m in panel.markets
    ]
    rows: list[int] = []
    legs: list[int] = []
    qtys: list[int] = []
    prices: list[int] = []
    fees: list[int] = []
    makers: list[bool] = []
    after: list[int] = []
    cash: list[int] = []

    position = 0
    current_market = -1
    changes_l = changes.tolist()
    window_l = window_end.tolist()
    targets_l = target[changes].tolist()
    mi_l = panel.market_of(changes).tolist()
    for k, hi, tgt, m in zip(changes_l, window_l, targets_l, mi_l, strict=True):
        if m != current_market:
            position = 0
            current_market = m
        goal = tgt * size
        j = k + 1
        taker, _maker, mult, _fee_type = rates[m]
        used_row, used = -1, 0
        while position != goal and j <= hi:
            up = goal > position
            j = int(nxt_ask[j] if up else nxt_bid[j])
            if j > hi:
                break
            avail = NO_ROW
            if cap:
                shown = int(ask_size[j] if up else bid_size[j])
                if shown >= 0:
                    # A flip's two legs at one quote share the size displayed there.
                    avail = shown - (used if used_row == j else 0)
                if avail <= 0:
                    j += 1
                    continue
            yes_price = int(ask[j] if up else bid[j])
            # Close the opposite side first, then open towards the goal; each leg is one fill.
            if up and position < 0:
                q = min(-position, goal - position, avail)
                leg, price, new_pos, sign = SELL_NO, MICRO - yes_price, position + q, 1
            elif up:
                q = min(goal - position, avail)
                leg, price, new_pos, sign = BUY_YES, yes_price, position + q, -1
            elif position > 0:
                q = min(position, position - goal, avail)
                leg, price, new_pos, sign = SELL_YES, yes_price, position - q, 1
            else:
                q = min(position - goal, avail)
                leg, price, new_pos, sign = BUY_NO, MICRO - yes_price, position - q, -1
            fee = fee_cents(q, price, taker, mult)
            rows.append(j)
            legs.append(leg)
            qtys.append(q)
            prices.append(price)
            fees.append(fee)
            makers.append(False)
            after.append(new_pos)
            cash.append(sign * q * price - fee * CENT_IN_LEDGER)
            position = new_pos
            used = (used if used_row == j else 0) + q
            used_row = j
            # Without a cap, a flip's second leg fills at the same quote on the next pass; with
            # one, the loop moves on once the displayed size is used up.
    return FillArrays(
        row=np.array(rows, dtype=np.int64),
        market=panel.market_of(np.array(rows, dtype=np.int64)),
        leg=np.array(legs, dtype=np.int64),
        qty=np.array(qtys, dtype=np.int64),
        price=np.array(prices, dtype=np.int64),
        fee=np.array(fees, dtype=np.int64),
        maker=np.array(makers, dtype=bool),
        position_after=np.array(after, dtype=np.int64),
        cash=np.array(cash, dtype=np.int64),
    )


def _fills_uncapped(
    panel: QuotePanel, target: Int8Array, changes: IntArray, window_end: IntArray, size: int
) -> FillArrays:
    """Without a size cap every fill is complete, so only the fill row of each change of target
    needs a (tiny, scalar) loop; the legs, prices and fees are then computed as arrays."""
    n = len(panel)
    if len(changes) == 0:
        return FillArrays.empty()
    first_try = np.minimum(changes + 1, n - 1)
    mk_c = panel.market_of(changes)
    goal = target[changes].astype(np.int64)
    # Optimistically, every earlier order of the market filled, so the position before a change is
    # the previous change's target (flat at the market's first change).
    same_market = np.concatenate([[False], mk_c[1:] == mk_c[:-1]])
    prev_goal = np.where(same_market, np.concatenate([[0], goal[:-1]]), 0)
    up = goal > prev_goal
    j = np.where(up, panel.next_ask_at(first_try), panel.next_bid_at(first_try))
    ok = (changes + 1 <= window_end) & (j <= window_end)
    # A blocked order only matters if the same market changes target again afterwards.
    next_same = np.concatenate([same_market[1:], [False]])
    troubled = np.unique(mk_c[~ok & next_same])
    row_l: list[IntArray] = []
    src_l: list[IntArray] = []
    dst_l: list[IntArray] = []
    clean = ~np.isin(mk_c, troubled) if len(troubled) else np.ones(len(changes), dtype=bool)
    sel = clean & ok
    row_l.append(j[sel])
    src_l.append(prev_goal[sel])
    dst_l.append(goal[sel])
    if len(troubled):
        # The exact, sequential rule for the few markets where a blocked order changes what follows.
        idx = np.flatnonzero(~clean)
        na = panel.next_ask_at(first_try[idx]).tolist()
        nb = panel.next_bid_at(first_try[idx]).tolist()
        we = window_end[idx].tolist()
        tg = goal[idx].tolist()
        mk = mk_c[idx].tolist()
        ks = changes[idx].tolist()
        rows: list[int] = []
        froms: list[int] = []
        tos: list[int] = []
        position = 0
        current = -1
        for i in range(len(ks)):
            if mk[i] != current:
                current = mk[i]
                position = 0
            g = tg[i]
            if g == position or ks[i] + 1 > we[i]:
                continue
            jj = na[i] if g > position else nb[i]
            if jj <= we[i]:
                rows.append(jj)
                froms.append(position)
                tos.append(g)
                position = g
        row_l.append(np.array(rows, dtype=np.int64))
        src_l.append(np.array(froms, dtype=np.int64))
        dst_l.append(np.array(tos, dtype=np.int64))
    row = np.concatenate(row_l)
    if len(row) == 0:
        return FillArrays.empty()
    src = np.concatenate(src_l)
    dst = np.concatenate(dst_l)
    if len(row_l) > 1:  # the troubled markets' fills are appended after the others
        order = np.argsort(row, kind="stable")
        row, src, dst = row[order], src[order], dst[order]

    # Each position change is a closing leg (if something was held) then an opening leg (if the
    # goal is not flat); both at the same quote, closing first.
    close = src != 0
    opening = dst != 0
    legs_close = np.where(src > 0, SELL_YES, SELL_NO)
    legs_open = np.where(dst > 0, BUY_YES, BUY_NO)
    n_legs = close.astype(np.int64) + opening.astype(np.int64)
    leg_row = np.repeat(row, n_legs)
    first_of = np.cumsum(n_legs) - n_legs
    leg = np.empty(len(leg_row), dtype=np.int64)
    after = np.empty(len(leg_row), dtype=np.int64)
    ci = first_of[close]
    leg[ci] = legs_close[close]
    after[ci] = 0
    oi = first_of[opening] + close[opening].astype(np.int64)
    leg[oi] = legs_open[opening]
    after[oi] = dst[opening] * size
    yes_bid = panel.bid[leg_row]
    yes_ask = panel.ask[leg_row]
    # Buying YES / selling NO trades against the yes ask, the other legs against the yes bid;
    # NO legs are priced on the NO side.
    price = np.where((leg == BUY_YES) | (leg == SELL_NO), yes_ask, yes_bid)
    no_leg = (leg == BUY_NO) | (leg == SELL_NO)
    price[no_leg] = MICRO - price[no_leg]
    qty = np.full(len(leg_row), size, dtype=np.int64)
    market = panel.market_of(leg_row)
    mult_num, mult_den = panel.fee_fractions
    fee = fee_cents_array(qty, price, TAKER_RATE, mult_num[market], mult_den[market])
    sign = np.where((leg == BUY_YES) | (leg == BUY_NO), -1, 1)
    cash = sign * qty * price - fee * CENT_IN_LEDGER
    return FillArrays(
        row=leg_row,
        market=market,
        leg=leg,
        qty=qty,
        price=price,
        fee=fee,
        maker=np.zeros(len(leg_row), dtype=bool),
        position_after=after,
        cash=cash,
    )


def _settled_mask(panel: QuotePanel) -> BoolArray:
    return panel.settled.copy()


def mark_to_market(
    panel: QuotePanel, fills: FillArrays
) -> tuple[IntArray, IntArray, IntArray, BoolArray, IntArray]:
    """The portfolio P&L curve, and per market the final P&L, settled flags and final positions.

    Positions are valued at the bid of their side (YES at the yes bid, NO at 1 − yes ask),
    carried forward over quotes where that side is empty; at settlement at the settlement value.

    A market's P&L only moves at its fills and, while a position is open, where its side's mark
    steps. So the curve is built from those events alone — a single run diffs the marks over the
    rows inside its holding periods, a sweep gathers the panel's row-indexed mark steps — never
    from a P&L per quote over the whole panel.
    """
    n = len(panel)
    n_markets = panel.n_markets
    settled = _settled_mask(panel)
    final = np.zeros(n_markets, dtype=np.int64)
    final_pos = np.zeros(n_markets, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return empty, empty, final, settled, final_pos
    starts = panel.starts
    # Holding periods: the state after the last fill at each fill row, held until the market's
    # next fill row. Fills never happen at a market's first row, so each period's row - 1 belongs
    # to the same market (to the previous period, or before any fill: flat, no cash).
    if len(fills.row):
        last_of_row = np.append(fills.row[1:] != fills.row[:-1], True)
        f_idx = np.flatnonzero(last_of_row)
        cum = np.cumsum(fills.cash)
        first_fill = np.searchsorted(fills.market, np.arange(n_markets), side="left")
        earlier = np.concatenate([[0], cum])[first_fill]
        seg_row = fills.row[f_idx]
        seg_mkt = fills.market[f_idx]
        seg_pos = fills.position_after[f_idx]
        seg_cash = cum[f_idx] - earlier[seg_mkt]
    else:
        seg_row = seg_mkt = seg_pos = seg_cash = empty
    n_seg = len(seg_row)
    same_next = np.append(seg_mkt[1:] == seg_mkt[:-1], False) if n_seg else np.zeros(0, dtype=bool)
    same_prev = np.concatenate([[False], same_next[:-1]]) if n_seg else same_next

    # Where each market's valuation at the marks stops (no fill happens at or after it).
    stop = panel.valuation_stop
    seg_end = np.where(same_next, np.append(seg_row[1:], 0), stop[seg_mkt])

    marks: IntArray | None = panel.__dict__.get("interleaved_marks")  # sweeps only: 2 per row

    def value(pos: IntArray, rows: IntArray) -> IntArray:
        """What holding `pos` is worth at `rows`."""
        if marks is not None:
            return np.abs(pos) * marks[2 * rows + (pos > 0)]
        return np.abs(pos) * np.where(pos > 0, panel.yes_mark[rows], panel.no_mark[rows])

    # Events of the curve: time, P&L change, and (on panels prepared for sweeps) a sort key
    # from the rows' global time rank. Row events sort at 2 x rank; an event between rows at
    # time T at 2 x (rows at or before T) - 1, next to the rows sharing its instant.
    rank = panel.__dict__.get("time_rank")
    ev_t: list[IntArray] = [np.array(panel.time_range, dtype=np.int64)]
    ev_d: list[IntArray] = [np.zeros(2, dtype=np.int64)]
    ev_k: list[IntArray] = [np.array([0, 2 * (n - 1)], dtype=np.int64)]

    def add(times: IntArray, deltas: IntArray, rows: IntArray | None) -> None:
        keep = deltas != 0
        times, deltas = times[keep], deltas[keep]
        if rank is not None and rows is None:
            # Events between the same two rows share a key: keep them in time order, as the
            # sort breaks ties by position.
            by_time = np.argsort(times, kind="stable")
            times, deltas = times[by_time], deltas[by_time]
            ev_k.append(2 * np.searchsorted(panel.sorted_time, times, side="right") - 1)
        elif rank is not None and rows is not None:
            ev_k.append(2 * rank[rows[keep]])
        ev_t.append(times)
        ev_d.append(deltas)

    # At each fill row: from the previous period's value one row earlier to the new period's.
    if n_seg:
        after = seg_cash + value(seg_pos, seg_row)
        prev_pos = np.where(same_prev, np.concatenate([[0], seg_pos[:-1]]), 0)
        prev_cash = np.where(same_prev, np.concatenate([[0], seg_cash[:-1]]), 0)
        before = prev_cash + value(prev_pos, seg_row - 1)
        add(panel.time[seg_row], after - before, seg_row)
    # Inside each holding period: every step of the held side's mark, times the contracts held.
    for side_sel, mark, steps in (
        (seg_pos > 0, panel.yes_mark, panel.__dict__.get("yes_mark_steps")),
        (seg_pos < 0, panel.no_mark, panel.__dict__.get("no_mark_steps")),
    ):
        sel = np.flatnonzero(side_sel)
        held = np.abs(seg_pos[sel])
        if steps is not None:
            # Sweeps: the panel's mark steps are built and indexed once; gather those inside.
            lo_i = steps.count_upto(seg_row[sel])  # the first step after the fill row
            hi_i = steps.count_upto(seg_end[sel] - 1)  # the first step at or after the period's end
            counts = hi_i - lo_i
            idx = _ranges(lo_i, counts)
            if steps.table is not None:
                picked = steps.table.take(idx, axis=0)
                step_d, step_t, step_key = picked[:, 0], picked[:, 1], picked[:, 2]
            else:
                step_d, step_t = steps.delta[idx], steps.time[idx]
                step_key = 2 * rank[steps.rows[idx]] if rank is not None else None
            step_held = np.repeat(held, counts)
        else:
            # One run: look at the rows inside the holding periods only (a fraction of the panel).
            first = seg_row[sel] + 1
            counts = seg_end[sel] - first
            inside = _ranges(first, counts)
            d = mark[inside] - mark[inside - 1]
            nz = np.flatnonzero(d != 0)
            step_rows, step_d = inside[nz], d[nz]
            step_t = panel.time[step_rows]
            step_key = 2 * rank[step_rows] if rank is not None else None
            step_held = np.repeat(held, counts)[nz]
        # Never zero (a step is a change, and something is held): no filtering needed.
        ev_t.append(step_t)
        ev_d.append(step_held * step_d)
        if rank is not None:
            assert step_key is not None
            ev_k.append(step_key)

    # Final values: the state of each market's last holding period.
    last_seg = np.flatnonzero(~same_next)
    final_cash = np.zeros(n_markets, dtype=np.int64)
    final_pos[seg_mkt[last_seg]] = seg_pos[last_seg]
    final_cash[seg_mkt[last_seg]] = seg_cash[last_seg]
    nonempty = np.flatnonzero(np.diff(starts) > 0)
    last_valued = stop[nonempty] - 1
    valued = last_valued >= starts[:-1][nonempty]  # False: no quote before the close at all
    mk = nonempty[valued]
    marked = final_cash[mk] + value(final_pos[mk], last_valued[valued])
    final[mk] = marked
    sv_m = mk[settled[mk]]
    if len(sv_m):
        sv = panel.settlement_micro[sv_m]
        p = final_pos[sv_m]
        settle_value = np.where(p > 0, p * sv, np.where(p < 0, -p * (MICRO - sv), 0))
        final[sv_m] = final_cash[sv_m] + settle_value
        # The jump to the settlement shows at the first quote at or after the close, or at the
        # close itself when the market has no quote then.
        at_row = stop[sv_m] < starts[1:][sv_m]
        jump = final[sv_m] - final_cash[sv_m] - value(p, stop[sv_m] - 1)
        add(panel.time[stop[sv_m][at_row]], jump[at_row], stop[sv_m][at_row])
        add(panel.close_ns[sv_m][~at_row], jump[~at_row], None)

    t = np.concatenate(ev_t)
    d = np.concatenate(ev_d)
    # Only the last cumulative value at each instant is kept (below), and that is the same in any
    # order of the events sharing it: no stable sort needed.
    bits = max(len(t), 1).bit_length()
    if rank is not None and (2 * n + 1) < (1 << (62 - bits)):
        # Sorting the keys with the event index packed into the low bits is several times faster
        # than an argsort of the times.
        packed = (np.concatenate(ev_k) + 1) << bits
        packed |= np.arange(len(t), dtype=np.int64)
        packed.sort()
        order = packed & ((1 << bits) - 1)
    else:
        order = np.argsort(t)
    t = t[order]
    curve = np.cumsum(d[order])
    # Quotes of several markets at one instant are one point of the portfolio curve, not a path
    # through intermediate states that never existed (which would invent drawdowns).
    keep_last = np.append(t[1:] != t[:-1], True)
    return t[keep_last], curve[keep_last], final, settled, final_pos


def _trips_complete(panel: QuotePanel, fills: FillArrays, settled: BoolArray) -> TripArrays:
    """Round trips when every fill is complete: each opening leg is closed by the market's next leg,
    or by settlement / the final mark if there is none."""
    leg, mk = fills.leg, fills.market
    n_legs = len(leg)
    oi = np.flatnonzero((leg == BUY_YES) | (leg == BUY_NO))
    nxt = np.minimum(oi + 1, max(n_legs - 1, 0))
    has_exit = (oi + 1 < n_legs) & (mk[nxt] == mk[oi])
    m = mk[oi]
    side = np.where(leg[oi] == BUY_YES, 1, -1)
    qty = fills.qty[oi]
    sv = panel.settlement_micro
    last_rows = np.maximum(panel.starts[1:] - 1, 0)
    is_settled = settled[m]
    end_price = np.where(
        is_settled,
        np.where(side > 0, sv[m], MICRO - sv[m]),
        np.where(side > 0, panel.yes_mark[last_rows[m]], panel.no_mark[last_rows[m]]),
    )
    exit_value = np.where(has_exit, qty * fills.price[nxt], qty * end_price)
    fees = fills.fee[oi] + np.where(has_exit, fills.fee[nxt], 0)
    exit_ns = np.where(
        has_exit,
        panel.time[fills.row[nxt]],
        np.where(is_settled, panel.close_ns[m], panel.time[last_rows[m]]),
    )
    reason_code = np.where(has_exit, 0, np.where(is_settled, 1, 2)).tolist()
    reason = [("signal", "settlement", "marked_to_bid")[c] for c in reason_code]
    return TripArrays(
        market=m,
        side=side,
        qty=qty,
        entry_row=fills.row[oi],
        exit_row=np.where(has_exit, fills.row[nxt], -1),
        entry_ns=panel.time[fills.row[oi]],
        exit_ns=exit_ns,
        entry_cost=qty * fills.price[oi],
        exit_value=exit_value,
        fees=fees,
        exit_reason=reason,
    )


def build_trips(panel: QuotePanel, fills: FillArrays, final_pos: IntArray, settled: BoolArray) -> TripArrays:
    """Group fills into round trips; positions still open end at settlement or at the final mark."""
    t = panel.time
    out: dict[str, list[Any]] = {
        k: []
        for k in (
            "market",
            "side",
            "qty",
            "entry_row",
            "exit_row",
            "entry_ns",
            "exit_ns",
            "entry_cost",
            "exit_value",
            "fees",
            "exit_reason",
        )
    }
    open_trip: dict[str, Any] | None = None
    current = -1

    def close(reason: str, exit_row: int, exit_ns: int) -> None:
        nonlocal open_trip
        assert open_trip is not None
        for key in ("market", "side", "qty", "entry_row", "entry_ns", "entry_cost", "exit_value", "fees"):
            out[key].append(open_trip[key])
        out["exit_row"].append(exit_row)
        out["exit_ns"].append(exit_ns)
        out["exit_reason"].append(reason)
        open_trip = None

    def finish_market(m: int) -> None:
        nonlocal open_trip
        if open_trip is None:
            return
        held = open_trip["held"]
        info = panel.markets[m]
        if settled[m]:
            assert info.settlement_value is not None
            sv = to_micro(info.settlement_value, empty=0)
            price = sv if open_trip["side"] > 0 else MICRO - sv
            open_trip["exit_value"] += held * price
            close("settlement", -1, info.close_ns)
        else:
            last = int(panel.starts[m + 1]) - 1
            yes_mark = ffill_last(panel.bid[int(panel.starts[m]) : last + 1], 0)
            no_ask = ffill_last(panel.ask[int(panel.starts[m]) : last + 1], MICRO, empty=MICRO)
            price = yes_mark if open_trip["side"] > 0 else MICRO - no_ask
            open_trip["exit_value"] += held * price
            close("marked_to_bid", -1, int(t[last]))

    rows = fills.row.tolist()
    for i, (row, m, leg, q, price, fee, pos_after) in enumerate(
        zip(
            rows,
            fills.market.tolist(),
            fills.leg.tolist(),
            fills.qty.tolist(),
            fills.price.tolist(),
            fills.fee.tolist(),
            fills.position_after.tolist(),
            strict=True,
        )
    ):
        del i
        if m != current:
            if current >= 0:
                finish_market(current)
            for skipped in range(current + 1, m):
                del skipped  # markets without fills have no trips
            current = m
        opening = leg in (BUY_YES, BUY_NO)
        if opening:
            if open_trip is None:
                open_trip = {
                    "market": m,
                    "side": 1 if leg == BUY_YES else -1,
                    "qty": 0,
                    "held": 0,
                    "entry_row": row,
                    "entry_ns": int(t[row]),
                    "entry_cost": 0,
                    "exit_value": 0,
                    "fees": 0,
                }
            open_trip["held"] += q
            open_trip["qty"] = max(open_trip["qty"], open_trip["held"])
            open_trip["entry_cost"] += q * price
            open_trip["fees"] += fee
        else:
            assert open_trip is not None, "a closing fill without an open position"
            open_trip["held"] -= q
            open_trip["exit_value"] += q * price
            open_trip["fees"] += fee
            if pos_after == 0:
                close("signal", row, int(t[row]))
    if current >= 0:
        finish_market(current)
    del final_pos
    return TripArrays(
        market=np.array(out["market"], dtype=np.int64),
        side=np.array(out["side"], dtype=np.int64),
        qty=np.array(out["qty"], dtype=np.int64),
        entry_row=np.array(out["entry_row"], dtype=np.int64),
        exit_row=np.array(out["exit_row"], dtype=np.int64),
        entry_ns=np.array(out["entry_ns"], dtype=np.int64),
        exit_ns=np.array(out["exit_ns"], dtype=np.int64),
        entry_cost=np.array(out["entry_cost"], dtype=np.int64),
        exit_value=np.array(out["exit_value"], dtype=np.int64),
        fees=np.array(out["fees"], dtype=np.int64),
        exit_reason=out["exit_reason"],
    )


def ffill_last(values: IntArray, fill: int, *, empty: int = 0) -> int:
    """The last value in `values` that is not `empty` (`fill` if there is none)."""
    valid = np.flatnonzero(values != empty)
    return int(values[valid[-1]]) if len(valid) else fill


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def compute_metrics(
    panel: QuotePanel,
    config: BacktestConfig,
    fills: FillArrays,
    trips: TripArrays,
    curve_ns: IntArray,
    curve_pnl: IntArray,
    final: IntArray,
    settled: BoolArray,
) -> dict[str, Any]:
    """Headline metrics. Money as exact decimal strings; ratios as floats (None when undefined)."""
    capital_units = int(config.capital * LEDGER)
    net = int(final.sum())
    fees_cents = int(fills.fee.sum())
    traded = np.bincount(trips.market, minlength=panel.n_markets) > 0
    metrics: dict[str, Any] = {
        "net_pnl": str(ledger_to_dollars(net).quantize(Decimal("0.01"))),
        "net_pnl_exact": str(ledger_to_dollars(net)),
        "fees_paid": str(Decimal(fees_cents) / 100),
        "gross_pnl": str(ledger_to_dollars(net + fees_cents * CENT_IN_LEDGER)),
        "capital": str(config.capital),
        "return_on_capital": net / capital_units,
        "trades": len(trips.market),
        "fills": len(fills.row),
        "markets": panel.n_markets,
        "markets_traded": int(np.count_nonzero(traded)),
        "markets_settled": int(settled.sum()),
        "markets_marked_to_bid": int(np.count_nonzero(traded & ~settled)),
        "quotes": len(panel),
        "annualisation": (
            f"Sharpe and Sortino from daily equity (UTC days), annualised over {DAYS_PER_YEAR} days"
        ),
    }
    # Daily equity: the value at the end of each UTC calendar day, gaps carried forward.
    daily = daily_equity(curve_ns, curve_pnl, capital_units)
    metrics["days"] = len(daily) - 1
    if len(daily) >= 3:
        returns = np.diff(daily) / daily[:-1]
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        metrics["sharpe"] = mean / std * math.sqrt(DAYS_PER_YEAR) if std > 0 else None
        metrics["sortino"] = mean / downside * math.sqrt(DAYS_PER_YEAR) if downside > 0 else None
    else:
        metrics["sharpe"] = None
        metrics["sortino"] = None
    # Drawdown on the full-resolution curve, not just the daily closes.
    equity = capital_units + np.concatenate([[0], curve_pnl]) if len(curve_pnl) else np.array([capital_units])
    times = np.concatenate([[curve_ns[0] if len(curve_ns) else 0], curve_ns])
    peak = np.maximum.accumulate(equity)
    dd = (peak - equity) / peak
    worst = int(np.argmax(dd)) if len(dd) else 0
    metrics["max_drawdown"] = float(dd[worst]) if len(dd) else 0.0
    metrics["max_drawdown_dollars"] = str(
        ledger_to_dollars(int((peak - equity).max())).quantize(Decimal("0.01"))
    )
    metrics["max_drawdown_duration_seconds"] = _longest_underwater(times, equity, peak)
    span_days = (int(times[-1]) - int(times[0])) / NS_PER_DAY if len(times) > 1 else 0.0
    final_equity = capital_units + net
    if span_days > 0 and final_equity > 0:
        annual = (final_equity / capital_units) ** (DAYS_PER_YEAR / max(span_days, 1.0)) - 1
    else:
        annual = None
    metrics["annualised_return"] = annual
    metrics["calmar"] = (
        annual / metrics["max_drawdown"] if annual is not None and metrics["max_drawdown"] > 0 else None
    )
    pnl = trips.pnl
    wins = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    metrics["win_rate"] = len(wins) / len(pnl) if len(pnl) else None
    metrics["profit_factor"] = float(wins.sum()) / float(-losses.sum()) if len(losses) else None
    hold = (trips.exit_ns - trips.entry_ns) / 1e9
    metrics["average_hold_seconds"] = float(hold.mean()) if len(hold) else None
    metrics["exposure"] = _exposure(trips, times)
    metrics["brier_score"] = _brier(panel, trips, settled)
    return metrics


def daily_equity(curve_ns: IntArray, curve_pnl: IntArray, capital_units: int) -> FloatArray:
    """Equity at the start of the first day, then at the end of each UTC day through the last."""
    if len(curve_ns) == 0:
        return np.array([float(capital_units)])
    days = curve_ns // NS_PER_DAY
    all_days = np.arange(days[0], days[-1] + 1)
    idx = np.searchsorted(days, all_days, side="right") - 1
    closes = capital_units + curve_pnl[idx]
    return np.concatenate([[float(capital_units)], closes.astype(np.float64)])


def _longest_underwater(times: IntArray, equity: IntArray, peak: IntArray) -> float:
    """Longest time from a peak until equity first regains it (or the end of the test)."""
    if len(times) < 2:
        return 0.0
    at_peak = equity >= peak
    peak_idx = np.maximum(last_true(at_peak), 0)
    underwater = ~at_peak
    if not underwater.any():
        return 0.0
    # duration of each underwater row = its time − time of the last peak; the longest spell's end
    # is either a recovery row or the end of the curve.
    spans = np.where(underwater, times - times[peak_idx], 0)
    longest = int(spans.max())
    # a spell ending in recovery lasts until the recovering row
    recover = at_peak[1:] & underwater[:-1]
    if recover.any():
        r = np.flatnonzero(recover) + 1
        longest = max(longest, int((times[r] - times[peak_idx[r - 1]]).max()))
    return longest / 1e9


def _exposure(trips: TripArrays, times: IntArray) -> float | None:
    """Share of the test's time with at least one open position."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    if len(trips.market) == 0:
        return 0.0
    start = np.maximum(trips.entry_ns, times[0])
    end = np.minimum(np.maximum(trips.exit_ns, start), times[-1])
    # Any order of equal starts gives the same union, so the sort need not be stable.
    order = np.argsort(start)
    start, end = start[order], end[order]
    # Union of intervals: each adds the part of it beyond everything that started before it.
    reach = np.maximum.accumulate(end)
    prev_reach = np.concatenate([[start[0]], reach[:-1]])
    covered = int(np.maximum(end - np.maximum(start, prev_reach), 0).sum())
    return covered / (int(times[-1]) - int(times[0]))


def _brier(panel: QuotePanel, trips: TripArrays, settled: BoolArray) -> float | None:
    """Brier score of entry prices (as probabilities of the side bought) against settled outcomes."""
    sel = settled[trips.market] & (trips.qty > 0)
    if not sel.any():
        return None
    sv = panel.settlement_micro
    outcome = sv[trips.market[sel]] / MICRO
    outcome = np.where(trips.side[sel] > 0, outcome, 1 - outcome)
    # The entry cost excludes fees, so this is the average price paid per contract.
    prob = trips.entry_cost[sel] / trips.qty[sel] / MICRO
    return float(np.mean((prob - outcome) ** 2))


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def run_backtest(
    panel: QuotePanel,
    strategy: Strategy | str,
    params: Mapping[str, Any] | None = None,
    *,
    config: BacktestConfig | None = None,
    progress: Callable[[float], None] | None = None,
    target: Int8Array | None = None,
    changes: IntArray | None = None,
) -> BacktestResult:
    """Run one strategy with one parameter set over a panel.

    A precomputed `target` may come with its `changes` (see `target_changes`).
    """
    from .strategies import get_strategy

    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    values = strat.validate(dict(params or {}))
    config = config or BacktestConfig()
    warnings: list[str] = []
    flat = sorted({m.fee_type for m in panel.markets if m.fee_type == "flat"})
    if flat:
        warnings.append("Series with Kalshi's flat fee table are charged the quadratic taker fee instead.")
    if target is None:
        target, changes = strat.target_and_changes(panel, values)
    if len(target) != len(panel):
        raise BacktestError(f"strategy {strat.name} returned {len(target)} targets for {len(panel)} quotes")
    if progress:
        progress(0.3)
    fills = simulate_fills(panel, target, config, changes=changes)
    if progress:
        progress(0.6)
    curve_ns, curve_pnl, final, settled, final_pos = mark_to_market(panel, fills)
    if config.cap_to_displayed_size:
        trips = build_trips(panel, fills, final_pos, settled)
    else:
        trips = _trips_complete(panel, fills, settled)
    if progress:
        progress(0.8)
    metrics = compute_metrics(panel, config, fills, trips, curve_ns, curve_pnl, final, settled)
    marked = np.unique(trips.market[(~settled[trips.market]) & (trips.exit_row < 0)])
    unsettled_open = [panel.markets[m].ticker for m in marked]
    if unsettled_open:
        shown = ", ".join(sorted(set(unsettled_open))[:5])
        more = len(set(unsettled_open)) - 5
        warnings.append(
            f"{len(set(unsettled_open))} market(s) had not settled within the test; their positions are "
            f"marked to the bid: {shown}{f' and {more} more' if more > 0 else ''}."
        )
    if progress:
        progress(1.0)
    return BacktestResult(
        strategy=strat.name,
        params=values,
        config=config,
        panel=panel,
        target=target,
        fills=fills,
        trips=trips,
        final_pnl=final,
        settled=settled,
        curve_ns=curve_ns,
        curve_pnl=curve_pnl,
        metrics=metrics,
        warnings=warnings,
    )


def backtest_frame(
    frame: pd.DataFrame,
    strategy: Strategy | str,
    params: Mapping[str, Any] | None = None,
    *,
    markets: Sequence[MarketInfo] | Mapping[str, MarketInfo] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    contracts: Decimal | int | str = 10,
    capital: Decimal | int | str = 1000,
    cap_to_displayed_size: bool = False,
) -> BacktestResult:
    """Notebook entry point: one call on a quote DataFrame; the result exposes DataFrames.

    >>> result = backtest_frame(df, "mean_reversion", {"window": 30}, markets=[MarketInfo(...)])
    >>> result.trades, result.equity, result.metrics
    """
    panel = QuotePanel.from_frame(frame, markets, start=start, end=end)
    config = BacktestConfig(
        contracts=Decimal(str(contracts)),
        capital=Decimal(str(capital)),
        cap_to_displayed_size=cap_to_displayed_size,
    )
    return run_backtest(panel, strategy, params, config=config)


def utc_from_ns(ns: int) -> datetime:
    """A UTC datetime from epoch nanoseconds, to the microsecond (integer arithmetic, no float)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1_000)


def iter_markets(panel: QuotePanel) -> Iterable[tuple[int, MarketInfo, slice]]:
    for i, m in enumerate(panel.markets):
        yield i, m, slice(int(panel.starts[i]), int(panel.starts[i + 1]))
