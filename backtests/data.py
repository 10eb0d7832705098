"""From the database to the engine: market descriptions and quote series as a QuotePanel.

On PostgreSQL the snapshots are streamed with `COPY ... TO STDOUT (FORMAT BINARY)` in their stored
types and decoded by numpy, field by field across all rows, into integers (micro-dollars,
centi-contracts, epoch microseconds), which is what keeps a million quotes around a second. Other
databases go through `values_list` with exact Decimal conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

import numpy as np
from django.db import connection
from django.db.models import QuerySet

from markets.models import Market, MarketSnapshot

from .engine import MarketInfo, QuotePanel, to_centi, to_micro

_COLUMNS = ("market_id", "ts", "bid", "ask", "last", "volume", "bid_size", "ask_size")
_BINARY_HEADER = 19  # PGCOPY signature (11) + flags (4) + header extension length (4)
_PG_EPOCH_US = 946_684_800_000_000
# The numeric columns as they travel, with the decimal exponent of the integers we keep:
# prices in micro-dollars (1e-6), counts in centi-contracts (1e-2).
_NUMERICS = (
    ("bid", "yes_bid", 6),
    ("ask", "yes_ask", 6),
    ("last", "last_price", 6),
    ("volume", "volume", 2),
    ("bid_size", "yes_bid_size", 2),
    ("ask_size", "yes_ask_size", 2),
)
_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
_NUMERIC_NEG, _NUMERIC_NAN = 0x4000, 0xC000
MARKETS_PER_BATCH = 500


def market_info(market: Market) -> MarketInfo:
    """What the engine needs about a market; the event's fee override wins over the series' fee fields."""
    event = market.event
    series = event.series
    fee_type = event.fee_type_override or (series.fee_type if series else "") or "quadratic"
    if event.fee_multiplier_override is not None:
        multiplier = event.fee_multiplier_override
    else:
        multiplier = series.fee_multiplier if series else Decimal(1)
    settled = market.result != "" and market.settlement_value is not None
    return MarketInfo(
        ticker=market.ticker,
        settlement_value=market.settlement_value if settled else None,
        close_time=market.close_time,
        fee_type=fee_type,
        fee_multiplier=multiplier,
        title=market.title,
    )


def _copy_arrays(qs: QuerySet[MarketSnapshot]) -> dict[str, np.ndarray]:
    """Stream the columns as stored with `COPY ... TO STDOUT (FORMAT BINARY)` and decode them here.

    Casting numeric to float8 or to integers costs the server more than scanning, sorting and
    sending the rows together, so the numerics travel in PostgreSQL's own binary form (base-10000
    digit groups) and numpy turns them into exact integers, one field at a time across all rows.
    """
    sql, params = (
        qs.order_by("market_id", "captured_at", "source")
        .values_list("market_id", "captured_at", *(column for _, column, _ in _NUMERICS))
        .query.sql_with_params()
    )
    buffer = bytearray()
    sizes: list[int] = []
    with connection.cursor() as wrapper:
        # Django's debug cursor wrapper (DEBUG=True) does not pass COPY parameters on; psycopg's does.
        cursor = wrapper.cursor
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            # The server sends one message per row (the header rides with the first, the trailer
            # is a message of its own): the message sizes are the row boundaries.
            for chunk in copy:
                buffer += chunk
                sizes.append(len(chunk))
    return _decode_copy(buffer, sizes)


def _decode_copy(buffer: bytearray, sizes: list[int]) -> dict[str, np.ndarray]:
    n = len(sizes) - 1  # the last message is the trailer
    if n <= 0:
        return {name: np.zeros(0, dtype=np.int64) for name in _COLUMNS}
    buffer += bytes(64)  # fixed-width reads of short fields at the end stay inside the buffer
    raw = np.frombuffer(buffer, dtype=np.uint8)
    pos = np.zeros(n, dtype=np.int64)
    np.cumsum(np.array(sizes[:-1], dtype=np.int64)[:-1], out=pos[1:])
    pos[0] = _BINARY_HEADER
    if not bool(np.all(_read(raw, pos, ">i2") == 2 + len(_NUMERICS))):
        raise RuntimeError("unexpected COPY BINARY layout: a row does not start where its message does")
    pos += 2
    out: dict[str, np.ndarray] = {}
    for name, dtype in (("market_id", ">i4"), ("ts", ">i8")):
        out[name] = _read(raw, pos + 4, dtype)
        pos += 4 + np.dtype(dtype).itemsize
    out["ts"] += _PG_EPOCH_US
    for name, _, exponent in _NUMERICS:
        length = _read(raw, pos, ">i4")
        out[name] = _numeric_to_int(raw, pos + 4, length, exponent)
        pos += 4 + np.maximum(length, 0)
    return out


def _read(raw: np.ndarray, pos: np.ndarray, dtype: str) -> np.ndarray:
    """The big-endian value of `dtype` at each byte position, as int64."""
    return _read_many(raw, pos, dtype, 1)[:, 0]


def _read_many(raw: np.ndarray, pos: np.ndarray, dtype: str, count: int) -> np.ndarray:
    """`count` consecutive big-endian values of `dtype` at each byte position: int64, (n, count).

    A view of the buffer with a stride of one byte has a value starting at every byte, so one
    gather reads a field from every row, whatever its alignment.
    """
    item = np.dtype(dtype).itemsize
    view = np.ndarray(shape=(len(raw) - item * count + 1, count), dtype=dtype, buffer=raw, strides=(1, item))
    out: np.ndarray = view[pos].astype(np.int64)
    return out


def _numeric_to_int(raw: np.ndarray, pos: np.ndarray, length: np.ndarray, exponent: int) -> np.ndarray:
    """PostgreSQL binary numerics at `pos` as exact integers in units of 10**-exponent; -1 for NULL.

    A numeric is ndigits, weight, sign, dscale (int16 each), then ndigits base-10000 digits, the
    first worth 10000**weight. Stored values have at most `exponent` decimals, so every digit
    group's share is a whole number of units.
    """
    header = _read_many(raw, pos, ">i2", 4)
    ndigits, weight, sign = header[:, 0], header[:, 1], header[:, 2] & 0xFFFF
    present = length >= 0
    ndigits = np.where(present, ndigits, 0)
    # The digits as one integer (Horner), then one power of ten for the whole number.
    value = np.zeros(len(pos), dtype=np.int64)
    most = int(ndigits.max(initial=0))
    if most:
        digits = _read_many(raw, pos + 8, ">i2", most)
        for i in range(most):
            value = np.where(i < ndigits, value * 10_000 + digits[:, i], value)
    scale = 4 * (weight - ndigits + 1) + exponent
    up = _POW10[np.clip(scale, 0, 18)]
    down = _POW10[np.clip(-scale, 0, 18)]
    value = np.where(scale >= 0, value * up, value // down)
    value = np.where(sign == _NUMERIC_NEG, -value, value)
    return np.where(present & (sign != _NUMERIC_NAN), value, -1)


def _python_arrays(qs: QuerySet[MarketSnapshot]) -> dict[str, np.ndarray]:
    rows = list(
        qs.order_by("market_id", "captured_at", "source").values_list(
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
    cols: dict[str, list[int]] = {name: [] for name in _COLUMNS}
    for market_id, at, bid, ask, last, volume, bid_size, ask_size in rows:
        cols["market_id"].append(market_id)
        cols["ts"].append(int(at.timestamp() * 1_000_000))
        cols["bid"].append(to_micro(bid, empty=-1))
        cols["ask"].append(to_micro(ask, empty=-1))
        cols["last"].append(to_micro(last, empty=-1))
        cols["volume"].append(to_centi(volume))
        cols["bid_size"].append(to_centi(bid_size))
        cols["ask_size"].append(to_centi(ask_size))
    return {k: np.array(v, dtype=np.int64) for k, v in cols.items()}


def load_quote_arrays(qs: QuerySet[MarketSnapshot]) -> dict[str, np.ndarray]:
    """Integer quote columns of a snapshot QuerySet, ordered by market and time."""
    if connection.vendor == "postgresql":
        return _copy_arrays(qs)
    return _python_arrays(qs)


def load_panel(
    markets: Sequence[Market],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Callable[[float], None] | None = None,
) -> QuotePanel:
    """The quote series of `markets` between `start` and `end` (inclusive) as one panel."""
    infos = [market_info(m) for m in markets]
    index = {m.pk: i for i, m in enumerate(markets)}
    parts: list[dict[str, np.ndarray]] = []
    ids = [m.pk for m in markets]
    for b in range(0, len(ids), MARKETS_PER_BATCH):
        batch = ids[b : b + MARKETS_PER_BATCH]
        parts.append(load_quote_arrays(MarketSnapshot.objects.for_markets(batch).between(start, end)))
        if progress:
            progress(min(1.0, (b + len(batch)) / max(len(ids), 1)))
    if parts:
        cols = {name: np.concatenate([p[name] for p in parts]) for name in _COLUMNS}
    else:
        cols = {name: np.zeros(0, dtype=np.int64) for name in _COLUMNS}
    lookup = np.zeros(max(index, default=0) + 1, dtype=np.int64)
    for pk, i in index.items():
        lookup[pk] = i
    return QuotePanel.from_arrays(
        infos,
        {
            "ticker_index": lookup[cols["market_id"]] if len(cols["market_id"]) else cols["market_id"],
            "time": cols["ts"] * 1_000,
            "yes_bid": cols["bid"],
            "yes_ask": cols["ask"],
            "last_price": cols["last"],
            "volume": cols["volume"],
            "yes_bid_size": cols["bid_size"],
            "yes_ask_size": cols["ask_size"],
        },
        end=end,
    )
