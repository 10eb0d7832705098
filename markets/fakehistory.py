"""Candle history for the fake exchange (`markets/fakeexchange.py`): deterministic, on each market's grid.

Kalshi serves a candlestick for every period a market has been open. The recordings hold candles
for a handful of other tickers only, so the fake derives each market's candles from one
deterministic quote process per market, pinned to what its recording says:

* the quote the exchange starts with (for a closed or settled market: a one-step book around its
  last trade, at its close) and, where the recording has it, the quote a day earlier
  (`previous_yes_bid_dollars` / `previous_yes_ask_dollars`, which Kalshi reports "a day ago");
* the cumulative volume: nothing before the open, the recorded `volume_fp` at the end, and the
  recorded `volume_24h_fp` traded in the last day before it;
* the last trade: the recorded `last_price_dollars` is the price of the path's last trade.

Between the anchors the mid follows seeded slow waves plus hourly jitter, in whole steps of the
market's own price grid (`price_ranges`). Every hour the book moves twice: to an excursion at a
seeded minute in the first half hour, to the next hour's quote in the second. The volume traded in
the hour crosses the spread at those two moves (a taker lifting the old ask when the price rises,
hitting the old bid when it falls), the way the exchange's live process trades. One-minute, hourly
and daily candles are all cut from this one path, so they agree with each other: an hour's volume
is the sum of its minutes', a day's open is its first hour's open, its high the highest hour's.

From the exchange's start on, candles show what its live process did: each market keeps a log of
its moves and trades (`LiveLog`). The synthetic path ends at the start of the hour the exchange
started in, exactly at the quote, volume and open interest the live process starts from.

All numbers are integers: prices in millionths of a dollar, counts in hundredths of a contract.
This module does not import Django.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

import numpy as np

PRICE_SCALE = 1_000_000
MINUTE = 60
HOUR = 3_600
DAY = 86_400
PERIODS = {1: MINUTE, 60: HOUR, 1440: DAY}

# Spreads in grid steps (mostly one tick, like liquid Kalshi books) and hourly jitter of the mid.
_SPREADS = np.array((1, 1, 1, 2, 3), dtype=np.int64)
_JUMPS = np.array((-2, -1, -1, 1, 1, 2), dtype=np.int64)
# Slow waves of the mid: periods in hours and amplitudes in grid steps (scaled to finer grids).
_WAVES = ((6.1, 1.0), (25.3, 2.0), (140.0, 3.5), (900.0, 6.0))
# Volume arrives partly evenly, mostly in a few seeded bursts per stretch between knots.
_EVEN_SHARE = 0.3
_BURSTS = 3
_BURST_WIDTH = 0.05


def _eastern() -> tzinfo:
    # Kalshi's daily candles end at midnight New York time.
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("America/New_York")
    except (ImportError, KeyError, OSError):  # no time zone database on this machine
        return timezone(timedelta(hours=-5), "EST")


EASTERN = _eastern()


def market_key(seed: int, ticker: str) -> int:
    """A stable 64-bit key per (seed, market): the root of all of the market's random draws."""
    return int.from_bytes(hashlib.blake2b(f"history:{seed}:{ticker}".encode(), digest_size=8).digest(), "big")


_U64 = np.uint64


def _uniform(key: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Seeded uniform numbers in [0, 1), one per index, independent per (key, stream).

    A splitmix64 finaliser over (index, key, stream): the value for an hour never depends on
    which window of hours a request asked for, which is what keeps candles reproducible.
    """
    salt = (key ^ ((stream + 1) * 0xD1B54A32D192ED03)) & 0xFFFF_FFFF_FFFF_FFFF
    with np.errstate(over="ignore"):
        x = index.astype(_U64) * _U64(0x9E3779B97F4A7C15) ^ _U64(salt)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        x = x ^ (x >> _U64(31))
    return (x >> _U64(11)).astype(np.float64) / float(1 << 53)


def _pick(table: np.ndarray, u: np.ndarray) -> np.ndarray:
    return table[np.minimum((u * len(table)).astype(np.int64), len(table) - 1)]


# --------------------------------------------------------------------------------------------------
# Candles
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Candle:
    """One period (or part of one): book OHLC, trades, volume traded in it, open interest at its end.

    `trades` is 0 when nothing traded; then the trade fields are meaningless. `previous` is the
    last trade before the period (None if there was none).
    """

    end: int
    bid_open: int
    bid_high: int
    bid_low: int
    bid_close: int
    ask_open: int
    ask_high: int
    ask_low: int
    ask_close: int
    trade_open: int
    trade_high: int
    trade_low: int
    trade_close: int
    trade_value: int  # sum of price x count over the period's trades (millionths x hundredths)
    trades: int  # contracts traded, in hundredths (0 = no trade)
    previous: int | None
    volume: int
    open_interest: int

    @property
    def mean(self) -> int:
        """Volume-weighted mean trade price (millionths, rounded down)."""
        return self.trade_value // self.trades


def merge(first: Candle, second: Candle) -> Candle:
    """Two consecutive parts of one period as one candle."""
    if first.trades and second.trades:
        t_open, t_close = first.trade_open, second.trade_close
        t_high, t_low = max(first.trade_high, second.trade_high), min(first.trade_low, second.trade_low)
    else:
        only = first if first.trades else second
        t_open, t_high, t_low, t_close = only.trade_open, only.trade_high, only.trade_low, only.trade_close
    return Candle(
        end=second.end,
        bid_open=first.bid_open,
        bid_high=max(first.bid_high, second.bid_high),
        bid_low=min(first.bid_low, second.bid_low),
        bid_close=second.bid_close,
        ask_open=first.ask_open,
        ask_high=max(first.ask_high, second.ask_high),
        ask_low=min(first.ask_low, second.ask_low),
        ask_close=second.ask_close,
        trade_open=t_open,
        trade_high=t_high,
        trade_low=t_low,
        trade_close=t_close,
        trade_value=first.trade_value + second.trade_value,
        trades=first.trades + second.trades,
        previous=first.previous,
        volume=first.volume + second.volume,
        open_interest=second.open_interest,
    )


def midnight_et(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=EASTERN).timestamp())


def period_bounds(period: int, first_end: int, last_end: int) -> list[tuple[int, int]]:
    """(start, end) of every period of `period` minutes whose end lies in [first_end, last_end].

    Minute and hour periods end on UTC multiples; days end at midnight New York time, so a day
    is 23 or 25 hours long when the clocks change.
    """
    if last_end < first_end:
        return []
    if period != 1440:
        step = PERIODS[period]
        end = -(-first_end // step) * step
        return [(e - step, e) for e in range(end, last_end + 1, step)]
    day = datetime.fromtimestamp(first_end, EASTERN).date()
    bounds = []
    end = midnight_et(day)
    if end < first_end:
        day += timedelta(days=1)
        end = midnight_et(day)
    while end <= last_end:
        bounds.append((midnight_et(day - timedelta(days=1)), end))
        day += timedelta(days=1)
        end = midnight_et(day)
    return bounds


def period_end_after(period: int, moment: int) -> int:
    """The end of the period (of `period` minutes) that contains `moment`."""
    if period != 1440:
        step = PERIODS[period]
        return (moment // step + 1) * step
    day = datetime.fromtimestamp(moment, EASTERN).date() + timedelta(days=1)
    return midnight_et(day)


# --------------------------------------------------------------------------------------------------
# The synthetic path before the exchange started
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """The book pinned at an hour boundary, as indices into (no bid, *grid, no ask)."""

    hour: int
    bid: int
    ask: int


@dataclass(slots=True)
class _Hours:
    """The path over hours h0 .. h0 + n - 1 (with n + 1 boundaries), as Python lists."""

    h0: int
    bid: list[int]  # at each boundary, millionths
    ask: list[int]
    x_bid: list[int]  # the excursion within each hour
    x_ask: list[int]
    volume: list[int]  # cumulative, at each boundary
    open_interest: list[int]  # at each boundary
    count1: list[int]  # the hour's two trades
    count2: list[int]
    price1: list[int]
    price2: list[int]
    minute1: list[int]
    minute2: list[int]
    last_trade: list[int]  # last trade price up to and including each hour (-1: none yet)


class MarketPath:
    """A market's deterministic quote, trade and volume path from its open to `end_ts`."""

    def __init__(
        self,
        *,
        key: int,
        grid: Sequence[int],
        open_ts: int,
        end_ts: int,
        anchors: Sequence[Anchor],
        volume_knots: Sequence[tuple[int, int]],
        open_interest: tuple[int, int],
        last_price: int | None,
        empty: bool = False,
    ) -> None:
        self.key = key
        self.ext = np.array((0, *grid, PRICE_SCALE), dtype=np.int64)
        self.n = len(grid)
        self.open_ts = open_ts
        self.end_ts = end_ts
        self.open_hour = open_ts // HOUR
        self.end_hour = -(-end_ts // HOUR)
        self.empty = empty or not anchors
        self.anchors = {a.hour: a for a in anchors}
        ordered = sorted(anchors, key=lambda a: a.hour)
        self._anchor_hours = np.array([a.hour for a in ordered], dtype=np.float64)
        self._anchor_mids = np.array([(a.bid + a.ask) / 2 for a in ordered], dtype=np.float64)
        knots = sorted(dict(volume_knots).items())
        self._knot_ts = np.array([t for t, _ in knots], dtype=np.float64)
        self._knot_v = np.array([v for _, v in knots], dtype=np.int64)
        self.final_volume = int(self._knot_v[-1]) if knots else 0
        self._knot_hours = np.array([-(-t // HOUR) for t, _ in knots], dtype=np.int64)
        # Share of hours with trades: every hour for a market trading 20+ contracts an hour.
        per_hour = self.final_volume / 100 / max(1, self.end_hour - self.open_hour)
        self.activity = min(1.0, max(0.03, per_hour / 20))
        self.oi_num, self.oi_den = open_interest
        self.last_price = last_price
        rng = random.Random(key)
        scale = max(1.0, self.n / 99)
        self._waves = [
            (period * rng.uniform(0.8, 1.25), amplitude * scale, rng.uniform(0, 2 * math.pi))
            for period, amplitude in _WAVES
        ]
        segments = max(1, len(knots) - 1)
        self._centers = np.array([[rng.uniform(0.05, 1.0) for _ in range(_BURSTS)] for _ in range(segments)])
        self._weights = np.array([[rng.uniform(0.2, 1.0) for _ in range(_BURSTS)] for _ in range(segments)])
        self._norm = (
            self._weights
            * (_sigmoid((1 - self._centers) / _BURST_WIDTH) - _sigmoid(-self._centers / _BURST_WIDTH))
        ).sum(axis=1)

    # -- building blocks -------------------------------------------------------------------------

    def _wave(self, hours: np.ndarray) -> np.ndarray:
        total = np.zeros(len(hours))
        for period, amplitude, phase in self._waves:
            total += amplitude * np.sin(2 * math.pi * hours / period + phase)
        return total

    def _mids(self, hours: np.ndarray) -> np.ndarray:
        lin = np.interp(hours, self._anchor_hours, self._anchor_mids)
        # Waves pinned to zero at the anchors (and flat beyond the outer ones).
        wave = self._wave(hours) - np.interp(hours, self._anchor_hours, self._wave(self._anchor_hours))
        jitter = _pick(np.array((-1, 0, 0, 1)), _uniform(self.key, 1, hours.astype(np.int64)))
        mids: np.ndarray = np.clip(lin + wave + jitter, 0.5, self.n + 0.5)
        return mids

    def _book(self, mids: np.ndarray, spreads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bid = np.clip(np.rint(mids - spreads / 2), 0, self.n).astype(np.int64)
        ask = np.clip(bid + spreads, 1, self.n + 1)
        return np.minimum(bid, ask - 1), ask

    def volume_at(self, moments: np.ndarray) -> np.ndarray:
        """Cumulative volume (hundredths) at each moment: 0 before the open, monotone, exact at knots."""
        if len(self._knot_ts) < 2:
            return np.full(len(moments), self.final_volume, dtype=np.int64)
        t = moments.astype(np.float64)
        seg = np.clip(np.searchsorted(self._knot_ts, t, side="right") - 1, 0, len(self._knot_ts) - 2)
        a, b = self._knot_ts[seg], self._knot_ts[seg + 1]
        va, vb = self._knot_v[seg], self._knot_v[seg + 1]
        x = np.clip((t - a) / np.maximum(b - a, 1.0), 0.0, 1.0)
        centers, weights = self._centers[seg], self._weights[seg]
        bursts = (
            weights * (_sigmoid((x[:, None] - centers) / _BURST_WIDTH) - _sigmoid(-centers / _BURST_WIDTH))
        ).sum(axis=1) / self._norm[seg]
        share = _EVEN_SHARE * x + (1 - _EVEN_SHARE) * bursts
        v = va + np.floor((vb - va) * np.clip(share, 0.0, 1.0)).astype(np.int64)
        v = np.where(x >= 1.0, vb, v)
        v = np.where(t <= self._knot_ts[0], self._knot_v[0], v)
        return np.where(t >= self._knot_ts[-1], self._knot_v[-1], v)

    def _open_interest(self, volume: np.ndarray) -> np.ndarray:
        if self.oi_den <= 0:
            return np.zeros(len(volume), dtype=np.int64)
        return volume * self.oi_num // self.oi_den

    def _hours(self, h1: int) -> _Hours:
        """The path from the hour of the open to boundary `h1` (never past the end of the path)."""
        h0 = self.open_hour
        h1 = max(h0 + 1, min(h1, self.end_hour))
        boundaries = np.arange(h0, h1 + 1, dtype=np.int64)
        hours = boundaries[:-1]
        n = self.n
        if self.empty:
            bid = np.zeros(len(boundaries), dtype=np.int64)
            ask = np.full(len(boundaries), n + 1, dtype=np.int64)
            x_bid, x_ask = bid[:-1], ask[:-1]
            mids = np.full(len(boundaries), (n + 1) / 2)
            x_mids = mids[:-1]
        else:
            mids = self._mids(boundaries.astype(np.float64))
            spreads = _pick(_SPREADS, _uniform(self.key, 2, boundaries))
            bid, ask = self._book(mids, spreads)
            for hour, anchor in self.anchors.items():
                if h0 <= hour <= h1:
                    bid[hour - h0], ask[hour - h0] = anchor.bid, anchor.ask
                    mids[hour - h0] = (anchor.bid + anchor.ask) / 2
            x_mids = mids[:-1] + _pick(_JUMPS, _uniform(self.key, 3, hours))
            x_bid, x_ask = self._book(np.clip(x_mids, 0.5, n + 0.5), spreads[:-1])
        volume = self.volume_at(boundaries * HOUR)
        if self.activity < 1.0:
            # A thin market trades in some hours only: the volume due in quiet hours waits for the
            # next hour that trades. Knots stay exact: their hours always trade.
            active = _uniform(self.key, 7, boundaries) < self.activity
            active[0] = True
            active |= np.isin(boundaries, self._knot_hours) | (boundaries >= self.end_hour)
            last_active = np.maximum.accumulate(np.where(active, np.arange(len(boundaries)), 0))
            volume = volume[last_active]
        traded = np.maximum(np.diff(volume), 0)
        split = 0.2 + 0.6 * _uniform(self.key, 4, hours)
        count1 = np.floor(traded * split).astype(np.int64)
        count2 = traded - count1
        ext = self.ext
        # A rising book was lifted at its old ask, a falling one hit at its old bid; a trade is
        # always at a real price, so an empty side counts as the nearest price on the grid.
        up1 = x_mids > mids[:-1]
        price1 = np.where(up1, ext[np.clip(ask[:-1], 1, n)], ext[np.clip(bid[:-1], 1, n)])
        up2 = mids[1:] > x_mids
        price2 = np.where(up2, ext[np.clip(x_ask, 1, n)], ext[np.clip(x_bid, 1, n)])
        minute1 = np.minimum((_uniform(self.key, 5, hours) * 30).astype(np.int64), 29)
        minute2 = 30 + np.minimum((_uniform(self.key, 6, hours) * 30).astype(np.int64), 29)
        # Nothing moves before the open or after the close: the first hour's moves happen from
        # the open's minute on, the last hour's by the close's minute.
        minute1[0] = max(minute1[0], (self.open_ts % HOUR) // MINUTE)
        minute2[0] = max(minute2[0], (self.open_ts % HOUR) // MINUTE)
        if self.end_ts % HOUR and h0 <= self.end_ts // HOUR < h1:
            last, limit = self.end_ts // HOUR - h0, (self.end_ts % HOUR) // MINUTE
            minute1[last] = min(minute1[last], limit)
            minute2[last] = min(minute2[last], limit)
        if self.last_price is not None and self.final_volume > 0:
            # The recorded last trade is the path's last trade: it happens in the hour the
            # cumulative volume reaches its final figure.
            reaching = np.nonzero((traded > 0) & (volume[1:] == self.final_volume))[0]
            if len(reaching):
                i = int(reaching[0])
                if count2[i] > 0:
                    price2[i] = self.last_price
                else:
                    price1[i] = self.last_price
        index = np.arange(len(hours))
        last_price = np.where(count2 > 0, price2, np.where(count1 > 0, price1, -1))
        filled = np.maximum.accumulate(np.where(last_price >= 0, index, -1)) if len(hours) else index
        last_trade = np.where(filled >= 0, last_price[np.maximum(filled, 0)], -1)
        return _Hours(
            h0=h0,
            bid=ext[bid].tolist(),
            ask=ext[ask].tolist(),
            x_bid=ext[x_bid].tolist(),
            x_ask=ext[x_ask].tolist(),
            volume=volume.tolist(),
            open_interest=self._open_interest(volume).tolist(),
            count1=count1.tolist(),
            count2=count2.tolist(),
            price1=price1.tolist(),
            price2=price2.tolist(),
            minute1=minute1.tolist(),
            minute2=minute2.tolist(),
            last_trade=last_trade.tolist(),
        )

    # -- candles ---------------------------------------------------------------------------------

    def candles(self, bounds: Sequence[tuple[int, int]]) -> list[Candle]:
        """Candles for periods (start, end) that lie within the path (end <= end of the path)."""
        if not bounds:
            return []
        hours = self._hours(-(-max(e for _, e in bounds) // HOUR))
        out = []
        for start, end in bounds:
            if end - start == MINUTE:
                out.append(self._minute(hours, start))
            else:
                out.append(self._span(hours, start // HOUR, end // HOUR, end))
        return out

    def _span(self, p: _Hours, first: int, stop: int, end: int) -> Candle:
        """Whole hours [first, stop) as one candle (hours before the open contribute nothing)."""
        first = max(first, p.h0)
        i0, i1 = first - p.h0, min(stop, p.h0 + len(p.count1)) - p.h0
        i1 = max(i1, i0)
        bid_high = max([p.bid[i0], *p.x_bid[i0:i1], p.bid[i1]])
        bid_low = min([p.bid[i0], *p.x_bid[i0:i1], p.bid[i1]])
        ask_high = max([p.ask[i0], *p.x_ask[i0:i1], p.ask[i1]])
        ask_low = min([p.ask[i0], *p.x_ask[i0:i1], p.ask[i1]])
        prices: list[int] = []
        value = count = 0
        for i in range(i0, i1):
            for c, price in ((p.count1[i], p.price1[i]), (p.count2[i], p.price2[i])):
                if c > 0:
                    prices.append(price)
                    value += price * c
                    count += c
        previous = p.last_trade[i0 - 1] if i0 > 0 else -1
        return Candle(
            end=end,
            bid_open=p.bid[i0],
            bid_high=bid_high,
            bid_low=bid_low,
            bid_close=p.bid[i1],
            ask_open=p.ask[i0],
            ask_high=ask_high,
            ask_low=ask_low,
            ask_close=p.ask[i1],
            trade_open=prices[0] if prices else 0,
            trade_high=max(prices, default=0),
            trade_low=min(prices, default=0),
            trade_close=prices[-1] if prices else 0,
            trade_value=value,
            trades=count,
            previous=None if previous < 0 else previous,
            volume=p.volume[i1] - p.volume[i0],
            open_interest=p.open_interest[i1],
        )

    def _minute(self, p: _Hours, start: int) -> Candle:
        """One minute: the book holds between the hour's two moves, which happen mid-minute."""
        i = min(max(start // HOUR - p.h0, 0), len(p.count1) - 1)
        j = (start % HOUR) // MINUTE
        a, b = p.minute1[i], p.minute2[i]

        def book(minute: int) -> tuple[int, int]:  # the book at the start of `minute` (0..60)
            if minute <= a:
                return p.bid[i], p.ask[i]
            if minute <= b:
                return p.x_bid[i], p.x_ask[i]
            return p.bid[i + 1], p.ask[i + 1]

        (bid_o, ask_o), (bid_c, ask_c) = book(j), book(j + 1)
        bids, asks = [bid_o, bid_c], [ask_o, ask_c]
        if j in (a, b):  # the excursion is passed through within the minute of a move
            bids.append(p.x_bid[i])
            asks.append(p.x_ask[i])
        trades = []
        if j == a and p.count1[i] > 0:
            trades.append((p.price1[i], p.count1[i]))
        if j == b and p.count2[i] > 0:
            trades.append((p.price2[i], p.count2[i]))
        before = p.volume[i] + (p.count1[i] if j > a else 0) + (p.count2[i] if j > b else 0)
        after = before + sum(c for _, c in trades)
        previous = p.last_trade[i - 1] if i > 0 else -1
        if j > a and p.count1[i] > 0:
            previous = p.price1[i]
        if j > b and p.count2[i] > 0:
            previous = p.price2[i]
        prices = [price for price, _ in trades]
        oi = after * self.oi_num // self.oi_den if self.oi_den > 0 else 0
        return Candle(
            end=start + MINUTE,
            bid_open=bid_o,
            bid_high=max(bids),
            bid_low=min(bids),
            bid_close=bid_c,
            ask_open=ask_o,
            ask_high=max(asks),
            ask_low=min(asks),
            ask_close=ask_c,
            trade_open=prices[0] if prices else 0,
            trade_high=max(prices, default=0),
            trade_low=min(prices, default=0),
            trade_close=prices[-1] if prices else 0,
            trade_value=sum(price * c for price, c in trades),
            trades=after - before,
            previous=None if previous < 0 else previous,
            volume=after - before,
            open_interest=oi,
        )


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------------------
# After the exchange started: its live moves
# --------------------------------------------------------------------------------------------------

# One row per minute in which a market moved: its book's range and close, volume and open interest
# at the end of the minute, and the minute's trades.
_MINUTE, _BID_HIGH, _BID_LOW, _ASK_HIGH, _ASK_LOW, _BID, _ASK, _VOLUME, _OI = range(9)
_T_OPEN, _T_HIGH, _T_LOW, _T_CLOSE, _T_VALUE, _T_COUNT = range(9, 15)
_ROW = 15


class LiveLog:
    """A market's book from the exchange's start: where it started, then its moves, per minute.

    Rows are kept in a flat `array("q")` (120 bytes per minute with moves). Only the last `limit`
    minutes are kept: older rows are folded into the base state, so a very long-running exchange
    shows its earliest live periods flat.
    """

    __slots__ = ("base", "last_trade_before", "minutes", "rows", "limit")

    def __init__(
        self, *, bid: int, ask: int, volume: int, open_interest: int, last_trade: int | None, limit: int
    ) -> None:
        self.base = (bid, ask, volume, open_interest)
        self.last_trade_before = last_trade
        self.minutes = array("q")
        self.rows = array("q")
        self.limit = max(2, limit)

    def __len__(self) -> int:
        return len(self.minutes)

    def _close(self, index: int) -> tuple[int, int, int, int]:
        if index < 0:
            return self.base
        r = index * _ROW
        rows = self.rows
        return rows[r + _BID], rows[r + _ASK], rows[r + _VOLUME], rows[r + _OI]

    def record(
        self,
        moment: float,
        *,
        bid: int,
        ask: int,
        volume: int,
        open_interest: int,
        trade: tuple[int, int] | None,
    ) -> None:
        """A move at `moment` (Unix seconds) to this book, with the trade it brought, if any."""
        minute = int(moment) // MINUTE * MINUTE
        rows = self.rows
        if self.minutes and self.minutes[-1] == minute:
            r = len(rows) - _ROW
            rows[r + _BID_HIGH] = max(rows[r + _BID_HIGH], bid)
            rows[r + _BID_LOW] = min(rows[r + _BID_LOW], bid)
            rows[r + _ASK_HIGH] = max(rows[r + _ASK_HIGH], ask)
            rows[r + _ASK_LOW] = min(rows[r + _ASK_LOW], ask)
            rows[r + _BID], rows[r + _ASK], rows[r + _VOLUME], rows[r + _OI] = bid, ask, volume, open_interest
        else:
            # The minute's range includes the book it opened with.
            open_bid, open_ask, _, _ = self._close(len(self.minutes) - 1)
            self.minutes.append(minute)
            rows.extend(
                (
                    minute,
                    max(open_bid, bid),
                    min(open_bid, bid),
                    max(open_ask, ask),
                    min(open_ask, ask),
                    bid,
                    ask,
                    volume,
                    open_interest,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                )
            )
            r = len(rows) - _ROW
        if trade is not None and trade[1] > 0:
            price, count = trade
            if rows[r + _T_COUNT] == 0:
                rows[r + _T_OPEN] = rows[r + _T_HIGH] = rows[r + _T_LOW] = price
            rows[r + _T_HIGH] = max(rows[r + _T_HIGH], price)
            rows[r + _T_LOW] = min(rows[r + _T_LOW], price)
            rows[r + _T_CLOSE] = price
            rows[r + _T_VALUE] += price * count
            rows[r + _T_COUNT] += count
        if len(self.minutes) > self.limit:
            drop = max(1, self.limit // 5)
            for i in range(drop - 1, -1, -1):
                if rows[i * _ROW + _T_COUNT] > 0:
                    self.last_trade_before = rows[i * _ROW + _T_CLOSE]
                    break
            self.base = self._close(drop - 1)
            del self.minutes[:drop]
            del rows[: drop * _ROW]

    def candle(self, start: int, end: int) -> Candle:
        """The period [start, end) as a candle (both on minute boundaries)."""
        i0 = bisect.bisect_left(self.minutes, start)
        i1 = bisect.bisect_left(self.minutes, end)
        bid_o, ask_o, volume_o, _ = self._close(i0 - 1)
        bid_c, ask_c, volume_c, oi_c = self._close(i1 - 1)
        rows = self.rows
        bid_high = bid_low = bid_o
        ask_high = ask_low = ask_o
        t_open = t_high = t_low = t_close = value = count = 0
        for i in range(i0, i1):
            r = i * _ROW
            bid_high, bid_low = max(bid_high, rows[r + _BID_HIGH]), min(bid_low, rows[r + _BID_LOW])
            ask_high, ask_low = max(ask_high, rows[r + _ASK_HIGH]), min(ask_low, rows[r + _ASK_LOW])
            if rows[r + _T_COUNT]:
                if not count:
                    t_open, t_high, t_low = rows[r + _T_OPEN], rows[r + _T_HIGH], rows[r + _T_LOW]
                t_high, t_low = max(t_high, rows[r + _T_HIGH]), min(t_low, rows[r + _T_LOW])
                t_close = rows[r + _T_CLOSE]
                value += rows[r + _T_VALUE]
                count += rows[r + _T_COUNT]
        previous = self.last_trade_before
        for i in range(i0 - 1, -1, -1):
            if rows[i * _ROW + _T_COUNT]:
                previous = rows[i * _ROW + _T_CLOSE]
                break
        return Candle(
            end=end,
            bid_open=bid_o,
            bid_high=bid_high,
            bid_low=bid_low,
            bid_close=bid_c,
            ask_open=ask_o,
            ask_high=ask_high,
            ask_low=ask_low,
            ask_close=ask_c,
            trade_open=t_open,
            trade_high=t_high,
            trade_low=t_low,
            trade_close=t_close,
            trade_value=value,
            trades=count,
            previous=previous,
            volume=volume_c - volume_o,
            open_interest=oi_c,
        )
