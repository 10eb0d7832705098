"""From the database to the engine: market descriptions and quote series as a QuotePanel.

On PostgreSQL the snapshots are streamed with `COPY ... TO STDOUT (FORMAT BINARY)` as fixed-width
columns and decoded by numpy in one call into integers (micro-dollars, centi-contracts, epoch
microseconds), which is what keeps a million quotes well under a second. Other databases go through
`values_list` with exact Decimal conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import BigIntegerField, FloatField, QuerySet, Value
from django.db.models.functions import Cast, Coalesce

from markets.models import Market, MarketSnapshot

from .engine import MICRO, MarketInfo, QuotePanel, to_centi, to_micro

_COLUMNS = ("market_id", "ts", "bid", "ask", "last", "volume", "bid_size", "ask_size")
_BINARY_HEADER = 19  # PGCOPY signature (11) + flags (4) + header extension length (4)
# timestamptz travels as microseconds since 2000-01-01 UTC; prices and counts as float8, whose
# conversion from numeric is correctly rounded, so x1e6 (x100) and rounding gives back the exact
# stored integer for anything below ~1e13. Every field is fixed-width, so numpy decodes it in one go.
_RECORD = np.dtype(
    [("nfields", ">i2"), ("market_id_len", ">i4"), ("market_id", ">i8"), ("ts_len", ">i4"), ("ts", ">i8")]
    + [item for name in _COLUMNS[2:] for item in ((f"{name}_len", ">i4"), (name, ">f8"))]
)
_PG_EPOCH_US = 946_684_800_000_000
_SCALE = {"bid": MICRO, "ask": MICRO, "last": MICRO, "volume": 100, "bid_size": 100, "ask_size": 100}
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


def _binary_quotes(qs: QuerySet[MarketSnapshot]) -> QuerySet[MarketSnapshot, tuple[Any, ...]]:
    def as_float(field: str, scale: int) -> Coalesce:
        # A NULL becomes -1 unit (-1e-6 dollar, -0.01 contract) here, so it comes out of the
        # scaling as the -1 the engine expects without a NaN pass on the client.
        return Coalesce(Cast(field, FloatField()), Value(-1 / scale), output_field=FloatField())

    return (
        qs.annotate(
            # Market ids are 32-bit; widened so every binary record has the same width.
            q_market=Cast("market_id", BigIntegerField()),
            q_bid=as_float("yes_bid", _SCALE["bid"]),
            q_ask=as_float("yes_ask", _SCALE["ask"]),
            q_last=as_float("last_price", _SCALE["last"]),
            q_volume=as_float("volume", _SCALE["volume"]),
            q_bid_size=as_float("yes_bid_size", _SCALE["bid_size"]),
            q_ask_size=as_float("yes_ask_size", _SCALE["ask_size"]),
        )
        .order_by("market_id", "captured_at", "source")
        .values_list(
            "q_market", "captured_at", "q_bid", "q_ask", "q_last", "q_volume", "q_bid_size", "q_ask_size"
        )
    )


def _copy_arrays(qs: QuerySet[MarketSnapshot]) -> dict[str, np.ndarray]:
    sql, params = _binary_quotes(qs).query.sql_with_params()
    buffer = bytearray()
    with connection.cursor() as wrapper:
        # Django's debug cursor wrapper (DEBUG=True) does not pass COPY parameters on; psycopg's does.
        cursor = wrapper.cursor
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            for chunk in copy:
                buffer += chunk
    body = memoryview(buffer)[_BINARY_HEADER:-2]  # header, and the -1 trailer
    records = np.frombuffer(body, dtype=_RECORD)
    out = {
        "market_id": records["market_id"].astype(np.int64),
        "ts": records["ts"].astype(np.int64) + _PG_EPOCH_US,
    }
    for name, scale in _SCALE.items():
        # One pass reads the strided big-endian field and scales it; rounding is in place.
        scaled = np.multiply(records[name], scale, dtype=np.float64)
        np.rint(scaled, out=scaled)
        out[name] = scaled.astype(np.int64)
    return out


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
