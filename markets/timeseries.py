"""Downsampling a market's snapshots into at most N time buckets, fast enough for a chart.

Shared by the market page's chart and the JSON API (`/api/v1/markets/{ticker}/snapshots/`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from .display import real_ask, real_bid
from .models import Market, MarketSnapshot, SnapshotSource

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bucket widths are "round" so that buckets stay put as time passes (a chart refreshed a minute
# later shows the same buckets plus a new one, not a shifted grid) and read well on an axis.
NICE_WIDTHS_SECONDS = (
    1, 2, 5, 10, 15, 30,
    60, 2 * 60, 5 * 60, 10 * 60, 15 * 60, 30 * 60,
    3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400,
)  # fmt: skip
# How many of the most recent snapshots in the range are aggregated row by row. Above this the
# older buckets are sampled by index probes (see `downsample`). Chosen with `./dev bench show` so
# that the exact part costs about as much as the ~2,000 probes: ~15 ms on a modest machine.
EXACT_ROWS = 20_000
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class QuoteBucket:
    """One time bucket of a market's quote history.

    The closing values are those of the last snapshot in the bucket (the quote in force at its end).
    `low_yes_bid` / `high_yes_ask` ignore empty-book sentinels (a yes bid of 0, a yes ask of 0 or 1),
    so they are the lowest real bid and the highest real ask; both are None when the bucket was
    sampled rather than scanned (`exact` False), and so is `snapshots`.
    """

    start: datetime  # inclusive, aligned to a multiple of `width` since the Unix epoch
    width: timedelta
    time: datetime  # captured_at of the closing snapshot
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    last_price: Decimal | None
    volume: Decimal | None  # cumulative contracts traded, at the close
    volume_traded: Decimal | None  # during this bucket; None when nothing earlier is known
    low_yes_bid: Decimal | None
    high_yes_ask: Decimal | None
    snapshots: int | None
    source: str  # source of the closing snapshot: "poll", "websocket" or "backfill"
    sources: tuple[str, ...]  # every source seen in the bucket (sampled: the close's only)
    exact: bool

    @property
    def end(self) -> datetime:
        return self.start + self.width


@dataclass(frozen=True, slots=True)
class _Close:
    bucket: int
    captured_at: datetime
    source: str
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    last_price: Decimal | None
    volume: Decimal | None


@dataclass(slots=True)
class _Stats:
    snapshots: int
    low_yes_bid: Decimal | None
    high_yes_ask: Decimal | None
    sources: tuple[str, ...]


def bucket_width(span: timedelta, max_points: int) -> timedelta:
    """The smallest round width that cuts `span` into at most `max_points` aligned buckets."""
    if max_points < 2:
        raise ValueError("max_points must be at least 2.")
    # n aligned buckets of width w cover at most (n - 1) * w of span plus the partial ends.
    needed = span.total_seconds() / (max_points - 1)
    for seconds in NICE_WIDTHS_SECONDS:
        if seconds >= needed:
            return timedelta(seconds=seconds)
    days = -(-needed // 86400)  # ceiling
    return timedelta(days=int(days))


def bucket_of(moment: datetime, width: timedelta) -> int:
    return (moment - EPOCH) // width


def bucket_start(index: int, width: timedelta) -> datetime:
    return EPOCH + index * width


def downsample(
    market: Market | int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    max_points: int = 2000,
    source: str | None = None,
    exact_rows: int = EXACT_ROWS,
) -> list[QuoteBucket]:
    """The market's snapshots in [start, end] (inclusive) as at most `max_points` time buckets.

    Buckets are aligned multiples of a round width (1 s … 1 day …) chosen from the span, and only
    buckets holding at least one snapshot are returned, oldest first. `start`/`end` default to the
    first/last stored snapshot; `source` keeps only "poll", "websocket" or "backfill" rows.

    Algorithm on PostgreSQL (both parts are driven by the (market, captured_at, source) index, so
    the cost depends on the number of buckets, not on how many snapshots the market has):

    1. Exact part: the most recent `exact_rows` + 1 snapshots of the range are read backwards
       along the index and aggregated per bucket: closing quote (DISTINCT ON), count, lowest real
       bid, highest real ask, sources. If the range holds no more than `exact_rows` snapshots,
       that is the whole answer and every bucket is exact.
    2. Sampled part: otherwise the oldest bucket reached is incomplete, and it and every older
       bucket are filled by one index probe each: "the last snapshot before this bucket's end"
       (a LATERAL ... ORDER BY captured_at DESC LIMIT 1). That gives the exact closing quote and,
       since `volume` is cumulative, the exact volume traded per bucket, but not the extremes
       inside the bucket; those buckets say `exact=False`. A probe that lands before its bucket's
       start means the bucket holds no snapshot; it is skipped.

    One more probe reads the snapshot in force before `start`, so the first bucket's
    `volume_traded` is known too (`volume` is the market's cumulative count, as Kalshi reports it
    and as polled rows store it; rows written by other sources must store it the same way).
    A 1M-snapshot market costs ~2,000 probes plus `exact_rows` rows
    (`./dev bench show` measures it). On other databases (SQLite) every snapshot in the range is
    read and aggregated in Python: exact, and slower on long histories.
    """
    market_id = market if isinstance(market, int) else market.pk
    if max_points < 2:
        raise ValueError("max_points must be at least 2.")
    if source is not None and source not in _SOURCE_VALUES:
        raise ValueError(f"source must be one of {', '.join(_SOURCE_VALUES)}, not {source!r}.")
    if start is None or end is None:
        first, last = _bounds(market_id, source)
        if first is None or last is None:
            return []
        start = first if start is None else start
        end = last if end is None else end
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC).")
    if end < start:
        raise ValueError("end must not be before start.")
    width = bucket_width(end - start, max_points)
    if connection.vendor == "postgresql":
        return _downsample_postgresql(market_id, start, end, width, source, exact_rows)
    return _aggregate(
        _rows(market_id, start, end, source), width=width, previous=_volume_before(market_id, start, source)
    )


_SOURCE_VALUES = tuple(SnapshotSource.values)


def quote_at(market: Market | int, moment: datetime, *, source: str | None = None) -> QuoteBucket | None:
    """The quote in force at `moment` (the last snapshot at or before it) as a one-snapshot bucket."""
    market_id = market if isinstance(market, int) else market.pk
    row = (
        _filtered(market_id, source)
        .filter(captured_at__lte=moment)
        .order_by("-captured_at", "-source")
        .values_list(*_ROW_FIELDS)
        .first()
    )
    if row is None:
        return None
    captured_at, row_source, yes_bid, yes_ask, last_price, volume = row
    return QuoteBucket(
        start=captured_at,
        width=timedelta(0),
        time=captured_at,
        yes_bid=yes_bid,
        yes_ask=yes_ask,
        last_price=last_price,
        volume=volume,
        volume_traded=None,
        low_yes_bid=real_bid(yes_bid),
        high_yes_ask=real_ask(yes_ask),
        snapshots=1,
        source=row_source,
        sources=(row_source,),
        exact=True,
    )


def _filtered(market_id: int, source: str | None) -> Any:
    qs = MarketSnapshot.objects.for_market(market_id)
    return qs if source is None else qs.from_source(source)


def _bounds(market_id: int, source: str | None) -> tuple[datetime | None, datetime | None]:
    qs = _filtered(market_id, source).values_list("captured_at", flat=True)
    return qs.order_by("captured_at").first(), qs.order_by("-captured_at").first()


def _volume_before(market_id: int, start: datetime, source: str | None) -> Decimal | None:
    volume: Decimal | None = (
        _filtered(market_id, source)
        .filter(captured_at__lt=start)
        .order_by("-captured_at", "-source")
        .values_list("volume", flat=True)
        .first()
    )
    return volume


_ROW_FIELDS = ("captured_at", "source", "yes_bid", "yes_ask", "last_price", "volume")


def _rows(market_id: int, start: datetime, end: datetime, source: str | None) -> Iterable[tuple[Any, ...]]:
    rows: Iterable[tuple[Any, ...]] = (
        _filtered(market_id, source)
        .between(start, end)
        .order_by("captured_at", "source")
        .values_list(*_ROW_FIELDS)
        .iterator(chunk_size=5000)
    )
    return rows


def _aggregate(
    rows: Iterable[tuple[Any, ...]],
    *,
    width: timedelta,
    previous: Decimal | None,
) -> list[QuoteBucket]:
    """Reference aggregation over snapshot rows in ascending (captured_at, source) order."""
    closes: dict[int, _Close] = {}
    stats: dict[int, _Stats] = {}
    for captured_at, source, yes_bid, yes_ask, last_price, volume in rows:
        index = bucket_of(captured_at, width)
        closes[index] = _Close(index, captured_at, source, yes_bid, yes_ask, last_price, volume)
        bid, ask = real_bid(yes_bid), real_ask(yes_ask)
        s = stats.get(index)
        if s is None:
            stats[index] = _Stats(1, bid, ask, (source,))
            continue
        s.snapshots += 1
        if bid is not None and (s.low_yes_bid is None or bid < s.low_yes_bid):
            s.low_yes_bid = bid
        if ask is not None and (s.high_yes_ask is None or ask > s.high_yes_ask):
            s.high_yes_ask = ask
        if source not in s.sources:
            s.sources = tuple(sorted((*s.sources, source)))
    return _assemble(sorted(closes.values(), key=lambda c: c.bucket), stats, width=width, previous=previous)


def _assemble(
    closes: Sequence[_Close],
    stats: dict[int, _Stats],
    *,
    width: timedelta,
    previous: Decimal | None,
) -> list[QuoteBucket]:
    out = []
    for c in closes:
        s = stats.get(c.bucket)
        traded = None
        if c.volume is not None and previous is not None:
            traded = c.volume - previous
        out.append(
            QuoteBucket(
                start=bucket_start(c.bucket, width),
                width=width,
                time=c.captured_at,
                yes_bid=c.yes_bid,
                yes_ask=c.yes_ask,
                last_price=c.last_price,
                volume=c.volume,
                volume_traded=traded,
                low_yes_bid=s.low_yes_bid if s else None,
                high_yes_ask=s.high_yes_ask if s else None,
                snapshots=s.snapshots if s else None,
                source=c.source,
                sources=s.sources if s else (c.source,),
                exact=s is not None,
            )
        )
        if c.volume is not None:
            previous = c.volume
    return out


_EXACT_SQL = """
WITH recent AS MATERIALIZED (
    SELECT captured_at, source, yes_bid, yes_ask, last_price, volume,
           floor(extract(epoch FROM captured_at) / %(width)s)::bigint AS bucket
    FROM {table}
    WHERE market_id = %(market)s AND captured_at >= %(start)s AND captured_at <= %(end)s {source_clause}
    ORDER BY captured_at DESC, source DESC
    LIMIT %(limit)s
), closes AS (
    SELECT DISTINCT ON (bucket) bucket, captured_at, source, yes_bid, yes_ask, last_price, volume
    FROM recent
    ORDER BY bucket, captured_at DESC, source DESC
), stats AS (
    SELECT bucket, count(*) AS n,
           min(yes_bid) FILTER (WHERE yes_bid > 0) AS low_bid,
           max(yes_ask) FILTER (WHERE yes_ask > 0 AND yes_ask < 1) AS high_ask,
           array_agg(DISTINCT source ORDER BY source) AS sources
    FROM recent
    GROUP BY bucket
)
SELECT c.bucket, c.captured_at, c.source, c.yes_bid, c.yes_ask, c.last_price, c.volume,
       s.n, s.low_bid, s.high_ask, s.sources
FROM closes c JOIN stats s USING (bucket)
ORDER BY c.bucket
"""

# One probe per bucket b in [first, last]: the last snapshot before the bucket's end (or before
# the range's end, for the last bucket). Bucket first - 1 stands for "before the range starts".
_PROBE_SQL = """
SELECT b.bucket, s.captured_at, s.source, s.yes_bid, s.yes_ask, s.last_price, s.volume
FROM generate_series(%(first)s::bigint - 1, %(last)s::bigint) AS b(bucket)
CROSS JOIN LATERAL (
    SELECT captured_at, source, yes_bid, yes_ask, last_price, volume
    FROM {table}
    WHERE market_id = %(market)s {source_clause}
      AND captured_at < CASE
          WHEN b.bucket < %(first)s THEN %(start)s
          ELSE least(to_timestamp((b.bucket + 1) * %(width)s), %(end_exclusive)s)
      END
    ORDER BY captured_at DESC, source DESC
    LIMIT 1
) s
ORDER BY b.bucket
"""


def _downsample_postgresql(
    market_id: int,
    start: datetime,
    end: datetime,
    width: timedelta,
    source: str | None,
    exact_rows: int,
) -> list[QuoteBucket]:
    table = MarketSnapshot._meta.db_table
    source_clause = "AND source = %(source)s" if source else ""
    params: dict[str, Any] = {
        "market": market_id,
        "start": start,
        "end": end,
        "end_exclusive": end + _ONE_MICROSECOND,
        "width": int(width.total_seconds()),
        "source": source,
        "limit": exact_rows + 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(_EXACT_SQL.format(table=table, source_clause=source_clause), params)
        exact = cursor.fetchall()
    closes = {r[0]: _Close(*r[:7]) for r in exact}
    stats = {r[0]: _Stats(r[7], r[8], r[9], tuple(r[10])) for r in exact}
    first = bucket_of(start, width)
    if sum(s.snapshots for s in stats.values()) > exact_rows:
        # The limit cut the oldest bucket it reached: that one and everything older is probed.
        cut = min(stats)
        for index in [i for i in closes if i <= cut]:
            del closes[index], stats[index]
        last_probed = cut
    else:
        last_probed = first - 1  # only the "before start" probe is needed
    params.update(first=first, last=last_probed)
    with connection.cursor() as cursor:
        cursor.execute(_PROBE_SQL.format(table=table, source_clause=source_clause), params)
        probes = cursor.fetchall()
    previous: Decimal | None = None
    for row in probes:
        index, captured_at = row[0], row[1]
        if index < first:
            previous = row[6]
        elif captured_at >= max(bucket_start(index, width), start):
            closes[index] = _Close(*row[:7])
        # else: the bucket holds no snapshot; the probe found an older one.
    return _assemble(sorted(closes.values(), key=lambda c: c.bucket), stats, width=width, previous=previous)
