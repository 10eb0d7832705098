"""A small, typed client for Kalshi's public market-data API (Trade API v2).

Responses are parsed at the edge into msgspec Structs: prices are `Decimal` dollars read from the
`*_dollars` strings, counts `Decimal` contracts from the `*_fp` strings. The integer-cent fields
Kalshi removed on 2026-03-12 are still understood when a payload (an old recording) has no dollar
fields. Unknown fields are ignored; optional ones may be missing.

Every request goes through one throttle (a token bucket, shared through Redis when configured) and
is retried with exponential backoff and jitter on 429, 5xx, timeouts and connection failures. Any
failure that survives the retries is raised as one `KalshiError` naming the request and the cause.

This module imports Django only inside `KalshiClient.from_settings()`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
import msgspec

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://external-api.kalshi.com/trade-api/v2"
USER_AGENT = "kalshi-insights/0.1 (+https://github.com/kalshi-insights)"

# `status=` filter values accepted by GET /markets. Market objects carry different names
# (active, finalized, ...); sending an object status as a filter is an HTTP 400.
MARKET_STATUS_FILTERS = ("unopened", "open", "paused", "closed", "settled")
EVENT_STATUS_FILTERS = ("unopened", "open", "closed", "settled")
CANDLE_PERIODS = (1, 60, 1440)
# GET /markets/candlesticks: at most 100 tickers and 10,000 candles per response.
MAX_BATCH_CANDLE_TICKERS = 100
MAX_BATCH_CANDLES = 10_000

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
# Kalshi writes "0001-01-01T00:00:00Z" for times that are not set.
_UNSET_YEAR = 1


class KalshiError(Exception):
    """A request to Kalshi failed for good: after retries, or with a response we cannot use."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "GET",
        url: str = "",
        status_code: int | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status_code = status_code
        self.attempts = attempts


class MalformedPayload(ValueError):
    """A single object in a response did not match Kalshi's schema."""


class _Garbled(Exception):
    """A successful response whose JSON is cut short or garbled on the way: worth another try."""


T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Parsed shapes
# --------------------------------------------------------------------------------------------------


def _unset_to_none(value: datetime | None) -> datetime | None:
    if value is None or value.year == _UNSET_YEAR:
        return None
    return value


def _cents(value: int | None) -> Decimal | None:
    return None if value is None else Decimal(value) / HUNDRED


# Two conventions for "nothing there" need care (evidence: the recordings in markets/tests/fixtures):
#
# * A missing YES ask. Today's API writes yes_ask "1.0000" (nothing to buy below $1) and derives
#   no_bid = 1 - yes_ask = "0.0000" (e.g. every settled market in 2026-08_markets_settled.json).
#   The Jan-2026 payloads that still carry the integer-cent fields wrote yes_ask 0 instead, with
#   no_bid 100 derived from it, in both the cents and the `*_dollars` fields (all five combo
#   markets in legacy_2026-01_markets_page.json: yes_bid 0, yes_ask 0, no_bid 100, no_ask 100).
#   A YES ask of $0 would be a free contract, so in that shape it can only mean "no ask": it is
#   read as today's 1.0000, and its no_bid of 1.0000 as 0.0000. The missing YES bid needs nothing:
#   both shapes write yes_bid 0 and no_ask 1.
# * previous_yes_ask "0.0000" ("the ask a day ago") does not mean "no ask" either: where there was
#   no ask a day ago today's API writes "1.0000" (the 12 markets in 2026-08_markets_settled.json
#   that had settled a day before their recording: previous_yes_bid "0.0000", previous_yes_ask
#   "1.0000"). "0.0000" occurs only together with previous_yes_bid and previous_price "0.0000": on
#   a market created four hours before its recording, so there was no quote a day ago
#   (2026-09_market_settled_scalar_fairprice.json), and on every Jan-2026 market, including
#   KXELONMARS-99, which had traded 35,001 contracts and was quoted 0.06/0.07 at the time. It
#   therefore means "no quote known a day ago" and is read as unknown (None), not as a $0 ask.
#   A previous_yes_bid or previous_price of 0 reads correctly as "no bid" / "no trade".


def _normalise_missing_quotes(
    yes_ask: Decimal | None, no_bid: Decimal | None, previous_yes_ask: Decimal | None, *, legacy: bool
) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """Today's conventions for a missing ask (see above); `legacy`: the integer-cent shape."""
    if legacy and yes_ask == ZERO:
        yes_ask = ONE
        if no_bid == ONE:
            no_bid = ZERO
    if previous_yes_ask == ZERO:
        previous_yes_ask = None
    return yes_ask, no_bid, previous_yes_ask


# msgspec reads "NaN" and "Infinity" as Decimals; they are malformed for every Kalshi field, and
# a NaN would make the comparisons below raise instead of reporting the object.
def _check_price(name: str, value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and ZERO <= value <= ONE):
        raise ValueError(f"{name}={value} is outside [0, 1] dollars")


def _check_count(name: str, value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and value >= ZERO):
        raise ValueError(f"{name}={value} is not a finite, non-negative count")


class PriceRange(msgspec.Struct, frozen=True, gc=False):
    start: Decimal
    end: Decimal
    step: Decimal


class KalshiMarket(msgspec.Struct, kw_only=True, gc=False):
    """One market as GET /markets returns it (current shape, or Jan-2026 hybrid with cents)."""

    ticker: str
    event_ticker: str
    market_type: str = "binary"
    title: str = ""
    subtitle: str = ""
    yes_sub_title: str = ""
    no_sub_title: str = ""
    status: str = ""
    result: str = ""
    can_close_early: bool = False
    early_close_condition: str = ""
    settlement_timer_seconds: int | None = None
    expiration_value: str = ""
    strike_type: str = ""
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    functional_strike: str | None = None
    custom_strike: dict[str, Any] | None = None
    rules_primary: str = ""
    rules_secondary: str = ""
    price_level_structure: str = ""
    price_ranges: list[PriceRange] = msgspec.field(default_factory=list)
    exchange_index: int = 0
    mve_collection_ticker: str | None = None

    created_time: datetime | None = None
    updated_time: datetime | None = None
    open_time: datetime | None = None
    close_time: datetime | None = None
    expected_expiration_time: datetime | None = None
    expiration_time: datetime | None = None
    latest_expiration_time: datetime | None = None
    occurrence_datetime: datetime | None = None
    settlement_ts: datetime | None = None

    yes_bid: Decimal | None = msgspec.field(default=None, name="yes_bid_dollars")
    yes_ask: Decimal | None = msgspec.field(default=None, name="yes_ask_dollars")
    no_bid: Decimal | None = msgspec.field(default=None, name="no_bid_dollars")
    no_ask: Decimal | None = msgspec.field(default=None, name="no_ask_dollars")
    last_price: Decimal | None = msgspec.field(default=None, name="last_price_dollars")
    previous_yes_bid: Decimal | None = msgspec.field(default=None, name="previous_yes_bid_dollars")
    previous_yes_ask: Decimal | None = msgspec.field(default=None, name="previous_yes_ask_dollars")
    previous_price: Decimal | None = msgspec.field(default=None, name="previous_price_dollars")
    notional_value: Decimal | None = msgspec.field(default=None, name="notional_value_dollars")
    settlement_value: Decimal | None = msgspec.field(default=None, name="settlement_value_dollars")
    yes_bid_size: Decimal | None = msgspec.field(default=None, name="yes_bid_size_fp")
    yes_ask_size: Decimal | None = msgspec.field(default=None, name="yes_ask_size_fp")
    volume: Decimal | None = msgspec.field(default=None, name="volume_fp")
    volume_24h: Decimal | None = msgspec.field(default=None, name="volume_24h_fp")
    open_interest: Decimal | None = msgspec.field(default=None, name="open_interest_fp")

    # Integer fields of the pre-March-2026 shape, read only when the dollar/fp field is absent.
    legacy_yes_bid: int | None = msgspec.field(default=None, name="yes_bid")
    legacy_yes_ask: int | None = msgspec.field(default=None, name="yes_ask")
    legacy_no_bid: int | None = msgspec.field(default=None, name="no_bid")
    legacy_no_ask: int | None = msgspec.field(default=None, name="no_ask")
    legacy_last_price: int | None = msgspec.field(default=None, name="last_price")
    legacy_previous_yes_bid: int | None = msgspec.field(default=None, name="previous_yes_bid")
    legacy_previous_yes_ask: int | None = msgspec.field(default=None, name="previous_yes_ask")
    legacy_previous_price: int | None = msgspec.field(default=None, name="previous_price")
    legacy_notional_value: int | None = msgspec.field(default=None, name="notional_value")
    legacy_settlement_value: int | None = msgspec.field(default=None, name="settlement_value")
    legacy_volume: int | None = msgspec.field(default=None, name="volume")
    legacy_volume_24h: int | None = msgspec.field(default=None, name="volume_24h")
    legacy_open_interest: int | None = msgspec.field(default=None, name="open_interest")

    PRICE_NAMES: ClassVar[tuple[str, ...]] = (
        "yes_bid",
        "yes_ask",
        "no_bid",
        "no_ask",
        "last_price",
        "previous_yes_bid",
        "previous_yes_ask",
        "previous_price",
        "settlement_value",
    )
    COUNT_NAMES: ClassVar[tuple[str, ...]] = (
        "yes_bid_size",
        "yes_ask_size",
        "volume",
        "volume_24h",
        "open_interest",
    )

    def __post_init__(self) -> None:
        for name in self.PRICE_NAMES:
            if getattr(self, name) is None:
                setattr(self, name, _cents(getattr(self, f"legacy_{name}")))
        if self.notional_value is None:
            self.notional_value = _cents(self.legacy_notional_value)
        for name in ("volume", "volume_24h", "open_interest"):
            if getattr(self, name) is None:
                legacy = getattr(self, f"legacy_{name}")
                setattr(self, name, None if legacy is None else Decimal(legacy))
        self.yes_ask, self.no_bid, self.previous_yes_ask = _normalise_missing_quotes(
            self.yes_ask, self.no_bid, self.previous_yes_ask, legacy=self.legacy_yes_ask is not None
        )
        for name in self.PRICE_NAMES:
            _check_price(name, getattr(self, name))
        for name in self.COUNT_NAMES:
            _check_count(name, getattr(self, name))
        for name in ("floor_strike", "cap_strike", "notional_value"):
            value = getattr(self, name)
            if value is not None and not value.is_finite():
                raise ValueError(f"{name}={value} is not a finite number")
        for name in (
            "created_time",
            "updated_time",
            "open_time",
            "close_time",
            "expected_expiration_time",
            "expiration_time",
            "latest_expiration_time",
            "occurrence_datetime",
            "settlement_ts",
        ):
            setattr(self, name, _unset_to_none(getattr(self, name)))
        if not self.ticker:
            raise ValueError("ticker is empty")
        if not self.event_ticker:
            raise ValueError("event_ticker is empty")

    @property
    def quote(self) -> tuple[Decimal | None, ...]:
        """The fields a snapshot records, in MarketSnapshot's column order."""
        return (
            self.yes_bid,
            self.yes_ask,
            self.no_bid,
            self.no_ask,
            self.last_price,
            self.yes_bid_size,
            self.yes_ask_size,
            self.volume,
            self.volume_24h,
            self.open_interest,
        )


class SettlementSource(msgspec.Struct):
    name: str = ""
    url: str = ""


class KalshiEvent(msgspec.Struct, kw_only=True):
    event_ticker: str
    series_ticker: str = ""
    title: str = ""
    sub_title: str = ""
    category: str = ""
    mutually_exclusive: bool = False
    collateral_return_type: str = ""
    strike_date: datetime | None = None
    strike_period: str = ""
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None
    exchange_index: int = 0
    last_updated_ts: datetime | None = None
    markets: list[KalshiMarket] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.strike_date = _unset_to_none(self.strike_date)
        self.last_updated_ts = _unset_to_none(self.last_updated_ts)
        override = self.fee_multiplier_override
        if override is not None and not (override.is_finite() and override >= ZERO):
            raise ValueError(f"fee_multiplier_override={override} is not a finite, non-negative number")


class KalshiSeries(msgspec.Struct, kw_only=True):
    ticker: str
    title: str = ""
    category: str = ""
    categories: list[str] = msgspec.field(default_factory=list)
    tags: list[str] | None = None
    frequency: str = ""
    fee_type: str = ""
    fee_multiplier: Decimal = ONE
    contract_url: str = ""
    contract_terms_url: str = ""
    settlement_sources: list[SettlementSource] | None = None
    exchange_index: int = 0
    last_updated_ts: datetime | None = None
    volume: Decimal | None = msgspec.field(default=None, name="volume_fp")

    def __post_init__(self) -> None:
        self.last_updated_ts = _unset_to_none(self.last_updated_ts)
        if not (self.fee_multiplier.is_finite() and self.fee_multiplier >= ZERO):
            raise ValueError(f"fee_multiplier={self.fee_multiplier} is not a finite, non-negative number")


class OrderbookLevel(msgspec.Struct, array_like=True, frozen=True):
    price: Decimal
    count: Decimal


class Orderbook(msgspec.Struct, kw_only=True):
    """Resting bids on each side, ascending by price: the best bid is the *last* level."""

    ticker: str = ""
    yes: list[OrderbookLevel] = msgspec.field(default_factory=list)
    no: list[OrderbookLevel] = msgspec.field(default_factory=list)

    @property
    def best_yes_bid(self) -> Decimal | None:
        return self.yes[-1].price if self.yes else None

    @property
    def best_no_bid(self) -> Decimal | None:
        return self.no[-1].price if self.no else None

    @property
    def best_yes_ask(self) -> Decimal | None:
        """A YES ask is a NO bid seen from the other side: 1 - best NO bid."""
        return None if not self.no else ONE - self.no[-1].price


class KalshiTrade(msgspec.Struct, kw_only=True):
    trade_id: str
    ticker: str
    created_time: datetime
    yes_price: Decimal | None = msgspec.field(default=None, name="yes_price_dollars")
    no_price: Decimal | None = msgspec.field(default=None, name="no_price_dollars")
    count: Decimal | None = msgspec.field(default=None, name="count_fp")
    taker_side: str = ""
    taker_outcome_side: str = ""
    taker_book_side: str = ""
    is_block_trade: bool = False
    legacy_yes_price: int | None = msgspec.field(default=None, name="yes_price")
    legacy_no_price: int | None = msgspec.field(default=None, name="no_price")
    legacy_count: int | None = msgspec.field(default=None, name="count")

    def __post_init__(self) -> None:
        if self.yes_price is None:
            self.yes_price = _cents(self.legacy_yes_price)
        if self.no_price is None:
            self.no_price = _cents(self.legacy_no_price)
        if self.count is None and self.legacy_count is not None:
            self.count = Decimal(self.legacy_count)
        _check_price("yes_price", self.yes_price)
        _check_price("no_price", self.no_price)
        _check_count("count", self.count)


class ExchangeIndexStatus(msgspec.Struct, kw_only=True):
    exchange_index: int
    description: str = ""
    exchange_active: bool = False
    trading_active: bool = False


class ExchangeStatus(msgspec.Struct, kw_only=True):
    exchange_active: bool
    trading_active: bool
    exchange_estimated_resume_time: datetime | None = None
    exchange_index_statuses: list[ExchangeIndexStatus] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SkippedObject:
    """An object in a page that did not parse; the rest of the page is still usable."""

    ticker: str
    reason: str


_QUOTE_STRING_FIELDS = (
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
    "previous_yes_bid_dollars",
    "previous_yes_ask_dollars",
    "previous_price_dollars",
)
# The same values in the pre-March-2026 integer shape (cents for prices, whole contracts).
_QUOTE_LEGACY_FIELDS = (
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    None,
    None,
    "volume",
    "volume_24h",
    "open_interest",
    "previous_yes_bid",
    "previous_yes_ask",
    "previous_price",
)
_QUOTE_IS_PRICE = (True, True, True, True, True, False, False, False, False, False, True, True, True)


# An empty 8-byte blake2b state that each digest copies: `copy()` + `update()` costs 60 % of
# constructing `blake2b(data, digest_size=8)`, whose parameter block is rebuilt on every call, and
# the poller takes two digests per listed market per cycle. (Only ever copied, never updated.)
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
# Big-endian signed 64-bit, as int.from_bytes(..., "big", signed=True); two at once for digests().
_unpack_int64 = struct.Struct(">q").unpack
_unpack_two_int64 = struct.Struct(">qq").unpack


def _digest_bytes(data: bytes) -> bytes:
    h = _BLAKE2B_8.copy()
    h.update(data)
    return h.digest()


def _digest(text: str) -> int:
    # blake2b rather than hash(): str hashes are salted per process, and these digests are stored.
    return int(_unpack_int64(_digest_bytes(text.encode()))[0])


# The 13 quote strings joined by \x1f, when each is written plainly: prices 0 to 1 and counts as
# ASCII digits with an optional fraction (no sign, exponent, spaces or NaN). Such a string is exactly
# what Decimal reads it as, and in range, so it needs no Decimal at all; anything else takes the full
# check in `KalshiQuote._parse`.
# (Written as flat alternatives, the common shape first: the same strings as `0(\.[0-9]+)?|1(\.0+)?`
# and `[0-9]+(\.[0-9]+)?`, matched in two thirds of the time; nested optional groups cost more.)
_PLAIN_PRICE = r"(?:0\.[0-9]+|0|1\.0+|1)"
_PLAIN_COUNT = r"(?:[0-9]+\.[0-9]+|[0-9]+)"
_PLAIN_QUOTE = re.compile("\x1f".join([_PLAIN_PRICE] * 5 + [_PLAIN_COUNT] * 5 + [_PLAIN_PRICE] * 3))


def _plain_zero(text: str) -> bool:
    """Whether a plainly written value (see _PLAIN_QUOTE) is zero."""
    return not text.strip("0.")


class KalshiQuote(msgspec.Struct, kw_only=True, gc=False):
    """The part of a market object the poller reads on every cycle: identity, state and quote.

    (`gc=False`: these hold only strings and ints, so they cannot form reference cycles, and
    100k of them per cycle would otherwise keep triggering the cyclic garbage collector.)

    At ~100k markets every 15 s, most of which did not change, the quote is kept as Kalshi's exact
    strings and digested as text; `values()` turns it into validated Decimals only for the markets
    that changed. The full object (`KalshiMarket`) is parsed only for new or changed markets.
    """

    ticker: str
    event_ticker: str
    status: str = ""
    result: str = ""
    updated_time: str | None = None
    yes_bid_dollars: str | None = None
    yes_ask_dollars: str | None = None
    no_bid_dollars: str | None = None
    no_ask_dollars: str | None = None
    last_price_dollars: str | None = None
    yes_bid_size_fp: str | None = None
    yes_ask_size_fp: str | None = None
    volume_fp: str | None = None
    volume_24h_fp: str | None = None
    open_interest_fp: str | None = None
    previous_yes_bid_dollars: str | None = None
    previous_yes_ask_dollars: str | None = None
    previous_price_dollars: str | None = None
    yes_bid: int | None = None
    yes_ask: int | None = None
    no_bid: int | None = None
    no_ask: int | None = None
    last_price: int | None = None
    volume: int | None = None
    volume_24h: int | None = None
    open_interest: int | None = None
    previous_yes_bid: int | None = None
    previous_yes_ask: int | None = None
    previous_price: int | None = None

    def __post_init__(self) -> None:
        if not self.ticker or not self.event_ticker:
            raise ValueError("ticker and event_ticker must not be empty")

    def _texts(self) -> tuple[str | None, ...]:
        return (
            self.yes_bid_dollars,
            self.yes_ask_dollars,
            self.no_bid_dollars,
            self.no_ask_dollars,
            self.last_price_dollars,
            self.yes_bid_size_fp,
            self.yes_ask_size_fp,
            self.volume_fp,
            self.volume_24h_fp,
            self.open_interest_fp,
            self.previous_yes_bid_dollars,
            self.previous_yes_ask_dollars,
            self.previous_price_dollars,
        )

    def quote_digest(self) -> int:
        """A stable 64-bit digest of every quote value, as sent."""
        texts = self._texts()
        if None not in texts:
            return _digest("\x1f".join(texts))  # type: ignore[arg-type]
        # Some value missing: the integer fields of the old shape may stand in for it.
        legacy = [getattr(self, name) if name else None for name in _QUOTE_LEGACY_FIELDS]
        return _digest("\x1f".join([t or "" for t in texts]) + repr(legacy))

    def state_digest(self) -> int:
        """A stable digest of what says the market's metadata may have changed."""
        return _digest(f"{self.updated_time}\x1f{self.status}\x1f{self.result}")

    def digests(self) -> tuple[int, int]:
        """`(quote_digest(), state_digest())` in one call.

        The poller computes both for every listed market on every cycle, where the Python calls
        around the two blake2b hashes cost as much as the hashing: this is the same arithmetic
        inlined for the usual shape (every quote string present).
        """
        texts = self._texts()
        if None in texts:
            return self.quote_digest(), self.state_digest()
        quote = _BLAKE2B_8.copy()
        quote.update("\x1f".join(texts).encode())  # type: ignore[arg-type]
        state = _BLAKE2B_8.copy()
        state.update(f"{self.updated_time}\x1f{self.status}\x1f{self.result}".encode())
        # Both 8-byte digests as signed integers in one unpack.
        return _unpack_two_int64(quote.digest() + state.digest())

    def values(self) -> tuple[Decimal | None, ...]:
        """The 13 quote values as validated Decimals, in `QUOTE_VALUE_NAMES` order.

        Missing asks follow today's conventions (see `_normalise_missing_quotes`). Raises
        MalformedPayload if a value is not a finite decimal or is out of range.
        """
        return self._parse()[0]

    def checked_texts(self) -> tuple[str | None, ...]:
        """The 13 quote values as exact decimal strings, validated like `values()`.

        Kalshi's own strings when they need no change, so a writer can pass them on unformatted.
        """
        texts = self._texts()
        if (
            None not in texts
            and _PLAIN_QUOTE.fullmatch("\x1f".join(texts))  # type: ignore[arg-type]
            # Neither of the zeros `_parse` normalises (previous_yes_ask, a legacy yes_ask).
            and not _plain_zero(texts[11])  # type: ignore[arg-type]
            and not (self.yes_ask is not None and _plain_zero(texts[1]))  # type: ignore[arg-type]
        ):
            # Most changed markets on every cycle: valid as written, no Decimal needed.
            return texts
        values, normalised = self._parse()
        if None not in texts and not normalised:
            return texts
        return tuple(None if v is None else str(v) for v in values)

    def _parse(self) -> tuple[tuple[Decimal | None, ...], bool]:
        texts = self._texts()
        try:
            values: tuple[Decimal | None, ...]
            if None not in texts:  # the current shape: every field present
                present = tuple(map(Decimal, texts))  # type: ignore[arg-type]
                # One comparison per bound for all 13 values; NaN makes them raise, and an
                # infinity is out of range, except a count's +Infinity: the largest count must
                # also be finite (PostgreSQL's numeric(20, 2) would refuse the whole page).
                in_range = (
                    min(present) >= ZERO
                    and max(present[:5] + present[10:]) <= ONE
                    and max(present[5:10]).is_finite()
                )
                values = present
            else:
                values = tuple(self._value(i, text) for i, text in enumerate(texts))
                in_range = False
            if not in_range:
                for i, value in enumerate(values):
                    if value is not None and (
                        value < ZERO or (_QUOTE_IS_PRICE[i] and value > ONE) or not value.is_finite()
                    ):
                        raise MalformedPayload(f"{_QUOTE_STRING_FIELDS[i]}={value} is out of range")
        except ArithmeticError:
            bad = next((t for t in texts if t is not None and not _is_finite_decimal(t)), "?")
            raise MalformedPayload(f"{bad!r} is not a finite decimal") from None
        legacy = self.yes_ask is not None  # the integer-cent shape
        if values[11] == ZERO or (legacy and values[1] == ZERO):
            yes_ask, no_bid, previous_yes_ask = _normalise_missing_quotes(
                values[1], values[2], values[11], legacy=legacy
            )
            values = (values[0], yes_ask, no_bid, *values[3:11], previous_yes_ask, values[12])
            return values, True
        return values, False

    def _value(self, i: int, text: str | None) -> Decimal | None:
        if text is not None:
            return Decimal(text)
        legacy = _QUOTE_LEGACY_FIELDS[i]
        raw = getattr(self, legacy) if legacy else None
        if raw is None:
            return None
        return Decimal(raw) / HUNDRED if _QUOTE_IS_PRICE[i] else Decimal(raw)


def _is_finite_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


# Names of KalshiQuote.values(), as Market/MarketSnapshot field names; the first 10 are a snapshot.
QUOTE_VALUE_NAMES = (
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "yes_bid_size",
    "yes_ask_size",
    "volume",
    "volume_24h",
    "open_interest",
    "previous_yes_bid",
    "previous_yes_ask",
    "previous_price",
)


@dataclass(slots=True)
class MarketsPage:
    """One page of markets: quotes parsed for all, full objects parsed on demand."""

    quotes: list[KalshiQuote]
    skipped: list[SkippedObject]
    cursor: str | None
    received_at: datetime
    # The response body, when every market in it decoded as a quote: `raw` is cut from it on demand.
    body: bytes | None = None
    raw_by_ticker: dict[str, bytes] | None = None

    @property
    def raw(self) -> dict[str, bytes]:
        """Each market's JSON exactly as received, keyed by ticker."""
        if self.raw_by_ticker is None:
            objects = _LIST_PAGE.decode(self.body or b"{}").markets or []
            # The body decoded as quotes, one per object in order, so they pair up.
            self.raw_by_ticker = {q.ticker: bytes(data) for q, data in zip(self.quotes, objects, strict=True)}
        return self.raw_by_ticker

    def market(self, ticker: str) -> KalshiMarket:
        """The full market object; raises MalformedPayload if its metadata does not parse."""
        return parse_market(self.raw[ticker])

    def full_markets(self) -> list[KalshiMarket]:
        """Every market on the page fully parsed; malformed ones are added to `skipped`."""
        parsed = []
        for quote in self.quotes:
            try:
                parsed.append(self.market(quote.ticker))
            except MalformedPayload as exc:
                logger.warning("Skipping malformed market %s: %s", quote.ticker, exc)
                self.skipped.append(SkippedObject(ticker=quote.ticker, reason=str(exc)))
        return parsed


@dataclass(slots=True)
class EventsPage:
    events: list[KalshiEvent]
    skipped: list[SkippedObject]
    cursor: str | None


@dataclass(slots=True)
class TradesPage:
    trades: list[KalshiTrade]
    skipped: list[SkippedObject]
    cursor: str | None


class _ListPage(msgspec.Struct):
    cursor: str | None = None
    markets: list[msgspec.Raw] | None = None
    events: list[msgspec.Raw] | None = None
    trades: list[msgspec.Raw] | None = None


class _QuotesPage(msgspec.Struct):
    cursor: str | None = None
    markets: list[KalshiQuote] | None = None


_LIST_PAGE = msgspec.json.Decoder(_ListPage)
_QUOTES_PAGE = msgspec.json.Decoder(_QuotesPage)


class _MarketEnvelope(msgspec.Struct):
    market: KalshiMarket


class _EventEnvelope(msgspec.Struct):
    event: KalshiEvent
    # Deprecated top-level list; `[]` when markets are nested in the event.
    markets: list[KalshiMarket] = msgspec.field(default_factory=list)


class _SeriesEnvelope(msgspec.Struct):
    series: KalshiSeries


class _SeriesListEnvelope(msgspec.Struct):
    series: list[msgspec.Raw] | None = None


class _OrderbookSides(msgspec.Struct):
    yes_dollars: list[OrderbookLevel] | None = None
    no_dollars: list[OrderbookLevel] | None = None


class _LegacyOrderbookSides(msgspec.Struct):
    yes: list[tuple[int, int]] | None = None
    no: list[tuple[int, int]] | None = None
    yes_dollars: list[tuple[str, int]] | None = None
    no_dollars: list[tuple[str, int]] | None = None


class _OrderbookEnvelope(msgspec.Struct):
    orderbook_fp: _OrderbookSides | None = None
    orderbook: _LegacyOrderbookSides | None = None


_TICKER_RE = re.compile(rb'"ticker"\s*:\s*"([^"]{1,200})"')


def _guess_ticker(raw: bytes, key: bytes = b"ticker") -> str:
    """Best-effort ticker of an object that failed to parse, for the log line."""
    pattern = _TICKER_RE if key == b"ticker" else re.compile(rb'"' + key + rb'"\s*:\s*"([^"]{1,200})"')
    match = pattern.search(raw)
    return match.group(1).decode("utf-8", "replace") if match else "<unknown>"


def parse_market(raw: bytes) -> KalshiMarket:
    """Parse one market object; raises MalformedPayload with the reason."""
    try:
        return msgspec.json.decode(raw, type=KalshiMarket)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MalformedPayload(str(exc)) from None


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _parse_each(
    raws: Sequence[msgspec.Raw] | None, type_: type[Any], key: bytes = b"ticker"
) -> tuple[list[Any], list[tuple[msgspec.Raw, Any]], list[SkippedObject]]:
    """Decode each object of a list on its own, so one malformed object costs only itself."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    parsed: list[Any] = []
    pairs: list[tuple[msgspec.Raw, Any]] = []
    skipped: list[SkippedObject] = []
    for raw in raws or ():
        try:
            obj = decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            ticker = _guess_ticker(bytes(raw), key)
            logger.warning("Skipping malformed %s %s: %s", type_.__name__, ticker, exc)
            skipped.append(SkippedObject(ticker=ticker, reason=str(exc)))
            continue
        parsed.append(obj)
        pairs.append((raw, obj))
    return parsed, pairs, skipped


# --------------------------------------------------------------------------------------------------
# Candlesticks and the historical archive
#
# Kalshi serves three candle shapes and the endpoint decides which one comes back:
# * live, current (`/series/{s}/markets/{t}/candlesticks`, `/markets/candlesticks`): dollar strings
#   under `*_dollars`, counts under `volume_fp` / `open_interest_fp`; `price` keys are *omitted*
#   when nothing traded (`"price": {}`, or only `previous_dollars`);
# * live, Jan-2026 legacy: the same plus integer cents under the bare names (`close: 8` next to
#   `close_dollars: "0.0800"`) and integer `volume` / `open_interest`;
# * historical (`/historical/markets/{t}/candlesticks`): dollar strings under the *bare* names
#   (`close: "0.0100"`), nulls kept, counts under `volume` / `open_interest`.
# Each is decoded by its own wire Struct and normalised into one `KalshiCandle`.
# --------------------------------------------------------------------------------------------------


class CandleOHLC(msgspec.Struct, frozen=True, kw_only=True):
    """Open/high/low/close of the best YES bid or ask over one period, in dollars."""

    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None


class CandleTrades(msgspec.Struct, frozen=True, kw_only=True):
    """Traded YES prices over one period; all None when nothing traded in it."""

    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    mean: Decimal | None = None
    # The last trade *before* the period: Kalshi's own carry-forward, not a trade in this period.
    previous: Decimal | None = None


class KalshiCandle(msgspec.Struct, frozen=True, kw_only=True):
    """One candlestick, whichever of Kalshi's three shapes it arrived in."""

    end: datetime  # the inclusive end of the period (`end_period_ts`), UTC
    yes_bid: CandleOHLC
    yes_ask: CandleOHLC
    price: CandleTrades
    volume: Decimal | None  # contracts traded *during* the period (not cumulative)
    open_interest: Decimal | None  # contracts outstanding at `end`

    @property
    def end_ts(self) -> int:
        return int(self.end.timestamp())

    @property
    def traded(self) -> bool:
        return self.price.close is not None


def _check_candle(candle: KalshiCandle) -> KalshiCandle:
    for side, ohlc in (("yes_bid", candle.yes_bid), ("yes_ask", candle.yes_ask)):
        for name in ("open", "high", "low", "close"):
            _check_price(f"{side}.{name}", getattr(ohlc, name))
    for name in ("open", "high", "low", "close", "mean", "previous"):
        _check_price(f"price.{name}", getattr(candle.price, name))
    _check_count("volume", candle.volume)
    _check_count("open_interest", candle.open_interest)
    return candle


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _dollars_or_cents(dollars: Decimal | None, cents: int | None) -> Decimal | None:
    return dollars if dollars is not None else _cents(cents)


class _LiveBidAsk(msgspec.Struct, kw_only=True):
    open_dollars: Decimal | None = None
    high_dollars: Decimal | None = None
    low_dollars: Decimal | None = None
    close_dollars: Decimal | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None

    def ohlc(self, *, ask: bool) -> CandleOHLC:
        values = [
            _dollars_or_cents(self.open_dollars, self.open),
            _dollars_or_cents(self.high_dollars, self.high),
            _dollars_or_cents(self.low_dollars, self.low),
            _dollars_or_cents(self.close_dollars, self.close),
        ]
        if ask and self.close is not None:
            # Cents-era payloads wrote a missing YES ask as 0; today's API writes 1.0000 (nothing to
            # buy below $1). Normalise so backfilled rows read like polled ones.
            values = [ONE if v == ZERO else v for v in values]
        return CandleOHLC(open=values[0], high=values[1], low=values[2], close=values[3])


class _LivePrice(msgspec.Struct, kw_only=True):
    open_dollars: Decimal | None = None
    high_dollars: Decimal | None = None
    low_dollars: Decimal | None = None
    close_dollars: Decimal | None = None
    mean_dollars: Decimal | None = None
    previous_dollars: Decimal | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    mean: int | None = None
    previous: int | None = None

    def trades(self) -> CandleTrades:
        return CandleTrades(
            open=_dollars_or_cents(self.open_dollars, self.open),
            high=_dollars_or_cents(self.high_dollars, self.high),
            low=_dollars_or_cents(self.low_dollars, self.low),
            close=_dollars_or_cents(self.close_dollars, self.close),
            # `mean` in cents is rounded (6 for "0.0625"): only ever a fallback.
            mean=_dollars_or_cents(self.mean_dollars, self.mean),
            previous=_dollars_or_cents(self.previous_dollars, self.previous),
        )


class _LiveCandle(msgspec.Struct, kw_only=True):
    end_period_ts: int
    yes_bid: _LiveBidAsk = msgspec.field(default_factory=_LiveBidAsk)
    yes_ask: _LiveBidAsk = msgspec.field(default_factory=_LiveBidAsk)
    price: _LivePrice = msgspec.field(default_factory=_LivePrice)
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    # Jan-2026 legacy integers (contracts, so Decimal reads them exactly).
    volume: Decimal | None = None
    open_interest: Decimal | None = None

    def candle(self) -> KalshiCandle:
        return _check_candle(
            KalshiCandle(
                end=_ts(self.end_period_ts),
                yes_bid=self.yes_bid.ohlc(ask=False),
                yes_ask=self.yes_ask.ohlc(ask=True),
                price=self.price.trades(),
                volume=self.volume_fp if self.volume_fp is not None else self.volume,
                open_interest=(
                    self.open_interest_fp if self.open_interest_fp is not None else self.open_interest
                ),
            )
        )


class _HistoricalCandle(msgspec.Struct, kw_only=True):
    end_period_ts: int
    yes_bid: CandleOHLC = msgspec.field(default_factory=CandleOHLC)
    yes_ask: CandleOHLC = msgspec.field(default_factory=CandleOHLC)
    price: CandleTrades = msgspec.field(default_factory=CandleTrades)
    volume: Decimal | None = None
    open_interest: Decimal | None = None

    def candle(self) -> KalshiCandle:
        return _check_candle(
            KalshiCandle(
                end=_ts(self.end_period_ts),
                yes_bid=self.yes_bid,
                yes_ask=self.yes_ask,
                price=self.price,
                volume=self.volume,
                open_interest=self.open_interest,
            )
        )


@dataclass(slots=True)
class MarketCandles:
    """The candles of one market from one response, oldest first; unreadable ones are in `skipped`."""

    ticker: str
    candles: list[KalshiCandle]
    skipped: list[SkippedObject]


def _parse_candles(
    ticker: str, raws: Sequence[msgspec.Raw] | None, wire: type[_LiveCandle] | type[_HistoricalCandle]
) -> MarketCandles:
    candles: list[KalshiCandle] = []
    skipped: list[SkippedObject] = []
    for raw in raws or ():
        data = bytes(raw)
        try:
            candles.append(msgspec.json.decode(data, type=wire).candle())
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            logger.warning("Skipping malformed candle of %s: %s (%s)", ticker, exc, data[:200])
            skipped.append(SkippedObject(ticker=ticker, reason=str(exc)))
    candles.sort(key=lambda c: c.end)
    return MarketCandles(ticker=ticker, candles=candles, skipped=skipped)


class _CandlesEnvelope(msgspec.Struct):
    candlesticks: list[msgspec.Raw] | None = None
    ticker: str = ""


class _BatchCandlesItem(msgspec.Struct):
    market_ticker: str
    candlesticks: list[msgspec.Raw] | None = None


class _BatchCandlesEnvelope(msgspec.Struct):
    markets: list[_BatchCandlesItem]


class _RawMarketEnvelope(msgspec.Struct):
    market: msgspec.Raw


class HistoricalCutoff(msgspec.Struct, kw_only=True):
    """GET /historical/cutoff: where Kalshi's live data set ends and the archive begins.

    Markets that *settled* before `market_settled_ts` (and their candles) are served only by
    /historical/markets; trades created before `trades_created_ts` only by /historical/trades.
    """

    market_settled_ts: datetime
    trades_created_ts: datetime
    orders_updated_ts: datetime | None = None
    market_positions_last_updated_ts: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("market_settled_ts", "trades_created_ts", "orders_updated_ts"):
            value = getattr(self, name)
            # RFC 3339 says the offset is mandatory; an offset-less value is read as UTC, like
            # every other Kalshi time.
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))
        if self.market_settled_ts.year == _UNSET_YEAR or self.trades_created_ts.year == _UNSET_YEAR:
            raise ValueError("the cutoff timestamps are unset (0001-01-01)")


# --------------------------------------------------------------------------------------------------
# Throttles
# --------------------------------------------------------------------------------------------------


class Throttle(Protocol):
    def acquire(self) -> None:
        """Block until one more request may be sent."""


class TokenBucket:
    """An in-process token bucket: at most `rate` requests/s on average, `burst` back to back."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                # Rounding can leave 0.99999999 after a wait of exactly one refill; without the
                # tolerance the next wait is below the clock's resolution and the loop spins on it.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)


# Atomic take-or-wait on a bucket stored in Redis. Uses the server's clock so every process,
# on every machine, sees the same time. Returns 0 when a token was taken, else microseconds to wait.
_REDIS_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return wait
"""


class RedisTokenBucket:
    """The same bucket, held in Redis, so all pollers, backfills and workers share one budget."""

    def __init__(
        self,
        redis_client: Any,
        *,
        rate: float,
        burst: float = 1.0,
        key: str = "kalshi_insights:kalshi_rate",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self.key = key
        self._sleep = sleep
        self._script = redis_client.register_script(_REDIS_BUCKET_LUA)

    def acquire(self) -> None:
        while True:
            wait_us = int(self._script(keys=[self.key], args=[self.rate, self.burst]))
            if wait_us <= 0:
                return
            self._sleep(wait_us / 1_000_000)


class NoThrottle:
    def acquire(self) -> None:
        return None


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Endpoints without a ticker in the path: a 404 there means the base URL is wrong, whereas on
# /markets/{ticker} or /series/{ticker} it usually means Kalshi has no such object.
_FIXED_PATHS = frozenset({"/markets", "/markets/trades", "/events", "/series", "/exchange/status"})


def _describe(method: str, url: httpx.URL | str) -> str:
    return f"{method} {url}"


def _error_detail(response: httpx.Response) -> str:
    """Kalshi's error body is {"error": {"code","message","details"}} or {"error": "..."}."""
    text = response.text[:300]
    try:
        body = response.json()
    except ValueError:
        return text.strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("code", "message", "details") if error.get(k)]
        return ": ".join(parts) or text
    if isinstance(error, str):
        return error
    return text


@dataclass
class KalshiClient:
    """One httpx.Client plus the throttle and retry policy. Use as a context manager."""

    base_url: str = DEFAULT_BASE_URL
    timeout: float = 15.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    throttle: Throttle = field(default_factory=NoThrottle)
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    headers: Mapping[str, str] = field(default_factory=dict)
    requests_made: int = field(default=0, init=False)
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            transport=self.transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **self.headers},
            follow_redirects=True,
        )

    @classmethod
    def from_settings(cls, **overrides: Any) -> KalshiClient:
        """Build a client from Django settings (KALSHI_API_BASE, KALSHI_RATE_LIMIT, ...)."""
        from django.conf import settings

        options: dict[str, Any] = {
            "base_url": settings.KALSHI_API_BASE,
            "timeout": settings.KALSHI_TIMEOUT,
            "max_retries": settings.KALSHI_MAX_RETRIES,
        }
        if "throttle" not in overrides:
            options["throttle"] = shared_throttle(
                rate=settings.KALSHI_RATE_LIMIT,
                burst=settings.KALSHI_RATE_BURST,
                redis_url=settings.REDIS_URL,
            )
        options.update(overrides)
        return cls(**options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KalshiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": spreads retries from many processes instead of synchronising them.
        return random.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))

    def request(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET `path` and return the body, retrying transient failures; raises KalshiError."""
        body: bytes = self._send(path, params, None)
        return body

    def get(self, path: str, type_: type[T], params: Mapping[str, Any] | None = None) -> T:
        """GET `path` and decode its JSON body as `type_`, retrying transient failures.

        A body that is cut short or garbled (JSON that does not parse) is retried like a 5xx: a
        dropped CDN connection leaves exactly that. A body of the wrong shape, or one that is not
        JSON at all, is not retried: KALSHI_API_BASE is probably not Kalshi's API.
        """
        decoded: T = self._send(path, params, type_)
        return decoded

    def _send(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        type_: type[Any] | None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """GET with retries; the body decoded as `type_`, or by `decode` (which may raise _Garbled)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        request = self._http.build_request("GET", path, params=clean)
        where = _describe("GET", request.url)
        attempts = self.max_retries + 1
        last_problem = ""
        last_status: int | None = None
        garbled = False
        for attempt in range(attempts):
            if attempt:
                delay = self._backoff(attempt - 1)
                logger.info("Retrying %s in %.2fs (%s)", where, delay, last_problem)
                self.sleep(delay)
            self.throttle.acquire()
            self.requests_made += 1
            try:
                response = self._http.send(request)
            except httpx.TimeoutException as exc:
                last_problem, last_status = f"timed out after {self.timeout:g}s ({type(exc).__name__})", None
                garbled = False
                continue
            except httpx.TransportError as exc:
                last_problem, last_status = f"could not connect: {exc or type(exc).__name__}", None
                garbled = False
                continue
            if response.status_code in RETRY_STATUSES:
                last_problem = f"HTTP {response.status_code} {_error_detail(response)}".strip()
                last_status, garbled = response.status_code, False
                continue
            if response.status_code >= 400:
                hint = ""
                if response.status_code == 404 and path in _FIXED_PATHS:
                    hint = f" Is KALSHI_API_BASE right? It is {self.base_url}."
                raise KalshiError(
                    f"{where} failed: HTTP {response.status_code} {_error_detail(response)}.{hint}",
                    url=str(request.url),
                    status_code=response.status_code,
                    attempts=attempt + 1,
                )
            if decode is None:
                if type_ is None:
                    return response.content
                decode = functools.partial(self._decode, type_=type_, path=path)
            try:
                return decode(response.content)
            except _Garbled as exc:
                last_problem = f"the response body was malformed JSON, cut short or garbled ({exc})"
                last_status, garbled = None, True
                continue
        if garbled:
            advice = (
                " Responses keep arriving broken (an unstable connection or a proxy cutting them "
                "short?); try again later."
            )
        elif last_status is None:
            advice = f" Check KALSHI_API_BASE ({self.base_url}) and this machine's network access."
        elif last_status == 429:
            advice = " Kalshi kept refusing; try again later or lower KALSHI_RATE_LIMIT."
        else:
            advice = " Kalshi's API is having trouble; try again later."
        raise KalshiError(
            f"{where} failed after {attempts} attempt(s): {last_problem}.{advice}",
            url=str(request.url),
            status_code=last_status,
            attempts=attempts,
        )

    def _decode(self, body: bytes, type_: type[Any], path: str) -> Any:
        """Decode a 200's body; raises _Garbled for broken JSON, KalshiError for anything else."""
        try:
            return msgspec.json.decode(body, type=type_)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # JSON that starts like JSON but does not parse was damaged in transit; an HTML page
            # or a well-formed body of another shape is what the server meant to send.
            broken = not isinstance(exc, msgspec.ValidationError)  # a ValidationError is a DecodeError
            if broken and body.lstrip()[:1] in (b"", b"{", b"["):
                raise _Garbled(str(exc)) from None
            raise KalshiError(
                f"GET {self.base_url}{path} returned a response we cannot read: {exc}. "
                f"Is KALSHI_API_BASE ({self.base_url}) pointing at Kalshi's Trade API v2?",
                url=f"{self.base_url}{path}",
            ) from None

    # -- markets ---------------------------------------------------------------------------------

    def get_markets_page(
        self,
        *,
        cursor: str | None = None,
        limit: int = 1000,
        status: str | None = None,
        event_ticker: str | None = None,
        series_ticker: str | None = None,
        tickers: Sequence[str] | None = None,
        mve_filter: str | None = "exclude",
        min_close_ts: int | None = None,
        max_close_ts: int | None = None,
        min_settled_ts: int | None = None,
        max_settled_ts: int | None = None,
        min_updated_ts: int | None = None,
    ) -> MarketsPage:
        """One page of GET /markets. `status` takes filter names (open, closed, settled, ...)."""
        if status is not None and status not in MARKET_STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(MARKET_STATUS_FILTERS)}, not {status!r}")
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        params = {
            "cursor": cursor,
            "limit": limit,
            "status": status,
            "event_ticker": event_ticker,
            "series_ticker": series_ticker,
            "tickers": ",".join(tickers) if tickers else None,
            "mve_filter": mve_filter,
            "min_close_ts": min_close_ts,
            "max_close_ts": max_close_ts,
            "min_settled_ts": min_settled_ts,
            "max_settled_ts": max_settled_ts,
            "min_updated_ts": min_updated_ts,
        }
        return self._markets_page("/markets", params)

    def _markets_page(self, path: str, params: Mapping[str, Any]) -> MarketsPage:
        def decode(body: bytes) -> MarketsPage:
            # Usually every market on a page is well formed: then one decode of the whole body
            # gives every quote, and each market's JSON is cut out only if someone asks for it
            # (`MarketsPage.raw`: new or changed markets, raw snapshots). That is a third of the
            # cost of decoding each market on its own, which is what a page with a malformed
            # market falls back to, so that one bad market costs only itself.
            try:
                fast = _QUOTES_PAGE.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                fast = None
            if fast is not None and fast.markets is not None:
                return MarketsPage(
                    quotes=fast.markets,
                    skipped=[],
                    cursor=fast.cursor or None,
                    received_at=datetime.now(UTC),
                    body=body,
                )
            page: _ListPage = self._decode(body, _ListPage, path)
            if page.markets is None:
                raise KalshiError(
                    f"GET {self.base_url}{path} returned no 'markets' list.", url=f"{self.base_url}{path}"
                )
            quotes, pairs, skipped = _parse_each(page.markets, KalshiQuote)
            return MarketsPage(
                quotes=quotes,
                skipped=skipped,
                cursor=page.cursor or None,
                received_at=datetime.now(UTC),
                raw_by_ticker={obj.ticker: bytes(data) for data, obj in pairs},
            )

        markets_page: MarketsPage = self._send(path, params, None, decode)
        return markets_page

    def iter_markets_pages(self, **filters: Any) -> Iterator[MarketsPage]:
        """Every page of GET /markets for the filters, following the cursor to the end."""
        return self._follow(self.get_markets_page, filters)

    def _follow(self, fetch: Callable[..., Any], filters: dict[str, Any]) -> Iterator[Any]:
        cursor: str | None = filters.pop("cursor", None)
        seen: set[str] = set()
        while True:
            page = fetch(cursor=cursor, **filters)
            yield page
            cursor = page.cursor
            # An empty cursor ends the listing; a repeated one would loop forever.
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def get_market(self, ticker: str) -> KalshiMarket:
        path = f"/markets/{ticker}"
        market: KalshiMarket = self.get(path, _MarketEnvelope).market
        return market

    def get_market_raw(self, ticker: str) -> tuple[KalshiMarket, bytes]:
        """The market and its JSON object exactly as received."""
        path = f"/markets/{ticker}"
        raw = bytes(self.get(path, _RawMarketEnvelope).market)
        try:
            return parse_market(raw), raw
        except MalformedPayload as exc:
            raise KalshiError(f"GET {self.base_url}{path} returned a malformed market: {exc}") from None

    # -- events and series -----------------------------------------------------------------------

    def get_events_page(
        self,
        *,
        cursor: str | None = None,
        limit: int = 200,
        status: str | None = None,
        series_ticker: str | None = None,
        event_tickers: Sequence[str] | None = None,
        with_nested_markets: bool = False,
        min_close_ts: int | None = None,
    ) -> EventsPage:
        if status is not None and status not in EVENT_STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(EVENT_STATUS_FILTERS)}, not {status!r}")
        if not 1 <= limit <= 200:
            raise ValueError("limit must be between 1 and 200")
        params = {
            "cursor": cursor,
            "limit": limit,
            "status": status,
            "series_ticker": series_ticker,
            "tickers": ",".join(event_tickers) if event_tickers else None,
            "with_nested_markets": "true" if with_nested_markets else None,
            "min_close_ts": min_close_ts,
        }
        page = self.get("/events", _ListPage, params)
        events, _, skipped = _parse_each(page.events, KalshiEvent, key=b"event_ticker")
        return EventsPage(events=events, skipped=skipped, cursor=page.cursor or None)

    def iter_events_pages(self, **filters: Any) -> Iterator[EventsPage]:
        return self._follow(self.get_events_page, filters)

    def get_event(self, event_ticker: str, *, with_nested_markets: bool = True) -> KalshiEvent:
        """One event; its markets are in `.markets` whichever of Kalshi's two layouts came back."""
        path = f"/events/{event_ticker}"
        params = {"with_nested_markets": "true" if with_nested_markets else "false"}
        envelope = self.get(path, _EventEnvelope, params)
        event: KalshiEvent = envelope.event
        if not event.markets and envelope.markets:
            event.markets = envelope.markets
        return event

    def get_series(self, series_ticker: str) -> KalshiSeries:
        path = f"/series/{series_ticker}"
        series: KalshiSeries = self.get(path, _SeriesEnvelope).series
        return series

    def get_series_list(
        self, *, category: str | None = None, tags: str | None = None
    ) -> tuple[list[KalshiSeries], list[SkippedObject]]:
        envelope = self.get("/series", _SeriesListEnvelope, {"category": category, "tags": tags})
        series, _, skipped = _parse_each(envelope.series, KalshiSeries)
        return series, skipped

    # -- book, trades, exchange ------------------------------------------------------------------

    def get_orderbook(self, ticker: str, *, depth: int | None = None) -> Orderbook:
        path = f"/markets/{ticker}/orderbook"
        envelope = self.get(path, _OrderbookEnvelope, {"depth": depth})
        if envelope.orderbook_fp is not None:
            sides = envelope.orderbook_fp
            return Orderbook(ticker=ticker, yes=sides.yes_dollars or [], no=sides.no_dollars or [])
        if envelope.orderbook is not None:
            legacy = envelope.orderbook
            # Jan-2026 books: integer counts, prices as both cents and dollar strings; sides may be null.
            return Orderbook(
                ticker=ticker,
                yes=[OrderbookLevel(Decimal(p), Decimal(c)) for p, c in legacy.yes_dollars or []]
                or [OrderbookLevel(Decimal(p) / HUNDRED, Decimal(c)) for p, c in legacy.yes or []],
                no=[OrderbookLevel(Decimal(p), Decimal(c)) for p, c in legacy.no_dollars or []]
                or [OrderbookLevel(Decimal(p) / HUNDRED, Decimal(c)) for p, c in legacy.no or []],
            )
        raise KalshiError(f"GET {self.base_url}{path} returned no order book.", url=f"{self.base_url}{path}")

    def get_trades_page(
        self,
        *,
        cursor: str | None = None,
        limit: int = 1000,
        ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
    ) -> TradesPage:
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        params = {"cursor": cursor, "limit": limit, "ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        page = self.get("/markets/trades", _ListPage, params)
        trades, _, skipped = _parse_each(page.trades, KalshiTrade, key=b"trade_id")
        return TradesPage(trades=trades, skipped=skipped, cursor=page.cursor or None)

    def iter_trades_pages(self, **filters: Any) -> Iterator[TradesPage]:
        return self._follow(self.get_trades_page, filters)

    def get_exchange_status(self) -> ExchangeStatus:
        return self.get("/exchange/status", ExchangeStatus)

    # -- candlesticks and the historical archive ---------------------------------------------------

    @staticmethod
    def _check_candle_window(start_ts: int, end_ts: int, period_interval: int) -> None:
        if period_interval not in CANDLE_PERIODS:
            raise ValueError(
                f"period_interval must be one of {CANDLE_PERIODS} (minutes), not {period_interval}"
            )
        if end_ts < start_ts:
            raise ValueError(f"end_ts ({end_ts}) is before start_ts ({start_ts})")

    def get_market_candlesticks(
        self,
        series_ticker: str,
        ticker: str,
        *,
        start_ts: int,
        end_ts: int,
        period_interval: int,
        include_latest_before_start: bool = False,
    ) -> MarketCandles:
        """Candles of one live market whose end falls in [start_ts, end_ts] (Unix seconds)."""
        self._check_candle_window(start_ts, end_ts, period_interval)
        path = f"/series/{series_ticker}/markets/{ticker}/candlesticks"
        params = {
            "start_ts": start_ts,
            "end_ts": end_ts,
            "period_interval": period_interval,
            "include_latest_before_start": "true" if include_latest_before_start else None,
        }
        envelope = self.get(path, _CandlesEnvelope, params)
        return _parse_candles(ticker, envelope.candlesticks, _LiveCandle)

    def get_markets_candlesticks(
        self,
        tickers: Sequence[str],
        *,
        start_ts: int,
        end_ts: int,
        period_interval: int,
    ) -> dict[str, MarketCandles]:
        """GET /markets/candlesticks: candles of up to 100 live markets in one request.

        Kalshi returns at most 10,000 candles per response across all markets, so callers size
        the window (markets x periods) to stay within it. Tickers Kalshi leaves out of the response
        map to an empty list.
        """
        self._check_candle_window(start_ts, end_ts, period_interval)
        if not tickers:
            return {}
        if len(tickers) > MAX_BATCH_CANDLE_TICKERS:
            raise ValueError(f"at most {MAX_BATCH_CANDLE_TICKERS} tickers per request, not {len(tickers)}")
        params = {
            "market_tickers": ",".join(tickers),
            "start_ts": start_ts,
            "end_ts": end_ts,
            "period_interval": period_interval,
        }
        path = "/markets/candlesticks"
        envelope = self.get(path, _BatchCandlesEnvelope, params)
        result = {t: MarketCandles(ticker=t, candles=[], skipped=[]) for t in tickers}
        for item in envelope.markets:
            result[item.market_ticker] = _parse_candles(item.market_ticker, item.candlesticks, _LiveCandle)
        return result

    def get_historical_cutoff(self) -> HistoricalCutoff:
        path = "/historical/cutoff"
        return self.get(path, HistoricalCutoff)

    def get_historical_markets_page(
        self,
        *,
        cursor: str | None = None,
        limit: int = 1000,
        tickers: Sequence[str] | None = None,
        event_ticker: str | None = None,
        series_ticker: str | None = None,
        mve_filter: str | None = None,
    ) -> MarketsPage:
        """One page of GET /historical/markets (markets settled before the cutoff).

        Kalshi treats the filters as mutually exclusive; pass at most one of them.
        """
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if sum(bool(f) for f in (tickers, event_ticker, series_ticker)) > 1:
            raise ValueError("pass at most one of tickers, event_ticker, series_ticker")
        params = {
            "cursor": cursor,
            "limit": limit,
            "tickers": ",".join(tickers) if tickers else None,
            "event_ticker": event_ticker,
            "series_ticker": series_ticker,
            "mve_filter": mve_filter,
        }
        return self._markets_page("/historical/markets", params)

    def iter_historical_markets_pages(self, **filters: Any) -> Iterator[MarketsPage]:
        return self._follow(self.get_historical_markets_page, filters)

    def get_historical_market_raw(self, ticker: str) -> tuple[KalshiMarket, bytes]:
        """One archived market and its JSON object exactly as received."""
        path = f"/historical/markets/{ticker}"
        raw = bytes(self.get(path, _RawMarketEnvelope).market)
        try:
            return parse_market(raw), raw
        except MalformedPayload as exc:
            raise KalshiError(f"GET {self.base_url}{path} returned a malformed market: {exc}") from None

    def get_historical_market_candlesticks(
        self, ticker: str, *, start_ts: int, end_ts: int, period_interval: int
    ) -> MarketCandles:
        """Candles of one archived market (the historical shape: bare names, nulls kept)."""
        self._check_candle_window(start_ts, end_ts, period_interval)
        path = f"/historical/markets/{ticker}/candlesticks"
        params = {"start_ts": start_ts, "end_ts": end_ts, "period_interval": period_interval}
        envelope = self.get(path, _CandlesEnvelope, params)
        return _parse_candles(ticker, envelope.candlesticks, _HistoricalCandle)

    def get_historical_trades_page(
        self,
        *,
        cursor: str | None = None,
        limit: int = 1000,
        ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
    ) -> TradesPage:
        """One page of GET /historical/trades (trades created before the trades cutoff)."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        params = {"cursor": cursor, "limit": limit, "ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        path = "/historical/trades"
        page = self.get(path, _ListPage, params)
        trades, _, skipped = _parse_each(page.trades, KalshiTrade, key=b"trade_id")
        return TradesPage(trades=trades, skipped=skipped, cursor=page.cursor or None)

    def iter_historical_trades_pages(self, **filters: Any) -> Iterator[TradesPage]:
        return self._follow(self.get_historical_trades_page, filters)


def shared_throttle(*, rate: float, burst: float, redis_url: str | None) -> Throttle:
    """The Redis-backed bucket when Redis is configured and answering, else an in-process one."""
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            client.ping()
        except redis.RedisError as exc:
            # Once per process while it stays down: a poller builds a client every cycle.
            if redis_url not in _REDIS_DOWN:
                _REDIS_DOWN.add(redis_url)
                logger.warning(
                    "Redis at REDIS_URL is unreachable (%s); the Kalshi rate limit is per-process only.", exc
                )
        else:
            _REDIS_DOWN.discard(redis_url)
            return RedisTokenBucket(client, rate=rate, burst=burst)
    return _process_bucket(rate, burst)


_REDIS_DOWN: set[str] = set()


_PROCESS_BUCKETS: dict[tuple[float, float], TokenBucket] = {}
_PROCESS_BUCKETS_LOCK = threading.Lock()


def _process_bucket(rate: float, burst: float) -> TokenBucket:
    # One bucket per process, so several clients in one worker still share the budget.
    with _PROCESS_BUCKETS_LOCK:
        bucket = _PROCESS_BUCKETS.get((rate, burst))
        if bucket is None:
            bucket = _PROCESS_BUCKETS[(rate, burst)] = TokenBucket(rate, burst)
        return bucket
