"""Ingest benchmark: a synthetic 100k-market poll cycle against PostgreSQL.

    ./dev bench ingest [--markets=100000]

Pages are served by an httpx.MockTransport from pre-serialised JSON built from a real recorded
market object, so the figures cover the real client (HTTP response → msgspec parse), the diff and
the writes, but not the network. Reported:

* whole cycles (cold, every quote changed, 10 % changed, nothing changed): wall and this process's
  CPU time ("parse + diff + write");
* snapshot writing alone: our COPY path vs Django's bulk_create on the same rows, typed and with raw
  JSON, as rows/s and ratio;
* bytes per stored snapshot row, heap only and with indexes.
"""

from __future__ import annotations

import functools
import gc
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._db import best_of, setup_django, timed

FIXTURE = Path(__file__).resolve().parent.parent / "markets/tests/fixtures/kalshi/2026-10_markets_page.json"
PAGE_SIZE = 1000
MARKETS_PER_EVENT = 10
CYCLE_REPEATS = 3


def _quote(rng: random.Random) -> dict[str, str]:
    bid = rng.randrange(1, 97)
    ask = bid + rng.randrange(1, 3)
    return {
        "yes_bid_dollars": f"{bid / 100:.4f}",
        "yes_ask_dollars": f"{ask / 100:.4f}",
        "no_bid_dollars": f"{(100 - ask) / 100:.4f}",
        "no_ask_dollars": f"{(100 - bid) / 100:.4f}",
        "last_price_dollars": f"{rng.randrange(bid, ask + 1) / 100:.4f}",
        "yes_bid_size_fp": f"{rng.randrange(0, 50_000_000) / 100:.2f}",
        "yes_ask_size_fp": f"{rng.randrange(0, 50_000_000) / 100:.2f}",
        "volume_fp": f"{rng.randrange(0, 90_000_000) / 100:.2f}",
        "volume_24h_fp": f"{rng.randrange(0, 9_000_000) / 100:.2f}",
        "open_interest_fp": f"{rng.randrange(0, 50_000_000) / 100:.2f}",
    }


class SyntheticExchange:
    """Pre-serialised pages of `n` markets; `move(fraction)` changes that share of the quotes."""

    def __init__(self, n: int, seed: int = 7) -> None:
        template = json.loads(FIXTURE.read_text())["markets"][0]
        self.rng = random.Random(seed)
        self.markets: list[dict[str, Any]] = []
        for i in range(n):
            market = dict(template)
            event = f"BENCH-E{i // MARKETS_PER_EVENT:06d}"
            market.update(ticker=f"{event}-M{i % MARKETS_PER_EVENT}", event_ticker=event, **_quote(self.rng))
            self.markets.append(market)
        self.pages: list[bytes] = []
        self._serialise()

    def _serialise(self) -> None:
        self.pages = []
        for start in range(0, len(self.markets), PAGE_SIZE):
            cursor = str(start + PAGE_SIZE) if start + PAGE_SIZE < len(self.markets) else ""
            body = {"cursor": cursor, "markets": self.markets[start : start + PAGE_SIZE]}
            self.pages.append(json.dumps(body).encode())

    def move(self, fraction: float) -> int:
        changed = self.rng.sample(range(len(self.markets)), int(len(self.markets) * fraction))
        for i in changed:
            self.markets[i].update(_quote(self.rng))
        self._serialise()
        return len(changed)

    def handler(self, request: Any) -> Any:
        import httpx

        if request.url.path.endswith("/markets"):
            index = int(request.url.params.get("cursor") or 0) // PAGE_SIZE
            return httpx.Response(200, content=self.pages[index])
        return httpx.Response(200, json={"events": [], "series": [], "cursor": ""})


def main(argv: list[str]) -> None:
    n = 100_000
    for arg in argv:
        if arg.startswith("--markets="):
            n = int(arg.split("=", 1)[1])
    setup_django()

    import httpx
    from django.db import connection, transaction

    from markets import ingest
    from markets.kalshi import KalshiClient
    from markets.models import Event, Market, MarketSnapshot, PollRun, SnapshotSource

    def reset() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE markets_marketsnapshot, markets_market, markets_event, markets_series, "
                "markets_pollrun RESTART IDENTITY CASCADE"
            )

    print(f"Building {n:,} synthetic markets from a real recorded market object ...", flush=True)
    exchange = SyntheticExchange(n)
    print(f"  {sum(len(p) for p in exchange.pages) / n:,.0f} bytes of JSON per market")
    client = KalshiClient(
        base_url="https://kalshi.bench/trade-api/v2", transport=httpx.MockTransport(exchange.handler)
    )

    def cycle() -> Any:
        return ingest.run_poll_cycle(client=client, trigger="bench", reference_budget=0)

    # The synthetic exchange's 100k market dicts live in this process but are not the ingest's:
    # frozen, the cyclic GC stops re-scanning them (a full collection cost ~0.2 s CPU here),
    # as it would not in a poller that holds no such state.
    gc.collect()
    gc.freeze()

    reset()
    rows = []
    with timed() as t:
        run = cycle()
    rows.append(("cold: all markets new", t, run))
    # Each steady-state figure is the median of a few cycles: on a shared machine one cycle's CPU
    # time varies by ±0.15 s, enough to rank "nothing changed" above "10% changed".
    for label, fraction in (
        ("every quote changed", 1.0),
        ("10% of quotes changed", 0.10),
        ("nothing changed", 0.0),
    ):
        samples = []
        for _ in range(CYCLE_REPEATS):
            if fraction:
                exchange.move(fraction)
            with timed() as t:
                run = cycle()
            samples.append((t, run))
        samples.sort(key=lambda r: r[0].cpu)
        t, run = samples[len(samples) // 2]
        rows.append((label, t, run))

    print(
        f"\nPoll cycles over {n:,} markets ({n // PAGE_SIZE} pages; "
        f"steady state: median of {CYCLE_REPEATS} cycles):"
    )
    print(f"  {'cycle':<24} {'wall s':>7} {'CPU s':>7} {'snapshots':>10} {'unchanged':>10}")
    for label, t, run in rows:
        written, skipped = run.snapshots_written, run.unchanged_skipped
        print(f"  {label:<24} {t.wall:7.2f} {t.cpu:7.2f} {written:10,} {skipped:10,}")
    per_100k = rows[1][1].cpu * 100_000 / n
    print(
        f"  → parse + diff + write, every quote changed: {per_100k:.2f} s CPU per 100k markets (target ≤ 1 s)"
    )

    # Snapshot writing alone: the same typed rows through COPY and through bulk_create.
    ids = list(Market.objects.order_by("id").values_list("id", flat=True)[:n])
    q = exchange.markets
    quote_rows = [
        tuple(
            None if q[i].get(k) is None else Decimal(q[i][k])
            for k in (
                "yes_bid_dollars",
                "yes_ask_dollars",
                "no_bid_dollars",
                "no_ask_dollars",
                "last_price_dollars",
                "yes_bid_size_fp",
                "yes_ask_size_fp",
                "volume_fp",
                "volume_24h_fp",
                "open_interest_fp",
            )
        )
        for i in range(len(ids))
    ]
    raws = [json.dumps(q[i]).encode() for i in range(len(ids))]
    base_time = datetime(2030, 1, 1, tzinfo=UTC)
    counter = iter(range(1_000_000))

    def snapshot_rows(with_raw: bool) -> list[ingest.SnapshotRow]:
        at = base_time + timedelta(minutes=next(counter))
        return [
            ingest.SnapshotRow(
                market_id=mid,
                captured_at=at,
                source=SnapshotSource.POLL,
                quote=quote,
                raw=raw if with_raw else None,
            )
            for mid, quote, raw in zip(ids, quote_rows, raws, strict=True)
        ]

    def ours(with_raw: bool) -> None:
        batch = snapshot_rows(with_raw)
        with transaction.atomic():
            ingest.write_snapshots(batch)
            transaction.set_rollback(True)

    def baseline(with_raw: bool) -> None:
        batch = snapshot_rows(with_raw)
        with transaction.atomic():
            MarketSnapshot.objects.bulk_create(
                [
                    MarketSnapshot(
                        market_id=r.market_id,
                        captured_at=r.captured_at,
                        source=r.source,
                        yes_bid=r.quote[0],
                        yes_ask=r.quote[1],
                        no_bid=r.quote[2],
                        no_ask=r.quote[3],
                        last_price=r.quote[4],
                        yes_bid_size=r.quote[5],
                        yes_ask_size=r.quote[6],
                        volume=r.quote[7],
                        volume_24h=r.quote[8],
                        open_interest=r.quote[9],
                        raw=None if r.raw is None else json.loads(r.raw),
                    )
                    for r in batch
                ],
                batch_size=1000,
            )
            transaction.set_rollback(True)

    print(f"\nWriting {len(ids):,} snapshot rows (best of 3, each rolled back):")
    print(f"  {'variant':<22} {'ours rows/s':>12} {'bulk_create rows/s':>19} {'ratio':>7}")
    for label, with_raw, target in (("typed columns", False, 10), ("with raw JSON", True, 7)):
        t_ours = best_of(3, functools.partial(ours, with_raw))
        t_base = best_of(3, functools.partial(baseline, with_raw))
        r_ours, r_base = len(ids) / t_ours.wall, len(ids) / t_base.wall
        print(f"  {label:<22} {r_ours:12,.0f} {r_base:19,.0f} {r_ours / r_base:6.1f}×  (target ≥ {target}×)")

    # Bytes per stored row, measured on rows the poll cycle itself wrote.
    reset()
    exchange.move(1.0)
    cycle()
    for _ in range(4):
        exchange.move(1.0)
        cycle()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE markets_marketsnapshot")
        cursor.execute(
            "SELECT count(*), pg_relation_size('markets_marketsnapshot'), "
            "pg_total_relation_size('markets_marketsnapshot') FROM markets_marketsnapshot"
        )
        count, heap, total = cursor.fetchone()
    print(f"\nStorage after {count:,} polled snapshot rows (VACUUM ANALYZE):")
    print(f"  heap only: {heap / count:.0f} bytes/row (target ≤ 170)")
    print(f"  heap + indexes + TOAST: {total / count:.0f} bytes/row")
    events, markets, runs = Event.objects.count(), Market.objects.count(), PollRun.objects.count()
    print(f"  ({events:,} events, {markets:,} markets, {runs} poll runs)")
