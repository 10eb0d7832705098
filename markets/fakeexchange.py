"""A fake Kalshi exchange: Trade API v2's public market-data endpoints over real HTTP.

It is built from the real recordings in `markets/tests/fixtures/kalshi/` (markets deduplicated
across files, the Jan-2026 legacy objects rewritten into today's string shapes), optionally
padded with synthetic markets cloned from real ones, and serves them under `/trade-api/v2` the
way Kalshi does: cursor paging, Kalshi's status-filter names (an object status such as
`finalized` as a filter gets Kalshi's real HTTP 400), `mve_filter`, nested markets on events,
order books and a trade tape consistent with each market's quote, and Kalshi's error bodies.

Quotes move between requests, deterministically for a given seed: every tick moves a share of the
open markets by whole steps of their own price grid (`price_ranges`), keeping the book consistent
(yes_bid < yes_ask, no_bid = 1 - yes_ask, no_ask = 1 - yes_bid, volume never decreasing).

History is served too: `/historical/cutoff`, the archive (`/historical/markets`, its candles and
`/historical/trades`) and candlesticks of every market, live (`/series/{s}/markets/{t}/candlesticks`,
the batch `/markets/candlesticks`) or archived, cut from one deterministic path per market that
is pinned to its recording and continues into the exchange's own live moves (`markets/fakehistory.py`).
So that the recordings read as recent, every recorded time is shifted by whole days: each
recording looks as if it was made within the day before the exchange started (`RECORDED_AT`).

Faults are injected on request: a 429 rate (Kalshi's bare `{"error": "too many requests"}`, no
Retry-After), 5xx, slow responses, malformed JSON, dropped connections; or queued for the next
matching request through the control API under `/_fake/` (see `CONTROL_ROUTES`).

Routing is a table (`ROUTES`): register another endpoint with `@route("GET", r"/regex")`; named
groups become keyword arguments of the handler. Tests start it in a thread with `serve()`;
`manage.py fakeexchange` runs it in the foreground. This module does not import Django.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from .fakehistory import (
    HOUR,
    PERIODS,
    Anchor,
    Candle,
    LiveLog,
    MarketPath,
    market_key,
    merge,
    period_bounds,
    period_end_after,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/trade-api/v2"
CONTROL_PREFIX = "/_fake"
FIXTURES_DIR = Path(__file__).resolve().parent / "tests" / "fixtures" / "kalshi"

# Prices are held as integer millionths of a dollar and counts as hundredths of a contract: exact
# like Decimal, but small and fast enough for 100k markets moving every few seconds.
PRICE_SCALE = 1_000_000
COUNT_SCALE = 100
DEFAULT_GRID = ({"start": "0.0000", "end": "1.0000", "step": "0.0100"},)

# GET /markets `status=` filter names → the statuses market objects carry (API.md §4.2).
MARKET_STATUS_FILTERS: dict[str, frozenset[str]] = {
    "unopened": frozenset({"initialized"}),
    "open": frozenset({"active"}),
    "paused": frozenset({"inactive"}),
    "closed": frozenset({"closed", "determined", "disputed", "amended"}),
    "settled": frozenset({"finalized"}),
}
EVENT_STATUS_FILTERS = {k: v for k, v in MARKET_STATUS_FILTERS.items() if k != "paused"}

QUOTE_KEYS = (
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
# Integer-cent and integer-count fields Kalshi removed on 2026-03-12 (API.md §4.3).
LEGACY_MARKET_KEYS = (
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "previous_yes_bid",
    "previous_yes_ask",
    "previous_price",
    "notional_value",
    "settlement_value",
    "volume",
    "volume_24h",
    "open_interest",
    "liquidity",
    "liquidity_dollars",
    "tick_size",
    "response_price_units",
    "risk_limit_cents",
    "category",
)
SERVER_ERRORS = {
    500: ("internal_server_error", "internal server error"),
    502: ("bad_gateway", "bad gateway"),
    503: ("service_unavailable", "service unavailable"),
    504: ("gateway_timeout", "gateway timeout"),
}
FIVE_HUNDREDS = tuple(SERVER_ERRORS)
FAULT_KINDS = ("429", "500", "502", "503", "504", "5xx", "slow", "malformed", "disconnect")
# GET /markets/candlesticks: at most 100 tickers and 10,000 candles per response (batch spec).
MAX_BATCH_TICKERS = 100
MAX_BATCH_CANDLES = 10_000
# Live moves a market's candle log keeps, shared out between all markets (about 120 bytes each).
LIVE_LOG_BUDGET = 1_000_000

# When each recording was made, for the files whose wrapper does not say (legacy files carry
# `_metadata.recorded_at`, the 2026-08 ones `captured_at`). From SOURCES.md and the data itself.
RECORDED_AT = {
    # sportsdataverse fixtures: "captured 2026-10-06"
    "2026-10_markets_page.json": "2026-10-06T12:00:00Z",
    "2026-10_market_single.json": "2026-10-06T12:00:00Z",
    "2026-10_event_single_nested.json": "2026-10-06T12:00:00Z",
    "2026-10_events_page.json": "2026-10-06T12:00:00Z",
    "2026-10_trades_page.json": "2026-10-06T12:00:00Z",
    # settled at 04:52 on 2026-09-19, recorded that day
    "2026-09_market_settled_scalar_fairprice.json": "2026-09-19T12:00:00Z",
    "2026-09_trades_all_markets_page.json": "2026-09-19T12:00:00Z",
    # carries settlement_bounds_type, so recorded after the 2026-10-01 release
    "2026-09_historical_markets_page.json": "2026-10-01T12:00:00Z",
    "2026-09_historical_trades_page.json": "2026-10-01T12:00:00Z",
    # orders_updated_ts (2026-09-22) runs two weeks behind the time of the request
    "2026-09_historical_cutoff.json": "2026-10-06T00:00:00Z",
}
MARKET_TIME_KEYS = (
    "created_time",
    "updated_time",
    "open_time",
    "close_time",
    "expected_expiration_time",
    "expiration_time",
    "latest_expiration_time",
    "occurrence_datetime",
    "settlement_ts",
    "fee_waiver_expiration_time",
)
EVENT_TIME_KEYS = ("strike_date", "last_updated_ts")


# --------------------------------------------------------------------------------------------------
# Number formats
# --------------------------------------------------------------------------------------------------


def parse_price(text: str | int | float | None) -> int:
    """A dollar string ("0.4100") as integer millionths; raises ValueError on junk."""
    if text is None:
        raise ValueError("missing price")
    try:
        value = Decimal(str(text)) * PRICE_SCALE
    except InvalidOperation:
        raise ValueError(f"not a price: {text!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"price {text!r} has more than 6 decimals")
    return int(value)


def parse_count(text: str | int | float | None) -> int:
    if text is None:
        return 0
    return int((Decimal(str(text)) * COUNT_SCALE).to_integral_value())


def format_price(value: int) -> str:
    """Kalshi's dollar strings: 4 decimals ("0.4100"), 6 when a sub-cent grid needs them."""
    whole, frac = divmod(value, PRICE_SCALE)
    if frac % 100 == 0:
        return f"{whole}.{frac // 100:04d}"
    return f"{whole}.{frac:06d}"


def format_count(value: int) -> str:
    """Kalshi's fixed-point contract counts: 2 decimals ("343.49")."""
    whole, frac = divmod(value, COUNT_SCALE)
    return f"{whole}.{frac:02d}"


def _timestamp(text: str | None) -> int | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.year == 1:  # Kalshi's "0001-01-01T00:00:00Z" means unset
        return None
    return int(moment.timestamp())


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_GRID_CACHE: dict[str, tuple[int, ...]] = {}


def price_grid(price_ranges: Sequence[dict[str, Any]] | None) -> tuple[int, ...]:
    """Every tradable price of a market (strictly between $0 and $1), from its `price_ranges`."""
    ranges = price_ranges or DEFAULT_GRID
    key = json.dumps(ranges, sort_keys=True)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        points: set[int] = set()
        for r in ranges:
            start, end, step = parse_price(r["start"]), parse_price(r["end"]), parse_price(r["step"])
            if step <= 0:
                raise ValueError(f"price range {r} has a non-positive step")
            points.update(range(start, end + 1, step))
        grid = tuple(sorted(p for p in points if 0 < p < PRICE_SCALE))
        if len(grid) < 2:
            raise ValueError(f"price ranges {ranges} leave fewer than two tradable prices")
        _GRID_CACHE[key] = grid
    return grid


# --------------------------------------------------------------------------------------------------
# The exchange's objects
# --------------------------------------------------------------------------------------------------


class FakeMarket:
    """One market: its recorded metadata (shared by clones) and its moving quote."""

    __slots__ = (
        "ticker",
        "event_ticker",
        "series_ticker",
        "static",
        "grid",
        "status",
        "is_combo",
        "close_ts",
        "created_ts",
        "updated_ts",
        "settled_ts",
        "yes_bid",
        "yes_ask",
        "yes_bid_size",
        "yes_ask_size",
        "last_price",
        "volume",
        "volume_24h",
        "open_interest",
        "version",
        "open_ts",
        "recorded_ts",
        "shift_days",
        "start",
        "path",
        "log",
    )

    def __init__(
        self, data: dict[str, Any], *, series_ticker: str, recorded_ts: int = 0, shift_days: int = 0
    ) -> None:
        self.ticker: str = data["ticker"]
        self.event_ticker: str = data["event_ticker"]
        self.series_ticker = series_ticker
        self.static = {k: v for k, v in data.items() if k not in QUOTE_KEYS}
        self.grid = price_grid(data.get("price_ranges"))
        self.status: str = data.get("status", "")
        self.is_combo = bool(data.get("mve_collection_ticker"))
        self.close_ts = _timestamp(data.get("close_time"))
        self.created_ts = _timestamp(data.get("created_time"))
        self.updated_ts = _timestamp(data.get("updated_time"))
        self.settled_ts = _timestamp(data.get("settlement_ts"))
        self.yes_bid = parse_price(data.get("yes_bid_dollars") or "0")
        self.yes_ask = parse_price(data.get("yes_ask_dollars") or "1")
        if self.yes_ask <= self.yes_bid:
            # Only the legacy "0 = no ask" convention gets here; today an empty ask is $1.
            self.yes_ask = PRICE_SCALE
        self.yes_bid_size = parse_count(data.get("yes_bid_size_fp"))
        self.yes_ask_size = parse_count(data.get("yes_ask_size_fp"))
        self.last_price = parse_price(data.get("last_price_dollars") or "0")
        self.volume = parse_count(data.get("volume_fp"))
        self.volume_24h = parse_count(data.get("volume_24h_fp"))
        self.open_interest = parse_count(data.get("open_interest_fp"))
        self.version = 0
        self.open_ts = _timestamp(data.get("open_time"))
        # When its recording was made, on the exchange's (shifted) clock, and by how many days.
        self.recorded_ts = recorded_ts
        self.shift_days = shift_days
        # The quote the exchange started with (bid, ask, last, volume, volume_24h, open interest):
        # the anchor of its candle history. Set when the exchange is built.
        self.start: tuple[int, int, int, int, int, int] = (0, PRICE_SCALE, 0, 0, 0, 0)
        self.path: MarketPath | None = None
        self.log: LiveLog | None = None

    def snapshot_start(self) -> None:
        self.start = (
            self.yes_bid,
            self.yes_ask,
            self.last_price,
            self.volume,
            self.volume_24h,
            self.open_interest,
        )

    @property
    def quote(self) -> tuple[int, ...]:
        return (
            self.yes_bid,
            self.yes_ask,
            self.yes_bid_size,
            self.yes_ask_size,
            self.last_price,
            self.volume,
            self.volume_24h,
            self.open_interest,
        )

    def render(self) -> dict[str, Any]:
        """The market object as Kalshi's current API returns it."""
        data = dict(self.static)
        data["ticker"] = self.ticker
        data["event_ticker"] = self.event_ticker
        data["yes_bid_dollars"] = format_price(self.yes_bid)
        data["yes_ask_dollars"] = format_price(self.yes_ask)
        data["no_bid_dollars"] = format_price(PRICE_SCALE - self.yes_ask)
        data["no_ask_dollars"] = format_price(PRICE_SCALE - self.yes_bid)
        data["last_price_dollars"] = format_price(self.last_price)
        data["yes_bid_size_fp"] = format_count(self.yes_bid_size)
        data["yes_ask_size_fp"] = format_count(self.yes_ask_size)
        data["volume_fp"] = format_count(self.volume)
        data["volume_24h_fp"] = format_count(self.volume_24h)
        data["open_interest_fp"] = format_count(self.open_interest)
        return data

    def orderbook(self, depth: int, seed: int) -> dict[str, list[list[str]]]:
        """Resting bids consistent with the quote: best YES bid = yes_bid, best NO bid = 1 - yes_ask.

        Deeper levels step away on the market's grid with sizes fixed per (seed, quote version),
        so the same quote always shows the same book.
        """
        rng = random.Random(f"{seed}:{self.ticker}:{self.version}")
        levels = depth or 10
        yes: list[list[str]] = []
        if self.yes_bid > 0:
            below = [p for p in self.grid if p <= self.yes_bid][-levels:]
            sizes = [self.yes_bid_size] + [_random_size(rng) for _ in below[:-1]]
            yes = [[format_price(p), format_count(s)] for p, s in zip(below, reversed(sizes), strict=True)]
        no: list[list[str]] = []
        if self.yes_ask < PRICE_SCALE:
            above = [p for p in self.grid if p >= self.yes_ask][:levels]
            sizes = [self.yes_ask_size] + [_random_size(rng) for _ in above[1:]]
            # A YES ask at p is a NO bid at 1 - p; books list bids ascending, best last.
            no = [[format_price(PRICE_SCALE - p), format_count(s)] for p, s in zip(above, sizes, strict=True)]
            no.reverse()
        return {"yes_dollars": yes, "no_dollars": no}


def _random_size(rng: random.Random) -> int:
    # Log-uniform between 1 and ~30,000 contracts, in hundredths: books mix small and large orders.
    return int(10 ** rng.uniform(2, 6.5))


@dataclass
class FakeEvent:
    ticker: str
    series_ticker: str
    static: dict[str, Any]
    markets: list[FakeMarket] = field(default_factory=list)

    @property
    def is_combo(self) -> bool:
        return any(m.is_combo for m in self.markets)

    def render(self, *, nested: bool) -> dict[str, Any]:
        data = dict(self.static)
        data["event_ticker"] = self.ticker
        data["series_ticker"] = self.series_ticker
        if nested:
            data["markets"] = [m.render() for m in self.markets]
        return data


@dataclass
class FaultConfig:
    """Random faults, each drawn independently per API request from the exchange's fault RNG."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    malformed_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "slow_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative, not {self.slow_seconds}")


@dataclass(frozen=True)
class QueuedFault:
    kind: str
    path: str = ""  # applies to the next API request whose path (below /trade-api/v2) starts with this
    seconds: float | None = None  # for "slow": the delay (default: FaultConfig.slow_seconds)
    skip: int = 0  # let this many matching requests through first (skip=1: the second page)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if self.skip < 0:
            raise ValueError(f"skip must not be negative, not {self.skip}")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes = b""

    def get(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def get_list(self, name: str) -> list[str]:
        """A comma-separated parameter (Kalshi's `tickers=A,B`), repeated parameters also accepted."""
        items: list[str] = []
        for value in self.query.get(name, []):
            items.extend(v for v in value.split(",") if v)
        return items

    def get_int(
        self, name: str, default: int | None, *, low: int | None = None, high: int | None = None
    ) -> int:
        text = self.get(name)
        if text is None or text == "":
            if default is None:
                raise ApiError.bad_request(f"{name} is required")
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError.bad_request(f"invalid {name}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ApiError.bad_request(f"invalid {name}")
        return value

    def get_bool(self, name: str, default: bool = False) -> bool:
        text = self.get(name)
        if text is None or text == "":
            return default
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise ApiError.bad_request(f"invalid {name}")

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "bad_request", "bad request", f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "bad request", "body must be a JSON object")
        return data


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json; charset=utf-8"}
    )
    delay: float = 0.0
    disconnect: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        return cls(status=status, body=msgspec.json.encode(data))


class ApiError(Exception):
    """Rendered as Kalshi's error body: {"error": {"code", "message", "details"}}."""

    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(f"{status} {code}: {details or message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def bad_request(cls, details: str) -> ApiError:
        return cls(400, "bad_request", "bad request", details)

    @classmethod
    def not_found(cls) -> ApiError:
        return cls(404, "not_found", "not found")

    def reply(self) -> Reply:
        error = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return Reply.json({"error": error}, status=self.status)


# --------------------------------------------------------------------------------------------------
# Routing table
# --------------------------------------------------------------------------------------------------


# handler(exchange, request, **named_groups_of_the_path) -> Reply
Handler = Callable[..., "Reply"]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


# Matched in order, first match wins: put literal paths before patterns that would swallow them
# (/markets/trades before /markets/{ticker}).
ROUTES: list[Route] = []
CONTROL_ROUTES: list[Route] = []


def route(method: str, path: str, *, table: list[Route] | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for `method` and a path regex below /trade-api/v2 (or /_fake)."""

    def register(handler: Handler) -> Handler:
        target = ROUTES if table is None else table
        target.append(Route(method, re.compile(f"^{path}$"), handler, f"{method} {path}"))
        return handler

    return register


def _match(table: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    allowed = False
    for r in table:
        m = r.pattern.match(path)
        if m is None:
            continue
        if r.method == method:
            return r, m.groupdict()
        allowed = True
    if allowed:
        raise ApiError(405, "method_not_allowed", "method not allowed")
    return None


# --------------------------------------------------------------------------------------------------
# The exchange
# --------------------------------------------------------------------------------------------------


def _load(fixtures: Path, name: str) -> Any:
    data = json.loads((fixtures / name).read_text())
    return data["response"] if name.startswith("legacy_") else data


def recorded_at(fixtures: Path, name: str) -> int:
    """When a recording was made (Unix seconds): from its wrapper, else from `RECORDED_AT`."""
    data = json.loads((fixtures / name).read_text())
    text = None
    if isinstance(data, dict):
        text = (data.get("_metadata") or {}).get("recorded_at") or data.get("captured_at")
    text = text or RECORDED_AT.get(name)
    if text is None:
        raise ValueError(f"no recording time known for {name}; add it to RECORDED_AT")
    moment = _timestamp(text)
    assert moment is not None
    return moment


def shift_times(data: dict[str, Any], keys: Iterable[str], days: int) -> dict[str, Any]:
    """A copy with the RFC 3339 times under `keys` moved by whole days, formatted as they came.

    Only the date changes, so "2026-10-06T06:38:16.55614Z" keeps its time of day and precision;
    Kalshi's "0001-01-01T00:00:00Z" (unset) stays unset.
    """
    if not days:
        return data
    out = dict(data)
    for key in keys:
        text = out.get(key)
        if isinstance(text, str) and len(text) >= 10 and not text.startswith("0001-"):
            out[key] = (date.fromisoformat(text[:10]) + timedelta(days=days)).isoformat() + text[10:]
    return out


def _modernise_market(data: dict[str, Any]) -> dict[str, Any]:
    """A Jan-2026 hybrid market object rewritten into today's shape (dollar and fp strings)."""
    out = {k: v for k, v in data.items() if k not in LEGACY_MARKET_KEYS}
    for name in ("volume", "volume_24h", "open_interest"):
        if f"{name}_fp" not in out and isinstance(data.get(name), int):
            out[f"{name}_fp"] = format_count(data[name] * COUNT_SCALE)
    out.setdefault("yes_bid_size_fp", "0.00")
    out.setdefault("yes_ask_size_fp", "0.00")
    out.setdefault("updated_time", data.get("open_time") or data.get("created_time"))
    if data.get("yes_ask_dollars") == "0.0000":
        out["yes_ask_dollars"] = "1.0000"  # legacy "no ask"; the book below is derived from it
    return out


def _modernise_trade(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in ("count", "yes_price", "no_price", "price")}
    if "count_fp" not in out and isinstance(data.get("count"), int):
        out["count_fp"] = format_count(data["count"] * COUNT_SCALE)
    side = out.get("taker_side", "yes")
    out.setdefault("taker_outcome_side", side)
    out.setdefault("taker_book_side", "bid" if side == "yes" else "ask")
    out.setdefault("is_block_trade", False)
    return out


def _series_of(event_ticker: str) -> str:
    # Only for events no recording describes: Kalshi's event tickers start with their series'.
    return event_ticker.split("-", 1)[0]


class FakeExchange:
    """The exchange's state and request dispatch; thread-safe, no sockets (see `serve`)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        extra_markets: int = 0,
        tick_seconds: float | None = None,
        move_fraction: float = 0.2,
        faults: FaultConfig | None = None,
        fixtures_dir: Path = FIXTURES_DIR,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        shift_recordings: bool = True,
    ) -> None:
        if not 0.0 < move_fraction <= 1.0:
            raise ValueError(f"move_fraction must be in (0, 1], not {move_fraction}")
        if extra_markets < 0:
            raise ValueError("extra_markets must not be negative")
        self.seed = seed
        self.tick_seconds = tick_seconds
        self.move_fraction = move_fraction
        self.faults = faults or FaultConfig()
        self.fault_queue: deque[QueuedFault] = deque()
        self._clock = clock
        self._last_tick = clock()
        # Candle periods and trade times follow the wall clock. With `shift_recordings`, recorded
        # times move by whole days so that each recording reads as made within the last day.
        self._wall = wall_clock
        self.started_at = int(wall_clock())
        self.start_hour = self.started_at // HOUR
        self.shift_recordings = shift_recordings
        self._lock = threading.RLock()
        self._rng = random.Random(f"quotes:{seed}")
        self._fault_rng = random.Random(f"faults:{seed}")
        self._listing_cache: dict[tuple[Any, ...], list[FakeMarket]] = {}

        self.tick = 0
        self.requests: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()

        self.series: dict[str, dict[str, Any]] = {}
        self.events: dict[str, FakeEvent] = {}
        self.markets: dict[str, FakeMarket] = {}
        # Settled before the cutoff: served only under /historical, like Kalshi's archive.
        self.archived: dict[str, FakeMarket] = {}
        self.trades: deque[dict[str, Any]] = deque(maxlen=100_000)  # oldest first
        self.archived_trades: list[dict[str, Any]] = []  # oldest first
        self.exchange_status: dict[str, Any] = {}
        self.cutoff: dict[str, str] = {}
        self._load_recordings(fixtures_dir)
        if extra_markets:
            self._add_synthetic_markets(extra_markets)
        self._active = [m for m in self.markets.values() if m.status == "active"]
        for market in (*self.markets.values(), *self.archived.values()):
            market.snapshot_start()
        # Minutes of live moves each market keeps for its candles: the budget shared out (about
        # 16 hours each at 1,000 open markets, 10 minutes at 100,000).
        self._log_limit = max(10, LIVE_LOG_BUDGET // max(1, len(self._active)))

    # -- building ------------------------------------------------------------------------------

    def _days_since(self, recorded: int) -> int:
        """Whole days between a recording and the exchange's start (0 without shifting)."""
        return (self.started_at - recorded) // 86_400 if self.shift_recordings else 0

    def _load_recordings(self, fixtures: Path) -> None:
        for name in ("legacy_2026-01_series_list.json", "2026-10_series_list_page.json"):
            for s in _load(fixtures, name)["series"]:
                self.series[s["ticker"]] = s
        for name in ("legacy_2026-01_series_single.json", "2026-10_series_single.json"):
            s = _load(fixtures, name)["series"]
            self.series[s["ticker"]] = s
        for payload in _load(fixtures, "2026-08_series_fee_fields.json")["payloads"].values():
            self.series[payload["series"]["ticker"]] = payload["series"]

        recorded_events: dict[str, dict[str, Any]] = {}
        for name in ("legacy_2026-01_events_page.json", "2026-10_events_page.json"):
            for e in _load(fixtures, name)["events"]:
                recorded_events[e["event_ticker"]] = e
        legacy_event = _load(fixtures, "legacy_2026-01_event_single.json")
        recorded_events[legacy_event["event"]["event_ticker"]] = legacy_event["event"]
        nested_event = _load(fixtures, "2026-10_event_single_nested.json")["event"]
        recorded_events[nested_event["event_ticker"]] = nested_event
        nfl = _load(fixtures, "2026-08_events_nested_nfl_preseason.json")["events"]
        for e in nfl:
            recorded_events[e["event_ticker"]] = e

        at = functools.cache(functools.partial(recorded_at, fixtures))

        # Newest recordings first: where a ticker occurs twice, the current shape wins.
        market_objects: list[tuple[dict[str, Any], int]] = [
            *(
                (m, at("2026-10_markets_page.json"))
                for m in _load(fixtures, "2026-10_markets_page.json")["markets"]
            ),
            (_load(fixtures, "2026-10_market_single.json")["market"], at("2026-10_market_single.json")),
            *((m, at("2026-10_event_single_nested.json")) for m in nested_event.get("markets", [])),
            (
                _load(fixtures, "2026-08_market_single_nested_and_orderbook.json")["single"]["market"],
                at("2026-08_market_single_nested_and_orderbook.json"),
            ),
            *((m, at("2026-08_events_nested_nfl_preseason.json")) for e in nfl for m in e.get("markets", [])),
            *(
                (m, at("2026-08_markets_settled.json"))
                for m in _load(fixtures, "2026-08_markets_settled.json")["markets"]
            ),
            (
                _load(fixtures, "2026-09_market_settled_scalar_fairprice.json"),
                at("2026-09_market_settled_scalar_fairprice.json"),
            ),
            *(
                (_modernise_market(m), at(name))
                for name, objects in (
                    (
                        "legacy_2026-01_markets_page.json",
                        _load(fixtures, "legacy_2026-01_markets_page.json")["markets"],
                    ),
                    (
                        "legacy_2026-01_market_single.json",
                        [_load(fixtures, "legacy_2026-01_market_single.json")["market"]],
                    ),
                    ("legacy_2026-01_event_single.json", legacy_event["markets"]),
                )
                for m in objects
            ),
        ]
        for data, recorded in market_objects:
            if data["ticker"] not in self.markets:
                self._add_market(data, recorded_events, recorded)
        # Settled before the cutoff: Kalshi serves these only under /historical, but their events
        # and series stay listed.
        archive = "2026-09_historical_markets_page.json"
        for data in _load(fixtures, archive)["markets"]:
            days = self._days_since(at(archive))
            data = shift_times(data, MARKET_TIME_KEYS, days)
            event = self._ensure_event(data, recorded_events, days)
            self.archived[data["ticker"]] = FakeMarket(
                data,
                series_ticker=event.series_ticker,
                recorded_ts=at(archive) + days * 86_400,
                shift_days=days,
            )

        # A recorded trade moves with its market, so it stays inside the market's lifetime.
        for raw_trade in [
            *_load(fixtures, "legacy_2026-01_trades_page.json")["trades"],
            *_load(fixtures, "2026-09_trades_all_markets_page.json")["trades"],
            *_load(fixtures, "2026-10_trades_page.json")["trades"],
        ]:
            market = self.markets.get(raw_trade["ticker"])
            if market is not None:
                self.trades.append(
                    shift_times(_modernise_trade(raw_trade), ("created_time",), market.shift_days)
                )
        self.trades = deque(sorted(self.trades, key=lambda t: t["created_time"]), maxlen=self.trades.maxlen)
        for raw_trade in _load(fixtures, "2026-09_historical_trades_page.json")["trades"]:
            archived = self.archived.get(raw_trade["ticker"])
            if archived is not None:
                self.archived_trades.append(
                    shift_times(_modernise_trade(raw_trade), ("created_time",), archived.shift_days)
                )
        self.archived_trades.sort(key=lambda t: t["created_time"])
        cutoff = "2026-09_historical_cutoff.json"
        self.cutoff = shift_times(
            _load(fixtures, cutoff), _load(fixtures, cutoff), self._days_since(at(cutoff))
        )
        self.exchange_status = _load(fixtures, "2026-10_exchange_status.json")

    def _ensure_event(
        self, market: dict[str, Any], recorded: dict[str, dict[str, Any]], days: int = 0
    ) -> FakeEvent:
        ticker = market["event_ticker"]
        event = self.events.get(ticker)
        if event is not None:
            return event
        data = recorded.get(ticker)
        if data is not None:
            data = shift_times(data, EVENT_TIME_KEYS, days)
        else:
            data = {
                "event_ticker": ticker,
                "series_ticker": _series_of(ticker),
                "title": market.get("title", ticker),
                "sub_title": "",
                "category": "",
                "collateral_return_type": "",
                "mutually_exclusive": False,
                "strike_period": "",
                "exchange_index": market.get("exchange_index", 0),
                "last_updated_ts": market.get("updated_time") or market.get("created_time"),
            }
        static = {k: v for k, v in data.items() if k not in ("markets", "available_on_brokers")}
        series_ticker = data.get("series_ticker") or _series_of(ticker)
        event = self.events[ticker] = FakeEvent(ticker=ticker, series_ticker=series_ticker, static=static)
        if series_ticker not in self.series:
            self.series[series_ticker] = {
                "ticker": series_ticker,
                "title": series_ticker,
                "category": static.get("category", ""),
                "categories": [static["category"]] if static.get("category") else [],
                "tags": [],
                "frequency": "custom",
                "fee_type": "quadratic",
                "fee_multiplier": 1,
                "settlement_sources": [],
                "contract_url": "",
                "contract_terms_url": "",
                "exchange_index": static.get("exchange_index", 0),
            }
        return event

    def _add_market(
        self, data: dict[str, Any], recorded: dict[str, dict[str, Any]], recorded_ts: int
    ) -> FakeMarket:
        days = self._days_since(recorded_ts)
        data = shift_times(data, MARKET_TIME_KEYS, days)
        event = self._ensure_event(data, recorded, days)
        market = FakeMarket(
            data, series_ticker=event.series_ticker, recorded_ts=recorded_ts + days * 86_400, shift_days=days
        )
        self.markets[market.ticker] = market
        event.markets.append(market)
        return market

    def _add_synthetic_markets(self, count: int) -> None:
        """Clone open, non-combo events (with all their markets) under new tickers, new quotes."""
        rng = random.Random(f"synthetic:{self.seed}")
        templates = [
            e for e in self.events.values() if e.markets and all(m.status == "active" for m in e.markets)
        ]
        templates = [e for e in templates if not e.is_combo]
        if not templates:
            raise ValueError("the recordings have no open events to clone")
        made = 0
        n = 0
        while made < count:
            template = templates[n % len(templates)]
            n += 1
            event_ticker = f"{template.ticker}-F{n:05d}"
            event = FakeEvent(
                ticker=event_ticker,
                series_ticker=template.series_ticker,
                static={**template.static, "title": f"{template.static.get('title', '')} #{n}".strip()},
            )
            self.events[event_ticker] = event
            for source in template.markets:
                if made >= count:
                    break
                suffix = source.ticker.rsplit("-", 1)[-1]
                market = FakeMarket(
                    {**source.static, "ticker": f"{event_ticker}-{suffix}", "event_ticker": event_ticker},
                    series_ticker=source.series_ticker,
                    recorded_ts=source.recorded_ts,
                    shift_days=source.shift_days,
                )
                market.static = source.static  # shared: only the quote differs between clones
                self._randomise_quote(market, rng)
                self.markets[market.ticker] = market
                event.markets.append(market)
                made += 1

    def _randomise_quote(self, market: FakeMarket, rng: random.Random) -> None:
        grid = market.grid
        bid_index = rng.randrange(0, len(grid) - 1)
        ask_index = min(len(grid) - 1, bid_index + rng.choice((1, 1, 1, 2, 3)))
        market.yes_bid, market.yes_ask = grid[bid_index], grid[ask_index]
        market.yes_bid_size, market.yes_ask_size = _random_size(rng), _random_size(rng)
        market.last_price = rng.choice((market.yes_bid, market.yes_ask))
        market.volume = int(10 ** rng.uniform(3, 8))
        market.volume_24h = rng.randint(0, market.volume)
        market.open_interest = rng.randint(0, market.volume)

    # -- moving quotes ---------------------------------------------------------------------------

    def advance(
        self, ticks: int = 1, *, tickers: Sequence[str] | None = None, fraction: float | None = None
    ) -> list[str]:
        """Move quotes now; returns the tickers whose quote changed, in the order first moved.

        With `tickers`, exactly those markets move (each is guaranteed to change); otherwise each
        tick moves a seeded random `fraction` of the open markets.
        """
        with self._lock:
            if tickers is not None:
                unknown = [t for t in tickers if t not in self.markets]
                if unknown:
                    raise KeyError(f"unknown tickers: {', '.join(unknown)}")
            changed: dict[str, None] = {}
            for _ in range(ticks):
                for ticker in self._tick(tickers, fraction):
                    changed[ticker] = None
            return list(changed)

    def _tick(self, tickers: Sequence[str] | None, fraction: float | None) -> list[str]:
        self.tick += 1
        self._last_tick = self._clock()
        rng = self._rng
        if tickers is not None:
            chosen = [self.markets[t] for t in tickers]
        else:
            share = self.move_fraction if fraction is None else fraction
            k = min(len(self._active), max(1, round(share * len(self._active)))) if self._active else 0
            chosen = rng.sample(self._active, k)
        moved = []
        now = self._wall()
        for market in chosen:
            before = market.quote
            log = market.log if market.log is not None else self._live_log(market)
            trade = self._move(market, rng, force=tickers is not None, now=now)
            if market.quote != before:
                market.version += 1
                moved.append(market.ticker)
                log.record(
                    now,
                    bid=market.yes_bid,
                    ask=market.yes_ask,
                    volume=market.volume,
                    open_interest=market.open_interest,
                    trade=trade,
                )
        return moved

    def _live_log(self, market: FakeMarket) -> LiveLog:
        """The market's candle log, starting from the quote the exchange started with."""
        bid, ask, last, volume, _, open_interest = market.start
        market.log = LiveLog(
            bid=bid,
            ask=ask,
            volume=volume,
            open_interest=open_interest,
            last_trade=last if volume > 0 and last > 0 else None,
            limit=self._log_limit,
        )
        return market.log

    def _move(
        self, market: FakeMarket, rng: random.Random, *, force: bool, now: float
    ) -> tuple[int, int] | None:
        """Move one market's quote; returns the trade (price, count) that came with it, if any."""
        grid = market.grid
        last = len(grid) - 1
        if market.yes_bid == 0 and market.yes_ask == PRICE_SCALE:
            # An empty book: most stay empty; now and then someone starts quoting.
            if force or rng.random() < 0.3:
                self._randomise_quote(market, rng)
            return None
        bid_index = _grid_index(grid, market.yes_bid) if market.yes_bid else None
        ask_index = _grid_index(grid, market.yes_ask) if market.yes_ask < PRICE_SCALE else None
        if bid_index is None:
            bid_index = max(0, (ask_index or 1) - 1)
        if ask_index is None:
            ask_index = min(last, bid_index + 1)
        old_bid, old_ask = grid[bid_index], grid[ask_index]
        for _attempt in range(8):
            shift = rng.choice((-2, -1, -1, 1, 1, 2))
            spread = rng.choice((1, 1, 1, 2, 3))
            new_bid = min(max(bid_index + shift, 0), last - 1)
            new_ask = min(max(new_bid + spread, new_bid + 1), last)
            if (grid[new_bid], grid[new_ask]) != (old_bid, old_ask):
                break
        market.yes_bid, market.yes_ask = grid[new_bid], grid[new_ask]
        market.yes_bid_size = _random_size(rng)
        market.yes_ask_size = _random_size(rng)
        if force or rng.random() < 0.6:
            return self._trade(market, rng, bought_yes=rng.random() < 0.5, at=(old_ask, old_bid), now=now)
        return None

    def _trade(
        self, market: FakeMarket, rng: random.Random, *, bought_yes: bool, at: tuple[int, int], now: float
    ) -> tuple[int, int]:
        """A taker crossed the old spread: volume and the tape move, last_price lands on the grid."""
        price = at[0] if bought_yes else at[1]
        count = int(10 ** rng.uniform(2, 5))
        market.last_price = price
        market.volume += count
        market.volume_24h += count
        market.open_interest = max(0, market.open_interest + rng.choice((count, -count)))
        side = "yes" if bought_yes else "no"
        self.trades.append(
            {
                "trade_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "ticker": market.ticker,
                "count_fp": format_count(count),
                "yes_price_dollars": format_price(price),
                "no_price_dollars": format_price(PRICE_SCALE - price),
                "taker_side": side,
                "taker_outcome_side": side,
                "taker_book_side": "bid" if bought_yes else "ask",
                "is_block_trade": False,
                "created_time": _rfc3339(datetime.fromtimestamp(now, UTC)),
            }
        )
        return price, count

    # -- history ---------------------------------------------------------------------------------

    def _path(self, market: FakeMarket) -> MarketPath | None:
        """The market's synthetic history up to the exchange's start (or its close), built once."""
        if market.path is not None:
            return market.path
        if market.open_ts is None:
            return None
        live = market.status == "active"
        start_ts = self.start_hour * HOUR
        end_ts = start_ts if live or market.close_ts is None else min(market.close_ts, start_ts)
        if end_ts <= market.open_ts:
            return None
        bid, ask, last, volume, volume_24h, open_interest = market.start
        grid = market.grid
        n = len(grid)

        def index(price: int) -> int:  # into (no bid, *grid, no ask)
            if price <= 0:
                return 0
            if price >= PRICE_SCALE:
                return n + 1
            return _grid_index(grid, price) + 1

        def around(price: int) -> tuple[int, int]:  # a one-step book at a trade price
            i = index(price)
            return (i - 1, i) if price * 2 >= PRICE_SCALE else (i, i + 1)

        empty_book = bid == 0 and ask == PRICE_SCALE
        traded = volume > 0 and last > 0
        end_hour = -(-end_ts // HOUR)
        anchors = []
        if live and not empty_book:
            anchors.append(Anchor(end_hour, index(bid), index(ask)))
        elif traded:
            # A closed market's book ends around its last trade; so does a live one whose book
            # emptied (its candles then show the book it had).
            anchors.append(Anchor(end_hour, *around(last)))
        elif not empty_book:
            anchors.append(Anchor(end_hour, index(bid), index(ask)))
        # Kalshi reports the quote and volume "a day ago" (previous_*, volume_24h): a day before
        # the start for a live market, a day before its recording for a closed one.
        reference = end_hour * HOUR if live else market.recorded_ts
        day_before = reference - 86_400
        previous = (
            market.static.get("previous_yes_bid_dollars"),
            market.static.get("previous_yes_ask_dollars"),
        )
        if None not in previous and market.open_ts < day_before < end_ts:
            prev_bid, prev_ask = parse_price(previous[0]), parse_price(previous[1])
            # previous_yes_ask "0.0000" means no quote a day ago (see kalshi.KalshiQuote), and an
            # empty book is no anchor either.
            if prev_ask > 0 and prev_bid < prev_ask and not (prev_bid == 0 and prev_ask == PRICE_SCALE):
                anchors.append(Anchor(day_before // HOUR, index(prev_bid), index(prev_ask)))
        knots = [(market.open_ts, 0)]
        if 0 < volume_24h <= volume and market.open_ts < day_before < end_ts:
            # On the hour, like the quote a day before: the last day's candles add up to it.
            knots.append((day_before // HOUR * HOUR, volume - volume_24h))
        knots.append((end_ts, volume))
        key = market_key(self.seed, market.ticker)
        if volume > 0 and open_interest > 0:
            oi = (open_interest, volume)
        elif volume > 0 and not live:
            # Settled markets report their open interest after payout; while they traded it was
            # a share of the volume.
            oi = (3 + key % 4, 10)
        else:
            oi = (0, 1)
        market.path = MarketPath(
            key=key,
            grid=grid,
            open_ts=market.open_ts,
            end_ts=end_ts,
            anchors=anchors,
            volume_knots=knots,
            open_interest=oi,
            last_price=last if traded else None,
            empty=empty_book and not traded,
        )
        return market.path

    def candles(self, market: FakeMarket, period: int, start_ts: int, end_ts: int) -> list[Candle]:
        """The market's candles of `period` minutes whose end lies in [start_ts, end_ts].

        Only periods that have ended; from the one containing the market's open to the one
        containing its close (live markets: to now). Before the exchange started they come from
        the market's synthetic path, after it from its live moves.
        """
        if market.open_ts is None:
            return []
        now = int(self._wall())
        live = market.status == "active"
        last_end = now
        if not live and market.close_ts is not None:
            last_end = min(now, period_end_after(period, market.close_ts - 1))
        first_end = period_end_after(period, market.open_ts)
        bounds = period_bounds(period, max(first_end, start_ts), min(last_end, end_ts))
        if not bounds:
            return []
        path = self._path(market)
        start = self.start_hour * HOUR
        if not live:
            return path.candles(bounds) if path is not None else []
        before = [(s, e) for s, e in bounds if e <= start]
        out = path.candles(before) if path is not None else []
        log = market.log if market.log is not None else self._live_log(market)
        for s, e in bounds[len(before) :]:
            if s >= start or path is None:
                out.append(log.candle(max(s, start), e))
            else:
                out.append(merge(path.candles([(s, start)])[0], log.candle(start, e)))
        return out

    # -- faults ----------------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        rate_429: float | None = None,
        rate_5xx: float | None = None,
        slow_rate: float | None = None,
        slow_seconds: float | None = None,
        malformed_rate: float | None = None,
        queue: Iterable[QueuedFault] = (),
        clear: bool = False,
    ) -> None:
        """Change fault rates (None keeps a value) and queue one-off faults for coming requests."""
        with self._lock:
            current = FaultConfig() if clear else self.faults
            self.faults = FaultConfig(
                rate_429=current.rate_429 if rate_429 is None else rate_429,
                rate_5xx=current.rate_5xx if rate_5xx is None else rate_5xx,
                slow_rate=current.slow_rate if slow_rate is None else slow_rate,
                slow_seconds=current.slow_seconds if slow_seconds is None else slow_seconds,
                malformed_rate=current.malformed_rate if malformed_rate is None else malformed_rate,
            )
            if clear:
                self.fault_queue.clear()
            self.fault_queue.extend(queue)

    def _pick_faults(self, path: str) -> list[QueuedFault]:
        for i, queued in enumerate(self.fault_queue):
            if path.startswith(queued.path):
                if queued.skip:
                    self.fault_queue[i] = replace(queued, skip=queued.skip - 1)
                    break
                del self.fault_queue[i]
                return [queued]
        rng, cfg = self._fault_rng, self.faults
        picked = []
        # Each fault is drawn every time, so the sequence for a seed does not depend on the rates.
        slow, limited, failed, malformed = rng.random(), rng.random(), rng.random(), rng.random()
        if slow < cfg.slow_rate:
            picked.append(QueuedFault("slow"))
        if limited < cfg.rate_429:
            picked.append(QueuedFault("429"))
        elif failed < cfg.rate_5xx:
            picked.append(QueuedFault("5xx"))
        elif malformed < cfg.malformed_rate:
            picked.append(QueuedFault("malformed"))
        return picked

    def _apply_faults(self, faults: list[QueuedFault], handle: Callable[[], Reply]) -> Reply:
        delay = 0.0
        for fault in faults:
            self.faults_served[fault.kind] += 1
            if fault.kind == "slow":
                delay = self.faults.slow_seconds if fault.seconds is None else fault.seconds
            elif fault.kind == "429":
                # Kalshi's rate-limit reply: a bare message, no Retry-After or X-RateLimit headers.
                return Reply(status=429, body=b'{"error": "too many requests"}', delay=delay)
            elif fault.kind in ("5xx", "500", "502", "503", "504"):
                status = self._fault_rng.choice(FIVE_HUNDREDS) if fault.kind == "5xx" else int(fault.kind)
                code, message = SERVER_ERRORS[status]
                reply = ApiError(status, code, message).reply()
                reply.delay = delay
                return reply
            elif fault.kind == "disconnect":
                return Reply(disconnect=True, delay=delay)
            elif fault.kind == "malformed":
                reply = handle()
                # A body cut off mid-stream, as a dropped CDN connection leaves it.
                reply.body = reply.body[: max(1, len(reply.body) // 2)]
                reply.delay = delay
                return reply
        reply = handle()
        reply.delay = delay
        return reply

    # -- dispatch --------------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes = b"") -> Reply:
        """Answer one HTTP request (`target` is the path with its query string)."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path.rstrip("/") or "/"
        try:
            if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
                req = Request(method, path[len(CONTROL_PREFIX) :] or "/", query, body)
                found = _match(CONTROL_ROUTES, method, req.path)
                if found is None:
                    raise ApiError.not_found()
                control, params = found
                with self._lock:
                    return control.handler(self, req, **params)
            if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
                raise ApiError.not_found()
            req = Request(method, path[len(API_PREFIX) :] or "/", query, body)
            found = _match(ROUTES, method, req.path)
            if found is None:
                raise ApiError.not_found()
            api, params = found
            with self._lock:
                self.requests[api.name] += 1
                self.requests["total"] += 1
                if self.tick_seconds and self._clock() - self._last_tick >= self.tick_seconds:
                    self._tick(None, None)
                faults = self._pick_faults(req.path)

                def answer() -> Reply:
                    try:
                        return api.handler(self, req, **params)
                    except ApiError as exc:
                        return exc.reply()

                return self._apply_faults(faults, answer)
        except ApiError as exc:
            return exc.reply()

    # -- listings --------------------------------------------------------------------------------

    def listing(self, key: tuple[Any, ...], build: Callable[[], list[FakeMarket]]) -> list[FakeMarket]:
        """Filtered market lists, cached: statuses and metadata do not change while serving."""
        cached = self._listing_cache.get(key)
        if cached is None:
            if len(self._listing_cache) > 256:
                self._listing_cache.clear()
            cached = self._listing_cache[key] = build()
        return cached

    def state(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "tick": self.tick,
            "tick_seconds": self.tick_seconds,
            "started_at": _rfc3339(datetime.fromtimestamp(self.started_at, UTC)),
            "markets": len(self.markets),
            "open_markets": len(self._active),
            "archived_markets": len(self.archived),
            "events": len(self.events),
            "series": len(self.series),
            "requests": dict(self.requests),
            "faults": {
                "rate_429": self.faults.rate_429,
                "rate_5xx": self.faults.rate_5xx,
                "slow_rate": self.faults.slow_rate,
                "slow_seconds": self.faults.slow_seconds,
                "malformed_rate": self.faults.malformed_rate,
                "queued": [{"kind": f.kind, "path": f.path} for f in self.fault_queue],
                "served": dict(self.faults_served),
            },
        }


def _grid_index(grid: tuple[int, ...], price: int) -> int:
    """Index of `price` on the grid, or of the nearest grid price (recordings sit on the grid)."""
    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if grid[mid] < price:
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and abs(grid[lo - 1] - price) <= abs(grid[lo] - price):
        return lo - 1
    return lo


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"fake:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, offset = text.split(":", 1)
        if prefix != "fake" or int(offset) < 0:
            raise ValueError(text)
        return int(offset)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError.bad_request("invalid cursor") from None


def _page(
    items: Sequence[Any], req: Request, *, default_limit: int, max_limit: int
) -> tuple[Sequence[Any], str]:
    limit = req.get_int("limit", default_limit, low=1, high=max_limit)
    offset = decode_cursor(req.get("cursor"))
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return chunk, encode_cursor(offset + limit) if more else ""


# --------------------------------------------------------------------------------------------------
# Trade API v2 endpoints
# --------------------------------------------------------------------------------------------------


def _market_statuses(req: Request) -> frozenset[str] | None:
    status = req.get("status")
    if not status:
        return None
    statuses = MARKET_STATUS_FILTERS.get(status)
    if statuses is None:
        # Kalshi's exact reply to e.g. status=finalized (2026-08_markets_settled.json → queries).
        raise ApiError.bad_request("invalid status filter")
    return statuses


def _mve_filter(req: Request) -> str | None:
    value = req.get("mve_filter") or None
    if value not in (None, "only", "exclude"):
        raise ApiError.bad_request("invalid mve_filter")
    return value


@route("GET", r"/markets")
def list_markets(ex: FakeExchange, req: Request) -> Reply:
    statuses = _market_statuses(req)
    mve = _mve_filter(req)
    event_ticker = req.get("event_ticker") or None
    series_ticker = req.get("series_ticker") or None
    tickers = frozenset(req.get_list("tickers")) or None
    bounds = {
        name: req.get_int(name, -1, low=0)
        for name in (
            "min_close_ts",
            "max_close_ts",
            "min_created_ts",
            "max_created_ts",
            "min_settled_ts",
            "max_settled_ts",
            "min_updated_ts",
            "max_updated_ts",
        )
    }

    def within(value: int | None, low: int, high: int) -> bool:
        if low < 0 and high < 0:
            return True
        return value is not None and (low < 0 or value >= low) and (high < 0 or value <= high)

    def build() -> list[FakeMarket]:
        return [
            m
            for m in ex.markets.values()
            if (statuses is None or m.status in statuses)
            and (mve is None or m.is_combo == (mve == "only"))
            and (event_ticker is None or m.event_ticker == event_ticker)
            and (series_ticker is None or m.series_ticker == series_ticker)
            and (tickers is None or m.ticker in tickers)
            and within(m.close_ts, bounds["min_close_ts"], bounds["max_close_ts"])
            and within(m.created_ts, bounds["min_created_ts"], bounds["max_created_ts"])
            and within(m.settled_ts, bounds["min_settled_ts"], bounds["max_settled_ts"])
            and within(m.updated_ts, bounds["min_updated_ts"], bounds["max_updated_ts"])
        ]

    key = ("markets", statuses, mve, event_ticker, series_ticker, tickers, tuple(bounds.values()))
    chunk, cursor = _page(ex.listing(key, build), req, default_limit=100, max_limit=1000)
    return Reply.json({"cursor": cursor, "markets": [m.render() for m in chunk]})


# -- candlesticks (shapes: 2026-08_candlesticks_1m_mlb.json, 2026-09_candlesticks_hourly_live.json,
# 2026-09_historical_candlesticks_hourly.json; specs in openapi_fragments/) ---------------------------


def _ohlc(open_: int, high: int, low: int, close: int, suffix: str) -> dict[str, str]:
    return {
        f"close{suffix}": format_price(close),
        f"high{suffix}": format_price(high),
        f"low{suffix}": format_price(low),
        f"open{suffix}": format_price(open_),
    }


def live_candle(c: Candle) -> dict[str, Any]:
    """The live shape: `*_dollars`, `*_fp`; price keys omitted when nothing traded."""
    price: dict[str, str] = {}
    if c.trades:
        price = {
            "close_dollars": format_price(c.trade_close),
            "high_dollars": format_price(c.trade_high),
            "low_dollars": format_price(c.trade_low),
            "mean_dollars": format_price(c.mean),
            "open_dollars": format_price(c.trade_open),
        }
    if c.previous is not None:
        price["previous_dollars"] = format_price(c.previous)
    return {
        "end_period_ts": c.end,
        "open_interest_fp": format_count(c.open_interest),
        "price": price,
        "volume_fp": format_count(c.volume),
        "yes_ask": _ohlc(c.ask_open, c.ask_high, c.ask_low, c.ask_close, "_dollars"),
        "yes_bid": _ohlc(c.bid_open, c.bid_high, c.bid_low, c.bid_close, "_dollars"),
    }


def historical_candle(c: Candle) -> dict[str, Any]:
    """The archive's shape: dollar strings under bare names, nulls kept, `volume`/`open_interest`."""
    traded = bool(c.trades)
    return {
        "end_period_ts": c.end,
        "open_interest": format_count(c.open_interest),
        "price": {
            "close": format_price(c.trade_close) if traded else None,
            "high": format_price(c.trade_high) if traded else None,
            "low": format_price(c.trade_low) if traded else None,
            "mean": format_price(c.mean) if traded else None,
            "open": format_price(c.trade_open) if traded else None,
            "previous": None if c.previous is None else format_price(c.previous),
        },
        "volume": format_count(c.volume),
        "yes_ask": _ohlc(c.ask_open, c.ask_high, c.ask_low, c.ask_close, ""),
        "yes_bid": _ohlc(c.bid_open, c.bid_high, c.bid_low, c.bid_close, ""),
    }


def _candle_window(req: Request) -> tuple[int, int, int]:
    start = req.get_int("start_ts", None, low=0)
    end = req.get_int("end_ts", None, low=0)
    period = req.get_int("period_interval", None)
    if period not in PERIODS:
        raise ApiError.bad_request("invalid period_interval")
    if end < start:
        raise ApiError.bad_request("end_ts must not be before start_ts")
    return start, end, period


@route("GET", r"/markets/candlesticks")
def batch_candlesticks(ex: FakeExchange, req: Request) -> Reply:
    """GET /markets/candlesticks: ≤100 live markets; ≤10,000 candles in all (the rest are cut off)."""
    tickers = list(dict.fromkeys(req.get_list("market_tickers")))
    if not tickers:
        raise ApiError.bad_request("market_tickers is required")
    if len(tickers) > MAX_BATCH_TICKERS:
        raise ApiError.bad_request(f"at most {MAX_BATCH_TICKERS} market tickers")
    start, end, period = _candle_window(req)
    room = MAX_BATCH_CANDLES
    markets = []
    for ticker in tickers:
        market = ex.markets.get(ticker)
        if market is None:
            continue  # archived or unknown: not part of the live data set
        candles = ex.candles(market, period, start, end)[:room]
        room -= len(candles)
        markets.append({"market_ticker": ticker, "candlesticks": [live_candle(c) for c in candles]})
    return Reply.json({"markets": markets})


@route("GET", r"/markets/trades")
def list_trades(ex: FakeExchange, req: Request) -> Reply:
    ticker = req.get("ticker") or None
    min_ts = req.get_int("min_ts", -1, low=0)
    max_ts = req.get_int("max_ts", -1, low=0)
    block = req.get("is_block_trade")
    want_block = None if block in (None, "") else req.get_bool("is_block_trade")
    trades = []
    for t in reversed(ex.trades):  # newest first, as Kalshi lists them
        if ticker is not None and t["ticker"] != ticker:
            continue
        if want_block is not None and t.get("is_block_trade", False) != want_block:
            continue
        if min_ts >= 0 or max_ts >= 0:
            ts = _timestamp(t["created_time"]) or 0
            if (min_ts >= 0 and ts < min_ts) or (max_ts >= 0 and ts > max_ts):
                continue
        trades.append(t)
    chunk, cursor = _page(trades, req, default_limit=100, max_limit=1000)
    return Reply.json({"cursor": cursor, "trades": list(chunk)})


@route("GET", r"/markets/(?P<ticker>[^/]+)")
def get_market(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    market = ex.markets.get(ticker)
    if market is None:
        raise ApiError.not_found()
    return Reply.json({"market": market.render()})


@route("GET", r"/markets/(?P<ticker>[^/]+)/orderbook")
def get_orderbook(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    depth = req.get_int("depth", 0, low=0, high=100)
    market = ex.markets.get(ticker)
    if market is None:
        raise ApiError.not_found()
    return Reply.json({"orderbook_fp": market.orderbook(depth, ex.seed)})


def _event_matches(event: FakeEvent, statuses: frozenset[str] | None, min_close_ts: int) -> bool:
    if statuses is not None and not any(m.status in statuses for m in event.markets):
        return False
    return min_close_ts < 0 or any((m.close_ts or 0) > min_close_ts for m in event.markets)


@route("GET", r"/events")
def list_events(ex: FakeExchange, req: Request) -> Reply:
    status = req.get("status")
    statuses = None
    if status:
        statuses = EVENT_STATUS_FILTERS.get(status)
        if statuses is None:
            raise ApiError.bad_request("invalid status filter")
    series_ticker = req.get("series_ticker") or None
    tickers = frozenset(req.get_list("tickers")) or None
    nested = req.get_bool("with_nested_markets")
    min_close_ts = req.get_int("min_close_ts", -1, low=0)
    events = [
        e
        for e in ex.events.values()
        # Multivariate (combo) events are only listed by /events/multivariate.
        if not e.is_combo
        and (series_ticker is None or e.series_ticker == series_ticker)
        and (tickers is None or e.ticker in tickers)
        and _event_matches(e, statuses, min_close_ts)
    ]
    chunk, cursor = _page(events, req, default_limit=200, max_limit=200)
    return Reply.json(
        {"cursor": cursor, "events": [e.render(nested=nested) for e in chunk], "milestones": []}
    )


@route("GET", r"/events/(?P<ticker>[^/]+)")
def get_event(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    event = ex.events.get(ticker)
    if event is None:
        raise ApiError.not_found()
    nested = req.get_bool("with_nested_markets")
    # With nested markets the deprecated top-level list is empty (2026-10_event_single_nested.json).
    markets = [] if nested else [m.render() for m in event.markets]
    return Reply.json({"event": event.render(nested=nested), "markets": markets})


def _series_body(ex: FakeExchange, data: dict[str, Any], include_volume: bool) -> dict[str, Any]:
    if not include_volume:
        return data
    volume = sum(m.volume for m in ex.markets.values() if m.series_ticker == data["ticker"])
    return {**data, "volume_fp": format_count(volume)}


@route("GET", r"/series")
def list_series(ex: FakeExchange, req: Request) -> Reply:
    category = req.get("category") or None
    tags = set(req.get_list("tags"))
    include_volume = req.get_bool("include_volume")
    found = [
        _series_body(ex, s, include_volume)
        for s in ex.series.values()
        if (category is None or category == s.get("category") or category in (s.get("categories") or []))
        and (not tags or tags & set(s.get("tags") or []))
    ]
    return Reply.json({"series": found})


@route("GET", r"/series/(?P<ticker>[^/]+)")
def get_series(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    data = ex.series.get(ticker)
    if data is None:
        raise ApiError.not_found()
    return Reply.json({"series": _series_body(ex, data, req.get_bool("include_volume"))})


@route("GET", r"/exchange/status")
def exchange_status(ex: FakeExchange, req: Request) -> Reply:
    return Reply.json(ex.exchange_status)


@route("GET", r"/series/(?P<series>[^/]+)/markets/(?P<ticker>[^/]+)/candlesticks")
def market_candlesticks(ex: FakeExchange, req: Request, series: str, ticker: str) -> Reply:
    market = ex.markets.get(ticker)
    if market is None or market.series_ticker != series:
        raise ApiError.not_found()
    start, end, period = _candle_window(req)
    candles = ex.candles(market, period, start, end)
    return Reply.json({"candlesticks": [live_candle(c) for c in candles], "ticker": ticker})


# -- the archive: markets settled before the cutoff ------------------------------------------------


@route("GET", r"/historical/cutoff")
def historical_cutoff(ex: FakeExchange, req: Request) -> Reply:
    return Reply.json(ex.cutoff)


@route("GET", r"/historical/markets")
def historical_markets(ex: FakeExchange, req: Request) -> Reply:
    tickers = frozenset(req.get_list("tickers")) or None
    event_ticker = req.get("event_ticker") or None
    series_ticker = req.get("series_ticker") or None
    mve = req.get("mve_filter") or None
    if mve not in (None, "exclude"):
        raise ApiError.bad_request("invalid mve_filter")
    found = [
        m
        for m in ex.archived.values()
        if (tickers is None or m.ticker in tickers)
        and (event_ticker is None or m.event_ticker == event_ticker)
        and (series_ticker is None or m.series_ticker == series_ticker)
        and (mve is None or not m.is_combo)
    ]
    chunk, cursor = _page(found, req, default_limit=100, max_limit=1000)
    return Reply.json({"cursor": cursor, "markets": [m.render() for m in chunk]})


@route("GET", r"/historical/markets/(?P<ticker>[^/]+)")
def historical_market(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    market = ex.archived.get(ticker)
    if market is None:
        raise ApiError.not_found()
    return Reply.json({"market": market.render()})


@route("GET", r"/historical/markets/(?P<ticker>[^/]+)/candlesticks")
def historical_candlesticks(ex: FakeExchange, req: Request, ticker: str) -> Reply:
    market = ex.archived.get(ticker)
    if market is None:
        raise ApiError.not_found()
    start, end, period = _candle_window(req)
    candles = ex.candles(market, period, start, end)
    return Reply.json({"candlesticks": [historical_candle(c) for c in candles], "ticker": ticker})


@route("GET", r"/historical/trades")
def historical_trades(ex: FakeExchange, req: Request) -> Reply:
    ticker = req.get("ticker") or None
    min_ts = req.get_int("min_ts", -1, low=0)
    max_ts = req.get_int("max_ts", -1, low=0)
    block = req.get("is_block_trade")
    want_block = None if block in (None, "") else req.get_bool("is_block_trade")
    trades = []
    for t in reversed(ex.archived_trades):  # newest first
        if ticker is not None and t["ticker"] != ticker:
            continue
        if want_block is not None and t.get("is_block_trade", False) != want_block:
            continue
        ts = _timestamp(t["created_time"]) or 0
        if (min_ts >= 0 and ts < min_ts) or (max_ts >= 0 and ts > max_ts):
            continue
        trades.append(t)
    chunk, cursor = _page(trades, req, default_limit=100, max_limit=1000)
    return Reply.json({"cursor": cursor, "trades": list(chunk)})


# --------------------------------------------------------------------------------------------------
# Control API (not part of Kalshi's): lets a test move quotes or inject a fault at an exact moment
# --------------------------------------------------------------------------------------------------


@route("GET", r"/state", table=CONTROL_ROUTES)
def control_state(ex: FakeExchange, req: Request) -> Reply:
    """GET /_fake/state[?ticker=T]: tick, counts, requests per route, faults (and one market)."""
    body = ex.state()
    ticker = req.get("ticker")
    if ticker:
        market = ex.markets.get(ticker)
        if market is None:
            raise ApiError(404, "not_found", "not found", f"no market {ticker}")
        body["market"] = market.render()
    return Reply.json(body)


@route("POST", r"/advance", table=CONTROL_ROUTES)
def control_advance(ex: FakeExchange, req: Request) -> Reply:
    """POST /_fake/advance {"ticks": 1, "tickers": [...], "fraction": 0.2} → {"tick", "moved"}."""
    body = req.json()
    ticks, tickers, fraction = body.get("ticks", 1), body.get("tickers"), body.get("fraction")
    if not isinstance(ticks, int) or not 1 <= ticks <= 1000:
        raise ApiError.bad_request("ticks must be a whole number from 1 to 1000")
    if tickers is not None and not (isinstance(tickers, list) and all(isinstance(t, str) for t in tickers)):
        raise ApiError.bad_request("tickers must be a list of market tickers")
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ApiError.bad_request("fraction must be a number in (0, 1]")
    try:
        moved = ex.advance(ticks, tickers=tickers, fraction=fraction)
    except KeyError as exc:
        raise ApiError(404, "not_found", "not found", str(exc.args[0])) from None
    return Reply.json({"tick": ex.tick, "moved": moved})


@route("POST", r"/faults", table=CONTROL_ROUTES)
def control_faults(ex: FakeExchange, req: Request) -> Reply:
    """POST /_fake/faults: set rates and/or queue faults for the next matching requests.

    Body (every key optional): {"rate_429": 0.2, "rate_5xx": 0.1, "slow_rate": 0, "slow_seconds": 2,
    "malformed_rate": 0, "next": ["429", {"kind": "503", "path": "/markets", "skip": 1}],
    "clear": false}. A queued fault hits the next API request whose path starts with "path", after
    letting "skip" of them through; queued faults come before the random ones.
    """
    body = req.json()
    unknown = set(body) - {
        "rate_429",
        "rate_5xx",
        "slow_rate",
        "slow_seconds",
        "malformed_rate",
        "next",
        "clear",
    }
    if unknown:
        raise ApiError.bad_request(f"unknown keys: {', '.join(sorted(unknown))}")
    queue = []
    try:
        for item in body.get("next") or []:
            if isinstance(item, str):
                queue.append(QueuedFault(item))
            elif isinstance(item, dict):
                queue.append(
                    QueuedFault(
                        str(item.get("kind")),
                        str(item.get("path", "")),
                        item.get("seconds"),
                        int(item.get("skip", 0)),
                    )
                )
            else:
                raise ValueError(f"not a fault: {item!r}")
        ex.set_faults(
            rate_429=body.get("rate_429"),
            rate_5xx=body.get("rate_5xx"),
            slow_rate=body.get("slow_rate"),
            slow_seconds=body.get("slow_seconds"),
            malformed_rate=body.get("malformed_rate"),
            queue=queue,
            clear=bool(body.get("clear")),
        )
    except (TypeError, ValueError) as exc:
        raise ApiError.bad_request(str(exc)) from None
    return Reply.json(ex.state()["faults"])


# --------------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Clients keep connections alive; closing the server must not wait for them to hang up.
    block_on_close = False

    def __init__(self, address: tuple[str, int], exchange: FakeExchange) -> None:
        self.exchange = exchange
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection frees its thread after this long
    # Headers and body go out in two writes; with Nagle on, each keep-alive request then waits
    # ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        started = time.monotonic()
        reply = self.server.exchange.handle(method, self.path, body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.disconnect:
            self.close_connection = True
            logger.info("%s %s → connection dropped (injected)", method, self.path)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        logger.debug("%s %s → %d in %.3fs", method, self.path, reply.status, time.monotonic() - started)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        # Requests are logged by _dispatch; this only sees protocol errors.
        logger.debug("%s: " + format, self.address_string(), *args)


def make_server(exchange: FakeExchange, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A bound, not yet serving, HTTP server for `exchange` (port 0 picks a free port)."""
    return _Server((host, port), exchange)


@dataclass(frozen=True)
class RunningExchange:
    """A fake exchange serving in a background thread (see `serve`)."""

    exchange: FakeExchange
    host: str
    port: int

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What KALSHI_API_BASE should be set to."""
        return f"{self.root_url}{API_PREFIX}"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}{CONTROL_PREFIX}"


@contextmanager
def serve(
    exchange: FakeExchange | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[RunningExchange]:
    """Serve a fake exchange over HTTP in a daemon thread; stops when the block exits.

        with serve(seed=1) as fake:
            client = KalshiClient(base_url=fake.base_url)

    `options` go to FakeExchange when no `exchange` is given.
    """
    exchange = exchange or FakeExchange(**options)
    server = make_server(exchange, host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield RunningExchange(exchange, host, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
