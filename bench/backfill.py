"""Backfill benchmark: 1-minute candles of many markets into snapshots, against PostgreSQL.

    ./dev bench backfill [--markets=100] [--minutes=1440]

Kalshi is replaced by an httpx.MockTransport answering /markets/candlesticks from pre-serialised
candles in the current live shape (market objects from a real recording), so the figures cover the
real client (HTTP response → msgspec parse), the planning and batching, the cumulative volume and
the writes, but not the network or Kalshi's rate limit. Reported:

* a cold backfill, a rerun (progress says everything is stored) and a rerun with the progress
  records deleted (every row conflicts): wall and this process's CPU time, candles/s, requests;
* snapshot writing alone: `write_snapshots(ignore_conflicts=True)` (COPY into a staging table, then
  INSERT … ON CONFLICT DO NOTHING) against Django's `bulk_create(ignore_conflicts=True)` on the
  same rows, fresh and all-duplicate, as rows/s and ratio.
"""

from __future__ import annotations

import bisect
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ._db import best_of, setup_django, timed

FIXTURE = Path(__file__).resolve().parent.parent / "markets/tests/fixtures/kalshi/2026-10_markets_page.json"
PREFIX = "BENCHBF"
START = datetime(2026, 9, 1, tzinfo=UTC)


def _options(argv: list[str]) -> dict[str, int]:
    options = {"markets": 100, "minutes": 1440}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if name in options:
            options[name] = int(value)
    return options


class CandleExchange:
    """Market objects and one candle per minute per market, served like Kalshi's batch endpoint."""

    def __init__(self, markets: int, minutes: int, seed: int = 11) -> None:
        template = json.loads(FIXTURE.read_text())["markets"][0]
        rng = random.Random(seed)
        start = int(START.timestamp())
        self.markets: dict[str, dict[str, Any]] = {}
        self.ends: dict[str, list[int]] = {}
        self.candles: dict[str, list[bytes]] = {}
        for i in range(markets):
            ticker = f"{PREFIX}-E{i:04d}-M"
            self.markets[ticker] = dict(
                template,
                ticker=ticker,
                event_ticker=f"{PREFIX}-E{i:04d}",
                status="active",
                open_time=START.isoformat().replace("+00:00", "Z"),
                close_time=(START + timedelta(days=365)).isoformat().replace("+00:00", "Z"),
            )
            bid, oi = rng.randrange(5, 90), rng.randrange(0, 100_000)
            ends, bodies = [], []
            for minute in range(1, minutes + 1):
                bid = min(97, max(1, bid + rng.choice((-1, 0, 0, 1))))
                traded = rng.random() < 0.4
                volume = rng.randrange(1, 50_000) / 100 if traded else 0
                oi += int(volume)
                candle: dict[str, Any] = {
                    "end_period_ts": start + minute * 60,
                    "yes_bid": {f"{k}_dollars": f"{bid / 100:.4f}" for k in ("open", "high", "low", "close")},
                    "yes_ask": {
                        f"{k}_dollars": f"{(bid + 1) / 100:.4f}" for k in ("open", "high", "low", "close")
                    },
                    "price": (
                        {f"{k}_dollars": f"{bid / 100:.4f}" for k in ("open", "high", "low", "close", "mean")}
                        if traded
                        else {}
                    ),
                    "volume_fp": f"{volume:.2f}",
                    "open_interest_fp": f"{oi:.2f}",
                }
                ends.append(candle["end_period_ts"])
                bodies.append(json.dumps(candle, separators=(",", ":")).encode())
            self.ends[ticker], self.candles[ticker] = ends, bodies
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        import httpx

        self.requests += 1
        path = request.url.path.removeprefix("/trade-api/v2")
        params = request.url.params
        if path == "/historical/cutoff":
            return httpx.Response(
                200,
                json={
                    "market_settled_ts": "2026-08-07T00:00:00Z",
                    "trades_created_ts": "2026-08-07T00:00:00Z",
                },
            )
        if path == "/markets":
            wanted = params["tickers"].split(",")
            return httpx.Response(200, json={"markets": [self.markets[t] for t in wanted], "cursor": ""})
        if path == "/historical/markets":
            return httpx.Response(200, json={"markets": [], "cursor": ""})
        if path == "/markets/candlesticks":
            lo, hi = int(params["start_ts"]), int(params["end_ts"])
            parts = []
            for ticker in params["market_tickers"].split(","):
                ends = self.ends[ticker]
                first, last = bisect.bisect_left(ends, lo), bisect.bisect_right(ends, hi)
                parts.append(
                    b'{"market_ticker":"'
                    + ticker.encode()
                    + b'","candlesticks":['
                    + b",".join(self.candles[ticker][first:last])
                    + b"]}"
                )
            return httpx.Response(200, content=b'{"markets":[' + b",".join(parts) + b"]}")
        return httpx.Response(404, json={"error": "not found"})


def main(argv: list[str]) -> None:
    options = _options(argv)
    setup_django()

    import httpx
    from django.db import transaction

    from markets.backfill import Selection, run_backfill, snapshot_quote
    from markets.ingest import SnapshotRow, write_snapshots
    from markets.kalshi import KalshiClient
    from markets.models import BackfillProgress, Event, Market, MarketSnapshot, SnapshotSource

    def clean() -> None:
        Market.objects.filter(ticker__startswith=PREFIX).delete()
        Event.objects.filter(ticker__startswith=PREFIX).delete()

    n, minutes = options["markets"], options["minutes"]
    print(f"Building {n} markets × {minutes:,} one-minute candles ({n * minutes:,} candles) ...", flush=True)
    exchange = CandleExchange(n, minutes)
    tickers = tuple(exchange.markets)
    until = START + timedelta(minutes=minutes)
    clean()

    def backfill() -> tuple[int, int]:
        before = exchange.requests
        with KalshiClient(
            base_url="https://bench.test/trade-api/v2", transport=httpx.MockTransport(exchange)
        ) as c:
            run = run_backfill(
                client=c,
                selection=Selection(tickers=tickers),
                since=START,
                until=until,
                period=1,
                trigger="bench",
            )
        return run.snapshots_written, exchange.requests - before

    total = n * minutes
    try:
        cold_requests = 0
        print(f"\nBackfills of {total:,} candles:")
        print(f"  {'run':<34} {'wall s':>7} {'CPU s':>7} {'candles/s':>10} {'written':>9} {'requests':>9}")
        for label, prepare in (
            ("cold", lambda: None),
            ("rerun (progress recorded)", lambda: None),
            (
                "rerun, progress deleted (conflicts)",
                lambda: BackfillProgress.objects.filter(market__ticker__startswith=PREFIX).delete(),
            ),
        ):
            prepare()
            with timed() as t:
                written, requests = backfill()
            cold_requests = cold_requests or requests
            rate = f"{total / t.wall:10,.0f}" if "progress recorded" not in label else f"{'—':>10}"
            print(f"  {label:<34} {t.wall:7.2f} {t.cpu:7.2f} {rate} {written:9,} {requests:9,}")
        print(
            f"  Against Kalshi the cold run's {cold_requests} requests take ≥ {cold_requests / 20:.1f} s "
            "at the default KALSHI_RATE_LIMIT of 20/s: the rate limit, not this code, sets the pace."
        )

        # The write path alone, on the same typed rows: ours against bulk_create(ignore_conflicts).
        ids = dict(Market.objects.filter(ticker__startswith=PREFIX).values_list("ticker", "id"))
        MarketSnapshot.objects.filter(market_id__in=ids.values()).delete()
        with KalshiClient(
            base_url="https://bench.test/trade-api/v2", transport=httpx.MockTransport(exchange)
        ) as c:
            by_ticker = {}
            per_request = max(1, 9_000 // minutes)
            for start in range(0, n, per_request):
                batch = list(tickers[start : start + per_request])
                by_ticker.update(
                    c.get_markets_candlesticks(
                        batch,
                        start_ts=int(START.timestamp()),
                        end_ts=int(until.timestamp()),
                        period_interval=1,
                    )
                )
        rows = [
            SnapshotRow(ids[t], candle.end, SnapshotSource.BACKFILL, snapshot_quote(candle, candle.volume))
            for t, result in by_ticker.items()
            for candle in result.candles
        ]

        def ours() -> None:
            with transaction.atomic():
                write_snapshots(rows, ignore_conflicts=True)
                transaction.set_rollback(True)

        def django_bulk() -> None:
            with transaction.atomic():
                MarketSnapshot.objects.bulk_create(
                    _objects(rows, MarketSnapshot), batch_size=5000, ignore_conflicts=True
                )
                transaction.set_rollback(True)

        def ours_dup() -> None:
            with transaction.atomic():
                write_snapshots(rows, ignore_conflicts=True)
                write_snapshots(rows, ignore_conflicts=True)
                transaction.set_rollback(True)

        def django_dup() -> None:
            with transaction.atomic():
                objs = _objects(rows, MarketSnapshot)
                MarketSnapshot.objects.bulk_create(objs, batch_size=5000, ignore_conflicts=True)
                MarketSnapshot.objects.bulk_create(
                    _objects(rows, MarketSnapshot), batch_size=5000, ignore_conflicts=True
                )
                transaction.set_rollback(True)

        print(f"\nWriting {len(rows):,} backfilled snapshot rows (best of 3, each rolled back):")
        print(f"  {'variant':<30} {'ours rows/s':>12} {'bulk_create rows/s':>19} {'ratio':>7}")
        for label, a, b, factor in (
            ("fresh rows", ours, django_bulk, 1),
            ("fresh, then all again", ours_dup, django_dup, 2),
        ):
            t_ours, t_base = best_of(3, a), best_of(3, b)
            r_ours, r_base = factor * len(rows) / t_ours.wall, factor * len(rows) / t_base.wall
            print(f"  {label:<30} {r_ours:12,.0f} {r_base:19,.0f} {r_ours / r_base:6.1f}×")
    finally:
        clean()


def _objects(rows: list[Any], model: Any) -> list[Any]:
    return [
        model(
            market_id=r.market_id,
            captured_at=r.captured_at,
            source=r.source,
            yes_bid=r.quote[0],
            yes_ask=r.quote[1],
            no_bid=r.quote[2],
            no_ask=r.quote[3],
            last_price=r.quote[4],
            volume=r.quote[7],
            open_interest=r.quote[9],
        )
        for r in rows
    ]
