"""Backtest benchmark: engine vs an event-driven loop, sweep throughput, loading from PostgreSQL.

Targets (issue 6): one strategy over 1M quote rows <= 0.25 s and >= 35x an event-loop baseline
with identical trades; a sweep >= 50 parameter sets/s over 1M rows; 1M snapshots from PostgreSQL
into pandas <= 1 s. Run: `./dev bench backtest [--rows N] [--markets M] [--skip-db]`.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import numpy as np

from ._db import setup_django

MICRO = 1_000_000


def synthetic_columns(rows: int, markets: int, seed: int = 7) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Random-walk Kalshi-like books on the cent grid: spreads of 1-3 cents, some empty sides."""
    from backtests.engine import MarketInfo

    rng = np.random.default_rng(seed)
    per = rows // markets
    t0 = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 10**9
    idx, ts, bid, ask = [], [], [], []
    infos = []
    for m in range(markets):
        steps = rng.choice([-1, 0, 0, 0, 0, 1], size=per)
        cents = np.clip(50 + np.cumsum(steps), 2, 95)
        spread = rng.choice([1, 1, 2, 3], size=per)
        b = cents * 10_000
        a = np.minimum(cents + spread, 99) * 10_000
        empty = rng.random(per)
        b = np.where(empty < 0.01, 0, b)
        a = np.where((empty >= 0.01) & (empty < 0.02), MICRO, a)
        gaps = rng.choice([15, 15, 15, 30, 60, 300], size=per) * 10**9
        times = t0 + m * 10**9 + np.cumsum(gaps)
        idx.append(np.full(per, m))
        ts.append(times)
        bid.append(b)
        ask.append(a)
        close = datetime.fromtimestamp(int(times[-1]) / 1e9, tz=UTC) + timedelta(hours=1)
        infos.append(
            MarketInfo(f"BENCH-{m}", Decimal(int(rng.integers(0, 2))), close, fee_multiplier=Decimal(1))
        )
    return infos, {
        "ticker_index": np.concatenate(idx),
        "time": np.concatenate(ts),
        "yes_bid": np.concatenate(bid),
        "yes_ask": np.concatenate(ask),
    }


# --------------------------------------------------------------------------------------------------
# The baseline: a conventional event-driven backtester (one Python event per quote)
# --------------------------------------------------------------------------------------------------


class EventLoopMeanReversion:
    """Per-quote events, an O(1) rolling window, Decimal money and per-event mark-to-market, the
    way event-driven backtesters are usually written. Same rules as the engine, so same trades."""

    def __init__(self, window: int, entry_z: float, exit_z: float, contracts: Decimal) -> None:
        self.window, self.entry_z, self.exit_z, self.contracts = window, entry_z, exit_z, contracts

    def run(
        self, infos: list[Any], cols: dict[str, np.ndarray]
    ) -> tuple[list[tuple[int, int, str, Decimal]], Decimal]:
        fills: list[tuple[int, int, str, Decimal]] = []
        total = Decimal(0)
        starts = np.searchsorted(cols["ticker_index"], np.arange(len(infos) + 1))
        for m, info in enumerate(infos):
            lo, hi = int(starts[m]), int(starts[m + 1])
            close_ns = int(info.close_time.timestamp() * 1_000_000) * 1_000
            ts = cols["time"][lo:hi].tolist()
            bids = cols["yes_bid"][lo:hi].tolist()
            asks = cols["yes_ask"][lo:hi].tolist()
            win: deque[int] = deque()
            s1 = s2 = 0
            last_mid: int | None = None
            state = 0
            pending = 0
            position = Decimal(0)
            cash = Decimal(0)
            equity: list[Decimal] = []
            yes_mark = no_mark = Decimal(0)
            for i in range(hi - lo):
                bid = Decimal(bids[i]) / MICRO if bids[i] > 0 else None
                ask = Decimal(asks[i]) / MICRO if asks[i] < MICRO else None
                # 1. the order decided at the previous event executes against this quote
                if i > 0 and ts[i] < close_ns:
                    goal = pending * self.contracts
                    while position != goal:
                        up = goal > position
                        if (up and ask is None) or (not up and bid is None):
                            break
                        price: Decimal | None
                        if up and position < 0:
                            n, action, price = -position, "sell_no", None if ask is None else 1 - ask
                        elif up:
                            n, action, price = goal - position, "buy_yes", ask
                        elif position > 0:
                            n, action, price = position, "sell_yes", bid
                        else:
                            n, action, price = position - goal, "buy_no", None if bid is None else 1 - bid
                        assert price is not None
                        fee = (Decimal("0.07") * n * price * (1 - price) * info.fee_multiplier).quantize(
                            Decimal("0.01"), rounding=ROUND_CEILING
                        )
                        cash += (-n if action.startswith("buy") else n) * price - fee
                        position += n if up else -n
                        fills.append((m, ts[i], action, price))
                # 2. the strategy sees this quote
                if bid is not None and ask is not None and bid <= ask:
                    last_mid = bids[i] + asks[i]
                if last_mid is not None:
                    win.append(last_mid)
                    s1 += last_mid
                    s2 += last_mid * last_mid
                    if len(win) > self.window:
                        old = win.popleft()
                        s1 -= old
                        s2 -= old * old
                z: float | None = None
                if len(win) == self.window:
                    var = self.window * s2 - s1 * s1
                    z = 0.0 if var == 0 else (self.window * last_mid - s1) / math.sqrt(var)  # type: ignore[operator]
                el = z is not None and z < -self.entry_z
                es = z is not None and z > self.entry_z
                xl = z is None or z >= -self.exit_z or es or i == 0
                xs = z is None or z <= self.exit_z or el or i == 0
                if state == 1 and xl or state == -1 and xs:
                    state = 0
                if state == 0:
                    state = 1 if el else -1 if es else 0
                pending = state
                # 3. the portfolio marks to market
                if bid is not None:
                    yes_mark = bid
                if ask is not None:
                    no_mark = 1 - ask
                value = position * yes_mark if position > 0 else -position * no_mark
                equity.append(cash + value)
            settle = info.settlement_value
            total += cash + (position * settle if position > 0 else -position * (1 - settle))
        return fills, total


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def bench_engine(rows: int, markets: int) -> None:
    from backtests import engine
    from backtests.engine import BacktestConfig, QuotePanel
    from backtests.sweeps import run_sweep

    infos, cols = synthetic_columns(rows, markets)
    print(f"Synthetic data: {len(cols['time']):,} quote rows in {markets} markets")
    params = {"window": 60, "entry_z": 2.0, "exit_z": 0.5}
    config = BacktestConfig(contracts=Decimal(10))

    def engine_run() -> engine.BacktestResult:
        panel = QuotePanel.from_arrays(infos, cols)  # fresh: no cached rolling statistics
        return engine.run_backtest(panel, "mean_reversion", params, config=config)

    engine_s, result = timed(engine_run, 5)
    n_fills = len(result.fills.row)
    print(f"\nOne strategy (mean_reversion {params}) over 1M rows")
    print(
        f"  engine:               {engine_s * 1000:8.1f} ms   ({n_fills:,} fills, "
        f"{len(result.trips.market):,} round trips)  target <= 250 ms"
    )

    base = EventLoopMeanReversion(60, 2.0, 0.5, Decimal(10))
    base_s, (base_fills, base_pnl) = timed(lambda: base.run(infos, cols), 1)
    ours = [
        (int(m), int(result.panel.time[r]), engine.LEG_NAMES[int(leg)], Decimal(int(p)) / MICRO)
        for m, r, leg, p in zip(
            result.fills.market, result.fills.row, result.fills.leg, result.fills.price, strict=True
        )
    ]
    identical = ours == base_fills and result.net_pnl == base_pnl
    print(f"  event-loop baseline:  {base_s * 1000:8.1f} ms   ({len(base_fills):,} fills)")
    print(
        f"  ratio:                {base_s / engine_s:8.1f} x   target >= 35x; "
        f"identical fills and P&L: {identical}"
    )
    if not identical:
        print("  !! the engine and the baseline disagree")

    grid: dict[str, list[Any]] = {
        "window": [30, 60, 120, 240],
        "entry_z": [1.5, 2.0, 2.5, 3.0],
        "exit_z": [0.0, 0.25, 0.5, 1.0],
    }
    n_sets = 64
    panel = QuotePanel.from_arrays(infos, cols)
    sweep_s, sweep = timed(
        lambda: run_sweep(panel, "mean_reversion", grid, metric="sharpe", config=config), 1
    )
    print(f"\nSweep of {n_sets} parameter sets over 1M rows")
    print(f"  full period:          {sweep_s:8.2f} s    {n_sets / sweep_s:6.1f} sets/s   target >= 50 sets/s")
    panel = QuotePanel.from_arrays(infos, cols)
    oos_s, _ = timed(
        lambda: run_sweep(panel, "mean_reversion", grid, metric="sharpe", oos_fraction=0.3, config=config), 1
    )
    print(
        f"  with 30% out of sample: {oos_s:6.2f} s    {n_sets / oos_s:6.1f} sets/s (two simulations per set)"
    )
    best = sweep.rows[0]
    print(f"  best in sample: {best.params}  sharpe {best.in_sample['sharpe']}")


def bench_loading(rows: int, markets: int) -> None:
    setup_django()
    import pandas as pd
    from django.db import connection

    from backtests import data
    from markets.models import Event, Market, MarketSnapshot

    per = rows // markets
    existing = MarketSnapshot.objects.filter(market__ticker__startswith="BENCHLOAD-").count()
    if existing != per * markets:
        print(f"\nWriting {per * markets:,} snapshots into {connection.settings_dict['NAME']} (once) ...")
        MarketSnapshot.objects.filter(market__ticker__startswith="BENCHLOAD-").delete()
        event, _ = Event.objects.get_or_create(ticker="BENCHLOAD")
        Market.objects.filter(ticker__startswith="BENCHLOAD-").delete()
        Market.objects.bulk_create(
            [Market(ticker=f"BENCHLOAD-{m}", event=event, status="active") for m in range(markets)]
        )
        ids = list(
            Market.objects.filter(ticker__startswith="BENCHLOAD-").order_by("id").values_list("id", flat=True)
        )
        rng = np.random.default_rng(3)
        start = datetime(2026, 6, 1, tzinfo=UTC)
        with (
            connection.cursor() as cur,
            cur.cursor.copy(
                "COPY markets_marketsnapshot (market_id, captured_at, source, yes_bid, yes_ask, no_bid, "
                "no_ask, last_price, yes_bid_size, yes_ask_size, volume) FROM STDIN"
            ) as copy,
        ):
            for market_id in ids:
                cents = np.clip(50 + np.cumsum(rng.choice([-1, 0, 1], size=per)), 2, 95)
                for i, c in enumerate(cents.tolist()):
                    b = Decimal(c) / 100
                    a = Decimal(c + 1) / 100
                    copy.write_row(
                        (
                            market_id,
                            start + timedelta(seconds=15 * i),
                            "poll",
                            b,
                            a,
                            1 - a,
                            1 - b,
                            b,
                            Decimal("120.50"),
                            Decimal("80.25"),
                            Decimal(1000 + i),
                        )
                    )
        connection.commit() if not connection.get_autocommit() else None
    markets_qs = list(Market.objects.filter(ticker__startswith="BENCHLOAD-").with_event().order_by("id"))
    qs = MarketSnapshot.objects.for_markets(markets_qs)

    def fast() -> pd.DataFrame:
        return pd.DataFrame(data.load_quote_arrays(qs))

    def portable() -> pd.DataFrame:
        return pd.DataFrame(data._python_arrays(qs))

    def orm_values() -> pd.DataFrame:
        return pd.DataFrame.from_records(
            qs.order_by("market_id", "captured_at").values(
                "market_id",
                "captured_at",
                "yes_bid",
                "yes_ask",
                "last_price",
                "volume",
                "yes_bid_size",
                "yes_ask_size",
            )
        )

    fast_s, frame = timed(fast, 3)
    panel_s, panel = timed(lambda: data.load_panel(markets_qs), 3)
    orm_s, _ = timed(orm_values, 1)
    portable_s, frame2 = timed(portable, 1)
    same = frame.equals(frame2)
    print(f"\nLoading {len(frame):,} snapshots from PostgreSQL into pandas")
    print(f"  COPY binary -> numpy -> DataFrame: {fast_s * 1000:8.1f} ms   target <= 1000 ms")
    print(f"  ... straight into a QuotePanel:    {panel_s * 1000:8.1f} ms   ({len(panel):,} rows)")
    print(f"  baseline .values() -> DataFrame:   {orm_s * 1000:8.1f} ms   ratio {orm_s / fast_s:5.1f}x")
    print(
        f"  portable values_list -> ints:      {portable_s * 1000:8.1f} ms   "
        f"ratio {portable_s / fast_s:5.1f}x; same integers: {same}"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench backtest")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--skip-db", action="store_true", help="Skip the PostgreSQL loading benchmark.")
    args = parser.parse_args(argv)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")
    django.setup()
    bench_engine(args.rows, args.markets)
    if not args.skip_db:
        bench_loading(args.rows, args.markets)
    print(f"\n(best of several runs for the fast paths; {os.cpu_count()} CPU cores, shared)")
