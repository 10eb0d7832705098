"""The embedded setup's first poll cycle: SQLite, the web reading while the poller writes.

    ./dev bench sqlite_ingest [--markets=30000]

`./dev run` keeps everything in one SQLite file (WAL). Its first cycle stores every open market
(60-95k on Kalshi). Reported, on a fresh file in a temporary directory (BENCH_DATABASE_URL is not
used):

* the cold first cycle and a cycle where every quote changed: wall time and markets/s;
* snapshot writing alone: `write_snapshots` (one executemany) against Django's `bulk_create` of the
  same rows, and with `ignore_conflicts` as backfills write them;
* what a reader in another connection (the web process) sees meanwhile: latency of a count of the
  markets table while the cycle runs against the same query afterwards. The reader is a thread of
  this process, so its figures include waiting for the GIL: an upper bound for a separate web.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._db import best_of, timed
from .ingest import PAGE_SIZE, SyntheticExchange


def _reader(db: Path, stop: threading.Event, latencies: list[float]) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute("SELECT count(*) FROM markets_market").fetchone()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    finally:
        conn.close()


def _describe(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (
        f"median {statistics.median(ms):6.1f} ms, p95 {ms[int(len(ms) * 0.95)]:6.1f} ms, "
        f"max {ms[-1]:6.1f} ms ({len(ms)} reads)"
    )


def main(argv: list[str]) -> None:
    n = 30_000
    for arg in argv:
        if arg.startswith("--markets="):
            n = int(arg.split("=", 1)[1])
    workdir = Path(tempfile.mkdtemp(prefix="ki-bench-sqlite-"))
    db = workdir / "db.sqlite3"
    os.environ.update(
        DATABASE_URL=f"sqlite:///{db}",
        KALSHI_INSIGHTS_VAR_DIR=str(workdir),
        CELERY_BROKER_URL="filesystem://",
        REDIS_URL="",
        DJANGO_SETTINGS_MODULE="kalshi_insights.settings",
    )
    import django

    django.setup()
    import httpx
    from django.core.management import call_command
    from django.db import transaction

    from markets import ingest
    from markets.kalshi import KalshiClient
    from markets.models import Market, MarketSnapshot, SnapshotSource

    call_command("migrate", verbosity=0)
    print(f"SQLite file {db}; building {n:,} synthetic markets ...", flush=True)
    exchange = SyntheticExchange(n)
    client = KalshiClient(
        base_url="https://kalshi.bench/trade-api/v2", transport=httpx.MockTransport(exchange.handler)
    )

    busy: list[float] = []
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(db, stop, busy))
    reader.start()
    with timed() as cold:
        first = ingest.run_poll_cycle(client=client, trigger="bench", reference_budget=0)
    stop.set()
    reader.join()
    # The same read on the same table with nobody writing.
    idle: list[float] = []
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(db, stop, idle))
    reader.start()
    time.sleep(3)
    stop.set()
    reader.join()
    exchange.move(1.0)
    with timed() as changed:
        second = ingest.run_poll_cycle(client=client, trigger="bench", reference_budget=0)

    print(f"\nPoll cycles over {n:,} markets ({-(-n // PAGE_SIZE)} pages) on SQLite:")
    for label, t, run in (("cold: all markets new", cold, first), ("every quote changed", changed, second)):
        rate = run.markets_seen / t.wall
        print(
            f"  {label:<24} {t.wall:6.2f} s wall, {t.cpu:6.2f} s CPU, {rate:8,.0f} markets/s, "
            f"{run.snapshots_written:,} snapshots"
        )
    print("\nA reader in another connection (the web process), counting the markets table:")
    print(f"  {'during the first cycle':<28} {_describe(busy)}")
    print(f"  {'afterwards, nobody writing':<28} {_describe(idle)}")

    ids = list(Market.objects.order_by("id").values_list("id", flat=True)[:n])
    keys = (
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
    quotes = [tuple(exchange.markets[i][k] for k in keys) for i in range(len(ids))]
    minutes = iter(range(1, 1_000_000))

    def rows() -> list[ingest.SnapshotRow]:
        at = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=next(minutes))
        return [
            ingest.SnapshotRow(market_id=mid, captured_at=at, source=SnapshotSource.BACKFILL, quote=q)
            for mid, q in zip(ids, quotes, strict=True)
        ]

    def ours(ignore_conflicts: bool) -> None:
        batch = rows()
        with transaction.atomic():
            ingest.write_snapshots(batch, ignore_conflicts=ignore_conflicts)
            transaction.set_rollback(True)

    def baseline(ignore_conflicts: bool) -> None:
        batch = rows()
        objs: list[Any] = [
            MarketSnapshot(
                market_id=r.market_id,
                captured_at=r.captured_at,
                source=r.source,
                **dict(zip(ingest.SNAPSHOT_COLUMNS[3:], (Decimal(str(v)) for v in r.quote), strict=True)),
            )
            for r in batch
        ]
        with transaction.atomic():
            MarketSnapshot.objects.bulk_create(objs, batch_size=500, ignore_conflicts=ignore_conflicts)
            transaction.set_rollback(True)

    print(f"\nWriting {len(ids):,} snapshot rows (best of 3, rolled back):")
    for label, flag in (("plain inserts", False), ("ignore_conflicts", True)):
        fast = best_of(3, lambda flag=flag: ours(flag))  # type: ignore[misc]
        slow = best_of(3, lambda flag=flag: baseline(flag))  # type: ignore[misc]
        print(
            f"  {label:<17} write_snapshots {len(ids) / fast.wall:9,.0f} rows/s   "
            f"bulk_create {len(ids) / slow.wall:9,.0f} rows/s   ratio {slow.wall / fast.wall:4.1f}x"
        )
