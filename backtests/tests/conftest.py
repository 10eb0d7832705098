"""Real Kalshi recordings ingested through the project's own client and ingest functions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from markets import ingest
from markets.demo import book_snapshots
from markets.models import Event, Market, Series, SnapshotSource

SETTLED = "2026-08_markets_settled.json"
WS_STREAM = "2026-08_ws_orderbook_stream.json"
CANDLES = "2026-08_candlesticks_1m_mlb.json"
SERIES_FEES = "2026-08_series_fee_fields.json"


def _handler(kalshi_fixture):
    settled = kalshi_fixture(SETTLED)["markets"]
    fees = kalshi_fixture(SERIES_FEES)["payloads"]

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/markets"):
            return httpx.Response(200, json={"markets": settled, "cursor": ""})
        ticker = path.rsplit("/", 1)[-1]
        if "/series/" in path and ticker in fees:
            return httpx.Response(200, json=fees[ticker])
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})

    return handle


@pytest.fixture
def recorded(kalshi_client, kalshi_fixture):
    """The settled August 2026 markets (with outcomes and series fee fields) plus real quotes:

    * for four of the settled games, the top of book from the recorded WebSocket orderbook stream;
    * for three other (unsettled here) games, the recorded 1-minute bid/ask candles as backfill rows.
    """
    client = kalshi_client(_handler(kalshi_fixture))
    page = client.get_markets_page(status="settled")
    markets = page.full_markets()
    ids = ingest.record_markets([(m, page.raw[m.ticker]) for m in markets])
    for series_ticker in ("KXMLBGAME", "KXWNBAGAME"):
        series = ingest.apply_series(client.get_series(series_ticker))
        # The recordings hold no event objects for these games; link events to their series
        # the way sync_reference_data would after reading /events.
        Event.objects.filter(ticker__startswith=f"{series_ticker}-").update(series=series)

    stream = kalshi_fixture(WS_STREAM)
    written = ingest.write_snapshots(book_snapshots(stream, ids))

    candles = kalshi_fixture(CANDLES)["markets"]
    series = Series.objects.get(ticker="KXMLBGAME")
    rows = []
    candle_ids = {}
    for ticker, body in candles.items():
        event, _ = Event.objects.get_or_create(ticker=ticker.rsplit("-", 1)[0], defaults={"series": series})
        market = Market.objects.create(ticker=ticker, event=event, status="active")
        candle_ids[ticker] = market.pk
        # A candle's volume is per period; snapshots hold the running total, as polled rows do
        # (counted from the first recorded candle).
        traded = Decimal(0)
        for c in body["candlesticks"]:
            traded += Decimal(c["volume_fp"])
            bid = Decimal(c["yes_bid"]["close_dollars"])
            ask = Decimal(c["yes_ask"]["close_dollars"])
            last = c["price"].get("close_dollars")
            rows.append(
                ingest.SnapshotRow(
                    market_id=market.pk,
                    captured_at=datetime.fromtimestamp(c["end_period_ts"], tz=UTC),
                    source=SnapshotSource.BACKFILL,
                    quote=(
                        bid,
                        ask,
                        1 - ask,
                        1 - bid,
                        Decimal(last) if last else None,
                        None,
                        None,
                        traded,
                        None,
                        Decimal(c["open_interest_fp"]),
                    ),
                )
            )
    written += ingest.write_snapshots(rows)
    return {"markets": ids, "candle_markets": candle_ids, "snapshots": written}


@pytest.fixture
def start_celery_worker():
    """Start a real Celery worker (a subprocess) on the test broker and the test database.

    Call it inside a `transaction=True` test so the worker, another process, sees committed rows.
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import redis
    from django.conf import settings
    from django.db import connection

    procs: list[subprocess.Popen[bytes]] = []
    # Leftover messages from an earlier, interrupted run must not reach this test's worker; tasks
    # this test sends before starting the worker must.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("default")

    def start() -> subprocess.Popen[bytes]:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": (
                f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
            ),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "REDIS_URL": settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "kalshi_insights.settings",
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kalshi_insights",
                "worker",
                "-Q",
                "default",
                "-P",
                "solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(
                f"the Celery worker exited at start: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate, *, timeout=60.0, interval=0.2, what="condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
