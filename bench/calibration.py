"""Calibration benchmark: `markets.insights.calibration` over 100k settled markets in PostgreSQL.

Target (issue 7): calibration over 100k settled markets <= 1 s. In the same run, two baselines
on the same data:

* the portable path (correlated subqueries, aggregation in Python) that SQLite uses, on all markets;
* a naive per-market ORM loop (one `.first()` query per market), timed on a subset and scaled
  linearly to the full count (the subset size is printed; the scaling is the only estimate here).

All three must produce the same bins and Brier score (checked). Run:
`./dev bench calibration [--markets N] [--snapshots-per-market K] [--naive-subset M] [--rebuild]`.
The data are generated once into BENCH_DATABASE_URL and reused while their shape matches.
"""

from __future__ import annotations

import argparse
import io
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from unittest import mock

import numpy as np

from bench._db import best_of, setup_django, timed

PREFIX = "BENCHCAL-"
SERIES = 50
CATEGORIES = ["Economics", "Sports", "Politics", "Weather", "Crypto"]
EVENTS = 2000
# Hours before close at which each market was quoted (jittered); the last ones sit inside 1 h.
OFFSETS_H = np.array(
    [480, 336, 288, 240, 192, 168, 144, 120, 96, 72, 48, 36, 24, 12, 8, 4, 2, 1.5, 0.75, 0.25]
)
BASE = datetime(2025, 1, 1, tzinfo=UTC)

if TYPE_CHECKING:
    from markets.models import Market


def build(markets: int, per_market: int, *, seed: int = 11) -> None:
    from django.db import connection, transaction

    from markets.models import Event, Market, MarketSnapshot, Series

    print(f"Generating {markets:,} settled markets with {per_market} snapshots each (once) ...", flush=True)
    MarketSnapshot.objects.filter(market__ticker__startswith=PREFIX).delete()
    Market.objects.filter(ticker__startswith=PREFIX).delete()
    Event.objects.filter(ticker__startswith=PREFIX).delete()
    Series.objects.filter(ticker__startswith=PREFIX).delete()
    rng = np.random.default_rng(seed)
    series = Series.objects.bulk_create(
        [
            Series(ticker=f"{PREFIX}S{s}", title=f"Series {s}", category=CATEGORIES[s % len(CATEGORIES)])
            for s in range(SERIES)
        ]
    )
    events = Event.objects.bulk_create(
        [Event(ticker=f"{PREFIX}E{e}", series=series[e % SERIES]) for e in range(EVENTS)]
    )
    truth = rng.random(markets)
    outcome = rng.random(markets) < truth
    scalar = rng.random(markets) < 0.01
    early = rng.random(markets) < 0.08
    close_minutes = np.sort(rng.integers(0, 365 * 24 * 60, size=markets))
    rows = []
    for i in range(markets):
        close = BASE + timedelta(minutes=int(close_minutes[i]))
        expected = close + timedelta(hours=1)
        can_close_early = bool(early[i]) or bool(rng.random() < 0.3)
        if early[i]:
            # Closed early: off the minute grid, days before its expected expiration.
            expected = close + timedelta(days=3)
            close = close + timedelta(seconds=int(rng.integers(1, 59)))
        result = "scalar" if scalar[i] else ("yes" if outcome[i] else "no")
        value = Decimal("0.38") if scalar[i] else Decimal(int(outcome[i]))
        rows.append(
            Market(
                ticker=f"{PREFIX}{i}",
                event=events[i % EVENTS],
                status="finalized",
                result=result,
                settlement_value=value,
                open_time=close - timedelta(days=30),
                close_time=close,
                expected_expiration_time=expected,
                can_close_early=can_close_early,
            )
        )
    with transaction.atomic():
        Market.objects.bulk_create(rows, batch_size=5000)
    # bulk_create on PostgreSQL assigns ids in creation order: row i is market i.
    ordered = Market.objects.filter(ticker__startswith=PREFIX).order_by("id")
    ids = np.array(ordered.values_list("id", flat=True))
    closes = [c for c in ordered.values_list("close_time", flat=True) if c is not None]
    close_us = np.array([int(c.timestamp() * 1_000_000) for c in closes], dtype=np.int64)
    won = outcome
    offsets = OFFSETS_H[:per_market] if per_market <= len(OFFSETS_H) else np.linspace(720, 0.1, per_market)
    table = MarketSnapshot._meta.db_table
    chunk = 10_000
    written = 0
    for start in range(0, len(ids), chunk):
        part = slice(start, start + chunk)
        n = len(ids[part])
        hours = offsets[None, :] * rng.uniform(0.9, 1.1, size=(n, len(offsets)))
        at = close_us[part, None] - (hours * 3600 * 1_000_000).astype(np.int64)
        # Prices drift from a prior towards the outcome as close approaches; on the cent grid.
        # A market's early price is the true probability seen through noise: roughly calibrated.
        prior = np.clip(truth[part] + rng.normal(0, 0.08, size=n), 0.01, 0.99)[:, None]
        weight = np.exp(-hours / 48)
        target = np.where(won[part], 0.97, 0.03)[:, None]
        mid = (1 - weight) * prior + weight * target + rng.normal(0, 0.05, size=hours.shape)
        bid = np.clip(np.round(mid * 100) - rng.integers(0, 2, size=hours.shape), 0, 98).astype(int)
        ask = np.clip(bid + rng.integers(1, 4, size=hours.shape), bid + 1, 100).astype(int)
        empty = rng.random(hours.shape) < 0.02
        bid[empty], ask[empty] = 0, 100
        volume = np.cumsum(rng.integers(0, 500, size=hours.shape), axis=1)
        buffer = io.StringIO()
        for r in range(n):
            market_id = int(ids[part][r])
            for k in range(len(offsets)):
                ts = datetime.fromtimestamp(int(at[r, k]) / 1_000_000, tz=UTC).isoformat()
                b, a = int(bid[r, k]), int(ask[r, k])
                buffer.write(
                    f"{market_id}\t{ts}\tpoll\t{b / 100:.4f}\t{a / 100:.4f}\t{(100 - a) / 100:.4f}\t"
                    f"{(100 - b) / 100:.4f}\t{int(volume[r, k])}.00\n"
                )
        columns = "market_id, captured_at, source, yes_bid, yes_ask, no_bid, no_ask, volume"
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            copy.write(buffer.getvalue())
        written += n * len(offsets)
        print(f"  {written:,} snapshots", end="\r", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"ANALYZE {Market._meta.db_table}")
    print(f"  {written:,} snapshots written")


def naive_calibration(markets: list[Market], horizon: timedelta, bins: int) -> tuple[list[int], Decimal]:
    """The obvious ORM loop: one query per market for its last quote by then, binned in Python."""
    from markets.insights import _mid, closed_early_condition
    from markets.models import Market, MarketSnapshot

    early = set(
        Market.objects.filter(pk__in=[m.pk for m in markets])
        .filter(closed_early_condition())
        .values_list("pk", flat=True)
    )
    counts = [0] * bins
    squared = Decimal(0)
    for m in markets:
        if m.pk in early or m.result not in ("yes", "no") or m.close_time is None:
            continue
        snap = (
            MarketSnapshot.objects.filter(market=m, captured_at__lte=m.close_time - horizon)
            .order_by("-captured_at", "-source")
            .first()
        )
        mid = _mid(snap.yes_bid, snap.yes_ask) if snap else None
        if mid is None:
            continue
        counts[min(int(mid * bins), bins - 1)] += 1
        squared += (mid - (1 if m.result == "yes" else 0)) ** 2
    n = sum(counts)
    return counts, (squared / n).quantize(Decimal("0.000001")) if n else Decimal(0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench calibration")
    parser.add_argument("--markets", type=int, default=100_000)
    parser.add_argument("--snapshots-per-market", type=int, default=20)
    parser.add_argument("--naive-subset", type=int, default=2_000, help="Markets the naive loop is timed on.")
    parser.add_argument("--rebuild", action="store_true", help="Regenerate the data even if present.")
    args = parser.parse_args(argv)
    setup_django()
    from django.db import connection

    from markets import insights
    from markets.models import Market, MarketSnapshot

    markets_qs = Market.objects.filter(ticker__startswith=PREFIX)
    have = markets_qs.count()
    have_snaps = MarketSnapshot.objects.filter(market__ticker__startswith=PREFIX).count() if have else 0
    if args.rebuild or have != args.markets or have_snaps != args.markets * args.snapshots_per_market:
        with timed() as t:
            build(args.markets, args.snapshots_per_market)
        print(f"  (generated in {t.wall:.0f} s)")
    n_snaps = MarketSnapshot.objects.filter(market__ticker__startswith=PREFIX).count()
    print(
        f"\nData: {markets_qs.count():,} settled markets, {n_snaps:,} snapshots "
        f"in {connection.settings_dict['NAME']} ({os.cpu_count()} CPU cores, shared)"
    )

    results = {}
    print("\ncalibration(), PostgreSQL LATERAL path (one index probe per market, bins aggregated in SQL)")
    for label in ("1h", "1d", "1w"):
        horizon = insights.HORIZONS[label]
        holder: list[insights.Calibration] = []

        def run(h: timedelta = horizon, out: list[insights.Calibration] = holder) -> None:
            out.append(insights.calibration(horizon=h, markets=markets_qs))

        t = best_of(5, run)
        results[label] = (t, holder[-1])
        c = holder[-1]
        print(
            f"  horizon {label}: {t.wall * 1000:7.1f} ms wall ({t.cpu * 1000:5.1f} ms Python CPU)   "
            f"binned {c.markets:,}, excluded {c.excluded.total:,} (early {c.excluded.closed_early:,}, "
            f"empty {c.excluded.empty_book:,}, no quote {c.excluded.no_quote:,}), scalar {c.scalar.count:,}, "
            f"Brier {c.brier_score}   target <= 1000 ms"
        )
    fast_t, fast = results["1d"]

    def sports() -> None:
        insights.calibration(horizon=insights.HORIZONS["1d"], markets=markets_qs, category="Sports")

    filtered = best_of(5, sports)
    print(f"  horizon 1d, category=Sports: {filtered.wall * 1000:7.1f} ms")

    print("\nBaseline 1: the portable path (correlated subqueries, aggregation in Python), all markets")
    holder2: list[insights.Calibration] = []
    with mock.patch.object(insights, "lateral_joins", lambda: False):
        portable_t = best_of(
            2,
            lambda: holder2.append(insights.calibration(horizon=insights.HORIZONS["1d"], markets=markets_qs)),
        )
    portable = holder2[-1]
    same = [b.count for b in portable.bins] == [b.count for b in fast.bins] and (
        portable.brier_score == fast.brier_score
    )
    print(
        f"  horizon 1d: {portable_t.wall * 1000:7.1f} ms   "
        f"ratio {portable_t.wall / fast_t.wall:5.1f}x slower; same bins and Brier: {same}"
    )

    subset = list(markets_qs.order_by("id")[: args.naive_subset])
    total = markets_qs.count()
    print(f"\nBaseline 2: a naive per-market ORM loop, timed on {len(subset):,} markets, scaled to {total:,}")
    with timed() as naive_t:
        naive_counts, naive_brier = naive_calibration(subset, insights.HORIZONS["1d"], insights.DEFAULT_BINS)
    scaled = naive_t.wall * total / len(subset)
    check = insights.calibration(
        horizon=insights.HORIZONS["1d"], markets=markets_qs.filter(pk__in=[m.pk for m in subset])
    )
    agree = naive_counts == [b.count for b in check.bins] and naive_brier == check.brier_score
    print(
        f"  {len(subset):,} markets: {naive_t.wall * 1000:7.1f} ms -> {scaled:6.1f} s for {total:,} "
        f"(linear scaling)   ratio {scaled / fast_t.wall:6.0f}x slower; "
        f"same bins and Brier on the subset: {agree}"
    )
    if not (same and agree):
        print("  !! the paths disagree")
    print("\n(best of 5 runs for the fast path, best of 2 for the portable one; wall-clock time, warm cache)")
