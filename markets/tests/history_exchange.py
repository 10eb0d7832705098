"""A stand-in for Kalshi's network edge in the history tests, serving real recordings.

It answers the endpoints the backfill, the settlement sweep and the trade tape use, the way Kalshi
does: candles whose *end* falls in [start_ts, end_ts]; archived markets (and their candles) only
under /historical; listings filtered by tickers / event / series / status filter, paged by cursor;
trades filtered by min_ts/max_ts ("after"/"before"). Candles are served exactly as recorded; a
request for a coarser period than recorded is answered by aggregating the recorded candles (volumes
summed, last closes), which is how the backfill's volume prefix is exercised on real data.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from conftest import load_kalshi_fixture

# Kalshi's status filter → the object statuses it returns.
STATUS_FILTER = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed", "determined", "disputed", "amended"},
    "settled": {"finalized"},
}


def _ts(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


@dataclass
class Recorded:
    period: int  # minutes
    candles: list[dict[str, Any]]
    historical_shape: bool = False


@dataclass
class HistoryExchange:
    cutoff: Any = field(default_factory=lambda: load_kalshi_fixture("2026-09_historical_cutoff.json"))
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # ticker -> market object
    archived: dict[str, dict[str, Any]] = field(default_factory=dict)
    candles: dict[str, Recorded] = field(default_factory=dict)
    live_trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    historical_trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 1000
    requests: list[httpx.Request] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    # (predicate, response factory) tried before normal handling; a factory returning None passes.
    faults: list[Callable[[httpx.Request], httpx.Response | None]] = field(default_factory=list)

    # -- set-up helpers ---------------------------------------------------------------------------

    def add_market(self, market: dict[str, Any], *, archived: bool = False) -> None:
        (self.archived if archived else self.live)[market["ticker"]] = market

    def add_candles(
        self, ticker: str, period: int, candles: list[dict[str, Any]], *, historical: bool = False
    ):
        self.candles[ticker] = Recorded(period, candles, historical)

    def fail(self, when: Callable[[httpx.Request], bool], status: int = 500, times: int = 1_000_000) -> None:
        left = [times]

        def fault(request: httpx.Request) -> httpx.Response | None:
            if left[0] > 0 and when(request):
                left[0] -= 1
                return httpx.Response(status, json={"error": {"code": "internal", "message": "boom"}})
            return None

        self.faults.append(fault)

    def paths(self, contains: str = "") -> list[str]:
        return [r.url.path.removeprefix("/trade-api/v2") for r in self.requests if contains in r.url.path]

    # -- the edge ---------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        for fault in self.faults:
            response = fault(request)
            if response is not None:
                return response
        path = request.url.path.removeprefix("/trade-api/v2")
        params = request.url.params
        parts = path.strip("/").split("/")
        if path == "/historical/cutoff":
            if isinstance(self.cutoff, bytes):
                return httpx.Response(200, content=self.cutoff)
            return httpx.Response(200, json=self.cutoff)
        if path == "/markets":
            return self._listing(self.live, params, live=True)
        if path == "/historical/markets":
            return self._listing(self.archived, params, live=False)
        if path == "/markets/candlesticks":
            return self._batch_candles(params)
        if path == "/markets/trades":
            return self._trades(self.live_trades, params)
        if path == "/historical/trades":
            return self._trades(self.historical_trades, params)
        if path == "/series":
            return httpx.Response(200, json={"series": self.series})
        if path == "/events":
            status = params.get("status")
            events = [e for e in self.events if not status or e.get("_status", "open") == status]
            return httpx.Response(200, json={"events": [_public(e) for e in events], "cursor": ""})
        if len(parts) == 2 and parts[0] == "events":
            event = next((e for e in self.events if e["event_ticker"] == parts[1]), None)
            if event is None:
                series = parts[1].split("-")[0]
                event = {"event_ticker": parts[1], "series_ticker": series, "title": ""}
            return httpx.Response(200, json={"event": _public(event), "markets": []})
        if len(parts) == 5 and parts[0] == "series" and parts[4] == "candlesticks":
            ticker = parts[3]
            if ticker not in self.live:
                return _not_found()
            return httpx.Response(200, json={"ticker": ticker, "candlesticks": self._candles(ticker, params)})
        if len(parts) == 4 and parts[:2] == ["historical", "markets"] and parts[3] == "candlesticks":
            ticker = parts[2]
            if ticker not in self.archived:
                return _not_found()
            return httpx.Response(200, json={"ticker": ticker, "candlesticks": self._candles(ticker, params)})
        if len(parts) == 3 and parts[:2] == ["historical", "markets"]:
            market = self.archived.get(parts[2])
            return httpx.Response(200, json={"market": market}) if market else _not_found()
        if len(parts) == 2 and parts[0] == "markets":
            market = self.live.get(parts[1])
            return httpx.Response(200, json={"market": market}) if market else _not_found()
        return _not_found()

    def _listing(
        self, markets: dict[str, dict[str, Any]], params: httpx.QueryParams, *, live: bool
    ) -> httpx.Response:
        if live and params.get("status") and params["status"] not in STATUS_FILTER:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "code": "bad_request",
                        "message": "bad request",
                        "details": "invalid status filter",
                    }
                },
            )
        rows = list(markets.values())
        if params.get("tickers"):
            wanted = params["tickers"].split(",")
            rows = [m for m in rows if m["ticker"] in wanted]
        if params.get("event_ticker"):
            rows = [m for m in rows if m["event_ticker"] == params["event_ticker"]]
        if params.get("series_ticker"):
            rows = [m for m in rows if m["event_ticker"].split("-")[0] == params["series_ticker"]]
        if params.get("status"):
            rows = [m for m in rows if m["status"] in STATUS_FILTER[params["status"]]]
        if params.get("min_close_ts"):
            rows = [m for m in rows if (_ts(m.get("close_time")) or 0) > int(params["min_close_ts"])]
        if params.get("min_settled_ts"):
            rows = [m for m in rows if (_ts(m.get("settlement_ts")) or 0) > int(params["min_settled_ts"])]
        start = int(params.get("cursor") or 0)
        limit = min(int(params.get("limit") or 100), self.page_size)
        page = rows[start : start + limit]
        cursor = str(start + limit) if start + limit < len(rows) else ""
        return httpx.Response(200, json={"markets": page, "cursor": cursor})

    def _candles(self, ticker: str, params: httpx.QueryParams) -> list[dict[str, Any]]:
        recorded = self.candles.get(ticker)
        if recorded is None:
            return []
        period = int(params["period_interval"])
        lo, hi = int(params["start_ts"]), int(params["end_ts"])
        if period == recorded.period:
            candles = recorded.candles
        elif period > recorded.period:
            candles = _aggregate(recorded, period)
        else:
            candles = []
        return [copy.deepcopy(c) for c in candles if lo <= c["end_period_ts"] <= hi]

    def _batch_candles(self, params: httpx.QueryParams) -> httpx.Response:
        tickers = params["market_tickers"].split(",")
        if len(tickers) > 100:
            return httpx.Response(400, json={"error": {"code": "bad_request", "message": "too many tickers"}})
        markets = [
            {"market_ticker": t, "candlesticks": self._candles(t, params)} for t in tickers if t in self.live
        ]
        total = sum(len(m["candlesticks"]) for m in markets)
        assert total <= 10_000, f"batch response of {total} candles: Kalshi caps it at 10,000"
        return httpx.Response(200, json={"markets": markets})

    def _trades(self, tape: dict[str, list[dict[str, Any]]], params: httpx.QueryParams) -> httpx.Response:
        rows = list(tape.get(params.get("ticker", ""), []))
        if params.get("min_ts"):
            rows = [t for t in rows if (_ts(t["created_time"]) or 0) > int(params["min_ts"])]
        if params.get("max_ts"):
            rows = [t for t in rows if (_ts(t["created_time"]) or 0) < int(params["max_ts"])]
        start = int(params.get("cursor") or 0)
        limit = min(int(params.get("limit") or 100), self.page_size)
        cursor = str(start + limit) if start + limit < len(rows) else ""
        return httpx.Response(200, json={"trades": rows[start : start + limit], "cursor": cursor})


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _not_found() -> httpx.Response:
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})


def _aggregate(recorded: Recorded, period: int) -> list[dict[str, Any]]:
    """Coarser candles from finer recorded ones, in the recorded shape (buckets end on UTC multiples)."""
    width = period * 60
    buckets: dict[int, list[dict[str, Any]]] = {}
    for candle in recorded.candles:
        end = -(-candle["end_period_ts"] // width) * width
        buckets.setdefault(end, []).append(candle)
    volume_key, oi_key = (
        ("volume", "open_interest") if recorded.historical_shape else ("volume_fp", "open_interest_fp")
    )
    suffix = "" if recorded.historical_shape else "_dollars"
    out = []
    for end, group in sorted(buckets.items()):
        last = group[-1]
        volume = sum((Decimal(str(c[volume_key])) for c in group), Decimal(0))
        traded = [c for c in group if c["price"].get(f"close{suffix}") is not None]
        price: dict[str, Any] = {}
        if traded:
            price = {
                f"close{suffix}": traded[-1]["price"][f"close{suffix}"],
                f"open{suffix}": traded[0]["price"][f"open{suffix}"],
            }
        elif recorded.historical_shape:
            price = {"close": None, "open": None}
        out.append(
            {
                "end_period_ts": end,
                "yes_bid": copy.deepcopy(last["yes_bid"]),
                "yes_ask": copy.deepcopy(last["yes_ask"]),
                "price": price,
                volume_key: f"{volume:.2f}",
                oi_key: last[oi_key],
            }
        )
    return out


def market_like(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a recorded market object with identity or lifecycle fields changed.

    Used only where Kalshi's recordings hold candles but no market object for a ticker: the object
    keeps the recorded shape, only the named fields differ.
    """
    market: dict[str, Any] = json.loads(json.dumps(template))
    for key, value in changes.items():
        if value is None:
            market.pop(key, None)
        else:
            market[key] = value
    return market
