"""A small research dataset built from the real Kalshi recordings bundled with the tests.

The notebooks fall back to it when the configured database has no markets, so they always have
something real to show. Every value comes from a recorded Kalshi response in
`markets/tests/fixtures/kalshi/` (see SOURCES.md there), read through the project's own client
(over an in-process transport that serves the recordings) and stored with the ingest functions:

* 44 MLB/WNBA/NFL/NCAAF game markets as Kalshi listed them after the games (42 settled, 21 YES and
  21 NO; 2 closed awaiting a result), with the fee fields of their series;
* a market settled at a fair price (`result="scalar"`, 0.38) and 3 archived KXU3 markets from
  `/historical/markets`, one with its archived hourly candles stored as backfill snapshots;
* 2 live NFL markets with their quotes (and Kalshi's day-ago quotes) and 3 of their events;
* the top of book after every frame of a recorded WebSocket order-book stream (4 of the settled
  games, about 20 hours before they closed), as `websocket` snapshots;
* 3 more games known only from their recorded 1-minute candles, stored as backfill snapshots on
  markets that carry only a ticker and an event (their status is taken as open, as at recording).

Recorded candles carry per-period volume; the stored, cumulative `volume` counts from the first
recorded candle (what traded before it is not in the recording), so differences between snapshots
are exact and absolute levels are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from django.db import transaction

from . import ingest
from .backfill import snapshot_quote
from .kalshi import KalshiClient
from .models import Event, Market, MarketSnapshot, MarketStatus, Series, SnapshotSource

FIXTURES = Path(__file__).parent / "tests" / "fixtures" / "kalshi"
BASE_URL = "https://recordings.invalid/trade-api/v2"

SETTLED = "2026-08_markets_settled.json"
SERIES_FEES = "2026-08_series_fee_fields.json"
SCALAR = "2026-09_market_settled_scalar_fairprice.json"
HISTORICAL_MARKETS = "2026-09_historical_markets_page.json"
HISTORICAL_CANDLES = "2026-09_historical_candlesticks_hourly.json"
LIVE_MARKETS = "2026-10_markets_page.json"
LIVE_EVENTS = "2026-10_events_page.json"
NFL_SERIES = "2026-10_series_single.json"
WS_STREAM = "2026-08_ws_orderbook_stream.json"
MINUTE_CANDLES = "2026-08_candlesticks_1m_mlb.json"


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoData:
    markets: int
    settled: int
    snapshots: int

    def __str__(self) -> str:
        return f"{self.markets} markets ({self.settled} settled) and {self.snapshots:,} snapshots"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class _Recordings:
    """Answers the client's requests with the recorded response bodies; anything else is a 404."""

    def __init__(self) -> None:
        self.fees = _fixture(SERIES_FEES)["payloads"]
        self.minute = _fixture(MINUTE_CANDLES)["markets"]
        self.historical_candles = _fixture(HISTORICAL_CANDLES)
        self.scalar = _fixture(SCALAR)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/trade-api/v2")
        params = request.url.params
        body: Any = None
        if path == "/markets":
            body = _fixture(SETTLED if params.get("status") == "settled" else LIVE_MARKETS)
            body = {"markets": body["markets"], "cursor": ""}
        elif path == "/events":
            body = _fixture(LIVE_EVENTS)
        elif path == f"/markets/{self.scalar['ticker']}":
            body = {"market": self.scalar}
        elif path == "/historical/markets":
            body = _fixture(HISTORICAL_MARKETS)
        elif path == f"/historical/markets/{self.historical_candles['ticker']}/candlesticks":
            body = self.historical_candles
        elif path.startswith("/series/") and path.endswith("/candlesticks"):
            ticker = path.split("/")[4]
            if ticker in self.minute:
                body = {"ticker": ticker, "candlesticks": self.minute[ticker]["candlesticks"]}
        elif path.startswith("/series/"):
            ticker = path.removeprefix("/series/")
            body = self.fees.get(ticker) or (_fixture(NFL_SERIES) if ticker == "KXNFLGAME" else None)
        if body is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "not recorded"}})
        return httpx.Response(200, json=body)


def client() -> KalshiClient:
    """A KalshiClient whose only server is the recordings (no network)."""
    return KalshiClient(base_url=BASE_URL, transport=httpx.MockTransport(_Recordings()), sleep=lambda s: None)


def load_demo() -> DemoData:
    """Store the demo dataset in the current database, which must not hold any market yet."""
    if Market.objects.exists():
        raise DemoError(
            "The database already holds markets; the demo dataset only goes into an empty one, "
            "so it is never mistaken for collected data."
        )
    with client() as kalshi, transaction.atomic():
        settled = kalshi.get_markets_page(status="settled", mve_filter=None)
        markets = [(m, settled.raw[m.ticker]) for m in settled.full_markets()]
        scalar, scalar_raw = kalshi.get_market_raw(_fixture(SCALAR)["ticker"])
        markets.append((scalar, scalar_raw))
        archived = kalshi.get_historical_markets_page()
        markets += [(m, archived.raw[m.ticker]) for m in archived.full_markets()]
        live = kalshi.get_markets_page(status="open")
        markets += [(m, live.raw[m.ticker]) for m in live.full_markets()]
        for event in kalshi.get_events_page().events:
            ingest.apply_event(event)
        ids = ingest.record_markets(markets)
        for ticker in ("KXMLBGAME", "KXWNBAGAME", "KXNFLGAME"):
            ingest.apply_series(kalshi.get_series(ticker))
        _link_events_to_series()

        rows = book_snapshots(_fixture(WS_STREAM), ids)
        rows += _candle_snapshots(kalshi, ids)
        ingest.write_snapshots(rows)
    return DemoData(
        markets=Market.objects.count(),
        settled=Market.objects.settled().count(),
        snapshots=MarketSnapshot.objects.count(),
    )


def _link_events_to_series() -> None:
    """Kalshi names events `<SERIES>-<...>`; the recordings hold no event objects for most of them."""
    for event in Event.objects.filter(series__isnull=True):
        series_ticker = event.ticker.split("-", 1)[0]
        event.series, _ = Series.objects.get_or_create(ticker=series_ticker)
        event.save(update_fields=["series"])


def book_snapshots(stream: Any, ids: dict[str, int]) -> list[ingest.SnapshotRow]:
    """The top of book after every order-book frame of a recorded WebSocket stream."""
    books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    rows: dict[tuple[int, datetime], ingest.SnapshotRow] = {}
    for item in stream["frames"]:
        frame = item["frame"]
        msg = frame.get("msg") or {}
        ticker = msg.get("market_ticker")
        if ticker not in ids:
            continue
        if frame["type"] == "orderbook_snapshot":
            books[ticker] = {
                side: {Decimal(p): Decimal(c) for p, c in msg.get(f"{side}_dollars_fp") or []}
                for side in ("yes", "no")
            }
        elif frame["type"] == "orderbook_delta" and ticker in books:
            levels = books[ticker][msg["side"]]
            price = Decimal(msg["price_dollars"])
            levels[price] = levels.get(price, Decimal(0)) + Decimal(msg["delta_fp"])
            if levels[price] <= 0:
                del levels[price]
        else:
            continue
        yes, no = books[ticker]["yes"], books[ticker]["no"]
        best_yes, best_no = (max(yes) if yes else None), (max(no) if no else None)
        # A YES ask is the best NO bid seen from the other side: 1 − best NO bid.
        quote = (
            best_yes if best_yes is not None else Decimal(0),
            1 - best_no if best_no is not None else Decimal(1),
            best_no if best_no is not None else Decimal(0),
            1 - best_yes if best_yes is not None else Decimal(1),
            None,
            yes[best_yes] if best_yes is not None else Decimal(0),
            no[best_no] if best_no is not None else Decimal(0),
            None,
            None,
            None,
        )
        at = datetime.fromtimestamp(item["received_ms"] / 1000, tz=UTC)
        # Frames within one millisecond: the book after the last of them is the quote.
        rows[(ids[ticker], at)] = ingest.SnapshotRow(ids[ticker], at, SnapshotSource.WEBSOCKET, quote)
    return list(rows.values())


def _span(candles: list[dict[str, Any]]) -> tuple[int, int]:
    ends = [c["end_period_ts"] for c in candles]
    return min(ends), max(ends)


def _candle_snapshots(kalshi: KalshiClient, ids: dict[str, int]) -> list[ingest.SnapshotRow]:
    archived = _fixture(HISTORICAL_CANDLES)
    start, end = _span(archived["candlesticks"])
    candles = [
        (
            ids[archived["ticker"]],
            kalshi.get_historical_market_candlesticks(
                archived["ticker"], start_ts=start, end_ts=end, period_interval=60
            ),
        )
    ]
    for ticker, recorded in _fixture(MINUTE_CANDLES)["markets"].items():
        event_ticker = ticker.rsplit("-", 1)[0]
        event, _ = Event.objects.get_or_create(
            ticker=event_ticker, defaults={"series": Series.objects.get(ticker=event_ticker.split("-", 1)[0])}
        )
        market = Market.objects.create(ticker=ticker, event=event, status=MarketStatus.ACTIVE)
        start, end = _span(recorded["candlesticks"])
        found = kalshi.get_market_candlesticks(
            "KXMLBGAME", ticker, start_ts=start, end_ts=end, period_interval=1
        )
        candles.append((market.pk, found))
    rows: list[ingest.SnapshotRow] = []
    for market_id, found in candles:
        volume = Decimal(0)
        for candle in found.candles:
            if candle.volume is not None:
                volume += candle.volume
            rows.append(
                ingest.SnapshotRow(
                    market_id, candle.end, SnapshotSource.BACKFILL, snapshot_quote(candle, volume)
                )
            )
    return rows
