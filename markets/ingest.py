"""Poll cycles: page through Kalshi's open markets and store what changed.

This is the only module that writes markets and snapshots from the poller. One cycle reads every
page of `GET /markets?status=open`, and for each page, in one transaction:

* markets seen for the first time, or whose metadata changed (`updated_time`, `status`, `result`),
  are parsed in full and upserted;
* markets whose quote changed since their last stored snapshot (or whose heartbeat is due) get a
  new snapshot and their latest quote updated;
* everything else costs one digest comparison and no write.

On PostgreSQL the quote path uses COPY (psycopg 3) into the snapshot table and a temporary table
for the market update; on SQLite one `executemany` each. Pages are processed one
at a time, so memory stays flat however many markets Kalshi lists.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from django.conf import settings
from django.db import DatabaseError, OperationalError, ProgrammingError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from . import locks
from .kalshi import (
    QUOTE_VALUE_NAMES,
    KalshiClient,
    KalshiError,
    KalshiEvent,
    KalshiMarket,
    KalshiQuote,
    KalshiSeries,
    MalformedPayload,
    MarketsPage,
)
from .models import (
    QUOTE_FIELDS,
    Event,
    Market,
    MarketSnapshot,
    PollOutcome,
    PollRun,
    Series,
    SnapshotSource,
)

logger = logging.getLogger(__name__)

POLL_LOCK_NAME = "poll-markets"
# Progress lines: every this many pages of the first cycle (it stores every open market, 60-95
# pages on Kalshi), and from any cycle still running this many seconds after the last line.
FIRST_CYCLE_PROGRESS_PAGES = 10
SLOW_CYCLE_PROGRESS_SECONDS = 30.0
# Requests a cycle may spend filling in events and series it has only seen by ticker.
REFERENCE_SYNC_BUDGET = 40
EVENTS_PER_REQUEST = 100

SNAPSHOT_COLUMNS = ("market_id", "captured_at", "source", *QUOTE_FIELDS)
# Columns the quote path rewrites on Market, after `id`.
_QUOTE_UPDATE_COLUMNS = (*QUOTE_VALUE_NAMES, "quote_digest", "last_snapshot_at")


@dataclass
class PageStats:
    markets_seen: int = 0
    markets_created: int = 0
    markets_updated: int = 0
    snapshots_written: int = 0
    unchanged_skipped: int = 0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)

    def add(self, other: PageStats) -> None:
        self.markets_seen += other.markets_seen
        self.markets_created += other.markets_created
        self.markets_updated += other.markets_updated
        self.snapshots_written += other.snapshots_written
        self.unchanged_skipped += other.unchanged_skipped
        self.errors += other.errors
        self.error_messages.extend(other.error_messages)


_Known = tuple[int, int | None, int | None, bool]


# --------------------------------------------------------------------------------------------------
# Reference data: series and events
# --------------------------------------------------------------------------------------------------


def ensure_events(event_tickers: Iterable[str]) -> dict[str, int]:
    """Ids of the events with these tickers, creating bare rows for unknown ones."""
    wanted = set(event_tickers)
    if not wanted:
        return {}
    ids = dict(Event.objects.filter(ticker__in=wanted).values_list("ticker", "id"))
    missing = wanted - ids.keys()
    if missing:
        # Markets only name their event; the event's details are filled in by sync_reference_data.
        Event.objects.bulk_create([Event(ticker=t) for t in sorted(missing)], ignore_conflicts=True)
        ids.update(Event.objects.filter(ticker__in=missing).values_list("ticker", "id"))
    return ids


def ensure_series(series_tickers: Iterable[str]) -> dict[str, int]:
    wanted = {t for t in series_tickers if t}
    if not wanted:
        return {}
    ids = dict(Series.objects.filter(ticker__in=wanted).values_list("ticker", "id"))
    missing = wanted - ids.keys()
    if missing:
        Series.objects.bulk_create([Series(ticker=t) for t in sorted(missing)], ignore_conflicts=True)
        ids.update(Series.objects.filter(ticker__in=missing).values_list("ticker", "id"))
    return ids


def apply_series(series: KalshiSeries, *, raw: Any = None) -> Series:
    """Create or update one series from Kalshi's object (fee fields included)."""
    obj, _ = Series.objects.update_or_create(
        ticker=series.ticker,
        defaults={
            "title": series.title[:500],
            "category": series.category[:100],
            "categories": list(series.categories),
            "tags": list(series.tags or []),
            "frequency": series.frequency[:50],
            "fee_type": series.fee_type[:50],
            "fee_multiplier": series.fee_multiplier,
            "contract_url": series.contract_url[:500],
            "contract_terms_url": series.contract_terms_url[:500],
            "settlement_sources": msgspec.to_builtins(series.settlement_sources or []),
            "exchange_index": series.exchange_index,
            "last_updated_ts": series.last_updated_ts,
            "raw": raw if raw is not None else msgspec.to_builtins(series),
            "synced_at": timezone.now(),
        },
    )
    return obj


def apply_event(event: KalshiEvent) -> Event:
    """Create or update one event from Kalshi's object; its series is created bare if unknown."""
    series_id = ensure_series([event.series_ticker]).get(event.series_ticker)
    raw = msgspec.to_builtins(event)
    raw.pop("markets", None)
    obj, _ = Event.objects.update_or_create(
        ticker=event.event_ticker,
        defaults={
            "series_id": series_id,
            "title": event.title[:500],
            "sub_title": event.sub_title[:500],
            "category": event.category[:100],
            "mutually_exclusive": event.mutually_exclusive,
            "collateral_return_type": event.collateral_return_type[:50],
            "strike_date": event.strike_date,
            "strike_period": event.strike_period[:100],
            "fee_type_override": (event.fee_type_override or "")[:50],
            "fee_multiplier_override": event.fee_multiplier_override,
            "exchange_index": event.exchange_index,
            "last_updated_ts": event.last_updated_ts,
            "raw": raw,
            "synced_at": timezone.now(),
        },
    )
    return obj


def sync_reference_data(*, client: KalshiClient, budget: int = REFERENCE_SYNC_BUDGET) -> int:
    """Fill in events and series known only by ticker, spending at most `budget` requests.

    Returns the number of requests made. What does not fit is picked up by the next cycle.
    """
    spent = 0
    pending_events = list(
        Event.objects.filter(synced_at__isnull=True)
        .order_by("id")
        .values_list("ticker", flat=True)[: budget * EVENTS_PER_REQUEST]
    )
    for start in range(0, len(pending_events), EVENTS_PER_REQUEST):
        if spent >= budget:
            break
        batch = pending_events[start : start + EVENTS_PER_REQUEST]
        page = client.get_events_page(event_tickers=batch, limit=200)
        spent += 1
        with transaction.atomic():
            for event in page.events:
                apply_event(event)
            # Events Kalshi does not return (combos, archived) are marked so they are not asked
            # for again every cycle.
            returned = {e.event_ticker for e in page.events}
            Event.objects.filter(ticker__in=set(batch) - returned).update(synced_at=timezone.now())

    pending_series = list(Series.objects.filter(synced_at__isnull=True).values_list("ticker", flat=True))
    if len(pending_series) > budget - spent and spent < budget:
        # Cheaper to read the whole list once (one large response) than thousands of single series.
        all_series, _ = client.get_series_list()
        spent += 1
        with transaction.atomic():
            for series in all_series:
                apply_series(series)
        pending_series = list(Series.objects.filter(synced_at__isnull=True).values_list("ticker", flat=True))
    for ticker in pending_series:
        if spent >= budget:
            break
        spent += 1
        try:
            series = client.get_series(ticker)
        except KalshiError as exc:
            if exc.status_code != 404:
                raise
            Series.objects.filter(ticker=ticker).update(synced_at=timezone.now())
            continue
        apply_series(series)
    return spent


# --------------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------------


RawJson = bytes | msgspec.Raw


def _json_or_none(raw: RawJson | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)


def market_row(km: KalshiMarket, *, event_id: int, raw: RawJson | None) -> Market:
    """An unsaved Market carrying every field of Kalshi's object (and its change digests)."""
    quote = _decode_quote(raw) if raw is not None else None
    return Market(
        ticker=km.ticker,
        event_id=event_id,
        market_type=km.market_type[:20],
        title=km.title[:1000],
        subtitle=km.subtitle[:1000],
        yes_sub_title=km.yes_sub_title[:1000],
        no_sub_title=km.no_sub_title[:1000],
        status=km.status[:20],
        result=km.result[:10],
        settlement_value=km.settlement_value,
        settlement_ts=km.settlement_ts,
        expiration_value=km.expiration_value[:500],
        strike_type=km.strike_type[:30],
        floor_strike=km.floor_strike,
        cap_strike=km.cap_strike,
        functional_strike=(km.functional_strike or "")[:500],
        custom_strike=km.custom_strike,
        created_time=km.created_time,
        open_time=km.open_time,
        close_time=km.close_time,
        expected_expiration_time=km.expected_expiration_time,
        expiration_time=km.expiration_time,
        latest_expiration_time=km.latest_expiration_time,
        occurrence_datetime=km.occurrence_datetime,
        can_close_early=km.can_close_early,
        early_close_condition=km.early_close_condition,
        settlement_timer_seconds=km.settlement_timer_seconds,
        rules_primary=km.rules_primary,
        rules_secondary=km.rules_secondary,
        notional_value=km.notional_value if km.notional_value is not None else Decimal(1),
        price_level_structure=km.price_level_structure[:50],
        price_ranges=[
            {"start": str(r.start), "end": str(r.end), "step": str(r.step)} for r in km.price_ranges
        ],
        exchange_index=km.exchange_index,
        yes_bid=km.yes_bid,
        yes_ask=km.yes_ask,
        no_bid=km.no_bid,
        no_ask=km.no_ask,
        last_price=km.last_price,
        previous_yes_bid=km.previous_yes_bid,
        previous_yes_ask=km.previous_yes_ask,
        previous_price=km.previous_price,
        yes_bid_size=km.yes_bid_size,
        yes_ask_size=km.yes_ask_size,
        volume=km.volume,
        volume_24h=km.volume_24h,
        open_interest=km.open_interest,
        updated_time=km.updated_time,
        raw=_json_or_none(raw),
        quote_digest=quote.quote_digest() if quote else None,
        state_digest=quote.state_digest() if quote else None,
    )


def _decode_quote(raw: RawJson) -> KalshiQuote | None:
    try:
        return msgspec.json.decode(raw, type=KalshiQuote)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


# Fields an upsert overwrites; `first_seen_at` and `ticker` are kept from the first insert.
MARKET_UPSERT_FIELDS = [
    f.name for f in Market._meta.concrete_fields if f.name not in {"id", "ticker", "first_seen_at"}
]


def upsert_markets(rows: Sequence[Market], *, update_fields: Sequence[str] | None = None) -> dict[str, int]:
    """Insert or update markets by ticker (all fields, or `update_fields`); returns their ids."""
    if not rows:
        return {}
    Market.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["ticker"],
        update_fields=list(update_fields or MARKET_UPSERT_FIELDS),
        batch_size=500,
    )
    return dict(Market.objects.filter(ticker__in=[r.ticker for r in rows]).values_list("ticker", "id"))


def record_markets(markets: Sequence[tuple[KalshiMarket, RawJson | None]]) -> dict[str, int]:
    """Upsert full market objects (from events, settlement reads, backfills); returns ticker → id.

    Writes no snapshot: callers with a quote time series store it with `write_snapshots`. The
    poller's change digests are cleared, so the next poll cycle that lists one of these markets
    re-reads it in full and snapshots its quote.
    """
    event_ids = ensure_events(km.event_ticker for km, _ in markets)
    rows = [market_row(km, event_id=event_ids[km.event_ticker], raw=raw) for km, raw in markets]
    for row in rows:
        row.quote_digest = row.state_digest = None
    return upsert_markets(rows, update_fields=[f for f in MARKET_UPSERT_FIELDS if f != "last_snapshot_at"])


@dataclass(slots=True)
class SnapshotRow:
    market_id: int
    captured_at: datetime
    source: str
    # The 10 snapshot values in SNAPSHOT_COLUMNS order: Decimals, or exact decimal strings.
    quote: Sequence[Decimal | str | None]
    raw: RawJson | None = None


def _copy_values(values: Sequence[object]) -> str:
    """Tab-separated COPY text; exact decimal strings pass through untouched."""
    if values and type(values[0]) is str:
        # The poller's rows: usually all strings, joined without a Python call per value.
        try:
            return "\t".join(values)  # type: ignore[arg-type]
        except TypeError:  # a None (or a Decimal) further on
            pass
    return "\t".join(["\\N" if v is None else str(v) for v in values])


def _copy_json(raw: RawJson | None) -> str:
    if raw is None:
        return "\\N"
    # COPY's text format treats backslashes and line breaks as syntax.
    return (
        bytes(raw)
        .decode()
        .replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def write_snapshots(rows: Sequence[SnapshotRow], *, ignore_conflicts: bool = False) -> int:
    """Store snapshot rows; COPY on PostgreSQL. Returns how many were written.

    With `ignore_conflicts` a row whose (market, captured_at, source) is already stored is
    skipped instead of failing the batch: that is how backfills stay idempotent.
    """
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        return _copy_snapshots(rows, ignore_conflicts=ignore_conflicts)
    if connection.vendor == "sqlite":
        return _insert_snapshots_sqlite(rows, ignore_conflicts=ignore_conflicts)
    objs = [
        MarketSnapshot(
            market_id=r.market_id,
            captured_at=r.captured_at,
            source=r.source,
            **dict(
                zip(SNAPSHOT_COLUMNS[3:], (None if v is None else Decimal(v) for v in r.quote), strict=True)
            ),
            raw=_json_or_none(r.raw),
        )
        for r in rows
    ]
    if not ignore_conflicts:
        MarketSnapshot.objects.bulk_create(objs, batch_size=500)
        return len(objs)
    before = MarketSnapshot.objects.filter(market_id__in={r.market_id for r in rows}).count()
    MarketSnapshot.objects.bulk_create(objs, batch_size=500, ignore_conflicts=True)
    return MarketSnapshot.objects.filter(market_id__in={r.market_id for r in rows}).count() - before


# Rows per COPY write: PostgreSQL parses one chunk on the other core while Python formats the
# next, instead of waiting for the whole batch.
COPY_CHUNK_ROWS = 2000


def _copy_lines(rows: Sequence[SnapshotRow], *, with_raw: bool) -> Iterator[str]:
    """The rows as COPY text, in chunks of COPY_CHUNK_ROWS lines."""
    # Formatted here rather than with psycopg's write_row: its per-value adaptation costs about
    # four times as much, and the values are already exact decimal strings or Decimals.
    stamps: dict[datetime, str] = {}
    for start in range(0, len(rows), COPY_CHUNK_ROWS):
        lines = []
        for r in rows[start : start + COPY_CHUNK_ROWS]:
            stamp = stamps.get(r.captured_at)
            if stamp is None:
                stamp = stamps[r.captured_at] = r.captured_at.isoformat()
            line = f"{r.market_id}\t{stamp}\t{r.source}\t{_copy_values(r.quote)}"
            lines.append(line + "\t" + _copy_json(r.raw) if with_raw else line)
        lines.append("")
        yield "\n".join(lines)


def _insert_snapshots_sqlite(rows: Sequence[SnapshotRow], *, ignore_conflicts: bool) -> int:
    """One `executemany` with values adapted the way Django stores them on SQLite.

    `bulk_create` prepares every value of every row through its field (about 15 calls per value),
    which made a first poll cycle of ~90k markets, or a backfill, spend most of its time there.
    """
    ops = connection.ops
    table = MarketSnapshot._meta.db_table
    columns = (*SNAPSHOT_COLUMNS, "raw")
    verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
    sql = f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    stamps: dict[datetime, Any] = {}
    params = []
    for r in rows:
        stamp = stamps.get(r.captured_at)
        if stamp is None:
            stamp = stamps[r.captured_at] = ops.adapt_datetimefield_value(r.captured_at)
        params.append(
            (
                r.market_id,
                stamp,
                r.source,
                *(None if v is None else ops.adapt_decimalfield_value(Decimal(v)) for v in r.quote),
                None if r.raw is None else bytes(r.raw).decode(),
            )
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)
        # sqlite3 sums the rows each statement changed; an ignored duplicate changes none.
        return int(cursor.rowcount)


def _copy_snapshots(rows: Sequence[SnapshotRow], *, ignore_conflicts: bool) -> int:
    table = MarketSnapshot._meta.db_table
    with_raw = any(r.raw is not None for r in rows)
    columns = ", ".join((*SNAPSHOT_COLUMNS, "raw") if with_raw else SNAPSHOT_COLUMNS)
    # The staging table empties at commit, so COPY and INSERT must share one transaction. No
    # savepoint: nothing here recovers from an error, and inside the poller's per-page transaction
    # a savepoint cost two more round trips per page.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        target = table
        if ignore_conflicts:
            # Only the copied columns: a LIKE copy would carry `id` as NOT NULL without its identity.
            # ON COMMIT DELETE ROWS only empties it at commit; a caller may batch in one transaction.
            # (Two statements in one round trip.)
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _ki_snapshot_in ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join((*SNAPSHOT_COLUMNS, 'raw'))} FROM {table} WITH NO DATA; "
                "TRUNCATE _ki_snapshot_in"
            )
            target = "_ki_snapshot_in"
        with cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
            for chunk in _copy_lines(rows, with_raw=with_raw):
                copy.write(chunk)
        if not ignore_conflicts:
            return len(rows)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _ki_snapshot_in ON CONFLICT DO NOTHING"
        )
        return int(cursor.rowcount)


def _update_quotes(
    updates: Sequence[tuple[int, Sequence[str | None], int, datetime]],
    *,
    snapshot_source: str | None = None,
) -> int:
    """Rewrite the latest quote of existing markets: (id, 13 quote strings, digest, snapshot time).

    With `snapshot_source` (PostgreSQL only) each market also gets its snapshot, of that source at
    its snapshot time, written by PostgreSQL from the same staged rows. Returns the number of
    snapshots written.

    `Market.raw` is left as of the last metadata change: rewriting ~2 kB of TOASTed JSON on every
    quote change would multiply the write volume for values the typed columns already hold.
    """
    if not updates:
        return 0
    table = Market._meta.db_table
    assignments = ", ".join(f"{c} = q.{c}" for c in _QUOTE_UPDATE_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _ki_quote_in ("
                "id integer, yes_bid numeric, yes_ask numeric, no_bid numeric, no_ask numeric, "
                "last_price numeric, yes_bid_size numeric, yes_ask_size numeric, volume numeric, "
                "volume_24h numeric, open_interest numeric, previous_yes_bid numeric, "
                "previous_yes_ask numeric, previous_price numeric, quote_digest bigint, "
                "last_snapshot_at timestamptz) ON COMMIT DELETE ROWS; "
                # In the same round trip: a caller may update twice in one transaction.
                "TRUNCATE _ki_quote_in"
            )
            first = updates[0][3]
            stamp = first.isoformat()
            # The poller passes one datetime object for a whole page: `is` spares a comparison.
            lines = [
                f"{market_id}\t{_copy_values(texts)}\t{digest}\t"
                f"{stamp if at is first or at == first else at.isoformat()}"
                for market_id, texts, digest, at in updates
            ]
            lines.append("")
            columns = ", ".join(_QUOTE_UPDATE_COLUMNS)
            with cursor.copy(f"COPY _ki_quote_in (id, {columns}) FROM STDIN") as copy:
                copy.write("\n".join(lines))
            update = f"UPDATE {table} AS m SET {assignments} FROM _ki_quote_in AS q WHERE m.id = q.id"
            if snapshot_source is None:
                cursor.execute(update)
                return 0
            # The staged rows are the snapshots too: a second COPY of the same values, formatted
            # again in Python, cost ~0.05 s CPU per 100k changed markets. One statement (a
            # data-modifying WITH runs exactly once, to completion), so one round trip.
            snapshot_values = ", ".join(SNAPSHOT_COLUMNS[3:])
            cursor.execute(
                f"WITH snapshots AS (INSERT INTO {MarketSnapshot._meta.db_table} "
                f"({', '.join(SNAPSHOT_COLUMNS)}) "
                f"SELECT id, last_snapshot_at, %s, {snapshot_values} FROM _ki_quote_in) {update}",
                [snapshot_source],
            )
            return len(updates)
        else:
            if snapshot_source is not None:
                raise ValueError("snapshot_source is for PostgreSQL only")
            ops = connection.ops
            setters = ", ".join(f"{c} = %s" for c in _QUOTE_UPDATE_COLUMNS)
            # sqlite3 has no Decimal or aware-datetime types: store them as Django would.
            params = [
                (
                    *(None if v is None else ops.adapt_decimalfield_value(Decimal(v)) for v in texts),
                    digest,
                    ops.adapt_datetimefield_value(at),
                    market_id,
                )
                for market_id, texts, digest, at in updates
            ]
            cursor.executemany(f"UPDATE {table} SET {setters} WHERE id = %s", params)
            return 0


def _known_markets(tickers: list[str], *, heartbeat_before: datetime) -> dict[str, _Known]:
    """Change-detection state of the markets on a page, without loading any model.

    Maps ticker → (id, quote digest, state digest, heartbeat due).
    """
    if connection.vendor == "postgresql":
        # One parameter instead of a thousand placeholders: a third of the cost per page. The
        # tickers go as one comma-separated string rather than a list: psycopg adapts a list
        # element by element (a regex per ticker to decide its quoting), which cost 2.5 times
        # this whole query. Kalshi's tickers have no commas; a page where one did falls back.
        joined = ",".join(tickers)
        if joined.count(",") == len(tickers) - 1:
            tickers_sql, param = "string_to_array(%s, ',')", joined
        else:
            tickers_sql, param = "%s", tickers  # type: ignore[assignment]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT ticker, id, quote_digest, state_digest, "
                f"last_snapshot_at IS NULL OR last_snapshot_at <= %s "
                f"FROM {Market._meta.db_table} WHERE ticker = ANY({tickers_sql})",
                [heartbeat_before, param],
            )
            rows = cursor.fetchall()
    else:
        due = Q(last_snapshot_at__isnull=True) | Q(last_snapshot_at__lte=heartbeat_before)
        rows = list(
            Market.objects.filter(ticker__in=tickers)
            .annotate(heartbeat_due=ExpressionWrapper(due, output_field=BooleanField()))
            .values_list("ticker", "id", "quote_digest", "state_digest", "heartbeat_due")
        )
    return {row[0]: row[1:] for row in rows}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while one page is processed.

    A page allocates a few tuples and rows per market that live until the page is written, so the
    collector kept promoting them and every few pages ran a full collection over the whole
    process (Django and all): ~0.1 s CPU per 100k-market cycle spent finding no garbage, since
    what a page allocates holds no reference cycles and is freed by reference counting. The
    collector runs as usual between pages.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def record_page(
    page: MarketsPage,
    *,
    heartbeat: timedelta | None = None,
    store_raw: bool | None = None,
) -> PageStats:
    """Store one page of markets: upserts, quote updates and change-only snapshots."""
    heartbeat = timedelta(seconds=settings.KALSHI_SNAPSHOT_HEARTBEAT) if heartbeat is None else heartbeat
    store_raw = settings.KALSHI_STORE_RAW_SNAPSHOTS if store_raw is None else store_raw
    captured_at = page.received_at
    stats = PageStats(errors=len(page.skipped))
    stats.error_messages.extend(f"{s.ticker}: {s.reason}" for s in page.skipped)

    quotes = {q.ticker: q for q in page.quotes}  # a ticker listed twice counts once
    stats.markets_seen = len(quotes) + len(page.skipped)
    known = _known_markets(list(quotes), heartbeat_before=captured_at - heartbeat)
    # Markets whose quote alone changed get their snapshot from the quote update's staged rows
    # (see `_update_quotes`); raw JSON, and SQLite, take the general path.
    snapshots_in_update = not store_raw and connection.vendor == "postgresql"

    full: list[tuple[KalshiMarket, bool]] = []  # new or changed metadata; write a snapshot?
    quick: list[tuple[int, tuple[str | None, ...], int, datetime]] = []
    snapshots: list[tuple[str, tuple[str | None, ...]]] = []
    for ticker, q in quotes.items():
        k = known.get(ticker)
        digest, state = q.digests()
        due = k is None or k[1] != digest or k[3]
        try:
            if k is None or k[2] != state:
                km = page.market(ticker)
                texts = q.checked_texts()
                full.append((km, due))
                if k is None:
                    stats.markets_created += 1
                else:
                    stats.markets_updated += 1
            elif due:
                texts = q.checked_texts()
                quick.append((k[0], texts, digest, captured_at))
                if snapshots_in_update:
                    continue
            else:
                stats.unchanged_skipped += 1
                continue
        except MalformedPayload as exc:
            logger.warning("Skipping malformed market %s: %s", ticker, exc)
            stats.errors += 1
            stats.error_messages.append(f"{ticker}: {exc}")
            continue
        if due:
            snapshots.append((ticker, texts[:10]))
        else:
            stats.unchanged_skipped += 1

    with transaction.atomic():
        ids = {t: k[0] for t, k in known.items()}
        if full:
            event_ids = ensure_events(km.event_ticker for km, _ in full)
            rows = []
            for km, due in full:
                row = market_row(km, event_id=event_ids[km.event_ticker], raw=page.raw[km.ticker])
                if due:
                    row.last_snapshot_at = captured_at
                rows.append(row)
            # Rows without a new snapshot keep their stored last_snapshot_at.
            ids.update(upsert_markets([r for r in rows if r.last_snapshot_at is not None]))
            ids.update(
                upsert_markets(
                    [r for r in rows if r.last_snapshot_at is None],
                    update_fields=[f for f in MARKET_UPSERT_FIELDS if f != "last_snapshot_at"],
                )
            )
        poll = SnapshotSource.POLL
        written = _update_quotes(quick, snapshot_source=poll if snapshots_in_update else None)
        # Positional arguments: half the cost of keywords for up to 1000 rows a page.
        if store_raw:
            raws = page.raw
            rows_out = [SnapshotRow(ids[t], captured_at, poll, texts, raws[t]) for t, texts in snapshots]
        else:
            rows_out = [SnapshotRow(ids[t], captured_at, poll, texts) for t, texts in snapshots]
        stats.snapshots_written = written + write_snapshots(rows_out)
    return stats


# --------------------------------------------------------------------------------------------------
# The cycle
# --------------------------------------------------------------------------------------------------


def run_poll_cycle(
    *,
    client: KalshiClient,
    trigger: str = "command",
    reference_budget: int = REFERENCE_SYNC_BUDGET,
) -> PollRun:
    """One full poll cycle under the poll lock; returns its PollRun.

    If another cycle holds the lock, nothing is read and the returned run's outcome is `skipped`.
    A KalshiError ends the cycle: the run is saved as failed (pages already stored stay stored)
    and the error is re-raised for the caller to report.
    """
    with locks.exclusive(POLL_LOCK_NAME) as held:
        if held is None:
            now = timezone.now()
            logger.info("Another poll cycle is running; skipping this one.")
            return PollRun.objects.create(
                trigger=trigger, started_at=now, finished_at=now, outcome=PollOutcome.SKIPPED
            )
        first = not PollRun.objects.filter(outcome__in=(PollOutcome.OK, PollOutcome.PARTIAL)).exists()
        run = PollRun.objects.create(trigger=trigger)
        requests_before = client.requests_made
        totals = PageStats()
        if first:
            logger.info(
                "First poll cycle: storing every open market listed by %s (60,000-95,000 on Kalshi, "
                "a few minutes); each page is visible in the web UI as soon as it is stored.",
                client.base_url,
            )
        last_line = time.monotonic()
        try:
            for page in client.iter_markets_pages(status="open", mve_filter="exclude"):
                with _gc_paused():
                    stats = record_page(page)
                totals.add(stats)
                run.pages += 1
                _copy_stats(run, totals, client.requests_made - requests_before)
                # Each page commits on its own and the run's counts with it: readers (the web
                # UI, the admin's poll runs) see the cycle advance instead of waiting for its end.
                run.save(update_fields=[*_STAT_FIELDS, "pages", "requests"])
                held.extend()
                moment = time.monotonic()
                if (first and run.pages % FIRST_CYCLE_PROGRESS_PAGES == 0) or (
                    moment - last_line >= SLOW_CYCLE_PROGRESS_SECONDS
                ):
                    last_line = moment
                    logger.info(
                        "%s: %d markets so far (%d new) in %d pages, %.0fs",
                        "First poll cycle" if first else "Poll cycle still running",
                        run.markets_seen,
                        run.markets_created,
                        run.pages,
                        (timezone.now() - run.started_at).total_seconds(),
                    )
            sync_reference_data(client=client, budget=reference_budget)
        except KalshiError as exc:
            run.outcome = PollOutcome.FAILED
            run.error_messages = [*totals.error_messages[-50:], str(exc)]
            raise
        except BaseException as exc:
            run.outcome = PollOutcome.FAILED
            run.error_messages = [*totals.error_messages[-50:], f"{type(exc).__name__}: {exc}"]
            raise
        else:
            run.outcome = PollOutcome.PARTIAL if totals.errors else PollOutcome.OK
            run.error_messages = totals.error_messages[-50:]
        finally:
            _copy_stats(run, totals, client.requests_made - requests_before)
            run.finished_at = timezone.now()
            _save_finished(run)
        logger.info(
            "Poll cycle: %d pages, %d markets, %d snapshots, %d unchanged, %d errors in %.1fs",
            run.pages,
            run.markets_seen,
            run.snapshots_written,
            run.unchanged_skipped,
            run.errors,
            (run.finished_at - run.started_at).total_seconds(),
        )
        return run


_STAT_FIELDS = [
    "markets_seen",
    "markets_created",
    "markets_updated",
    "snapshots_written",
    "unchanged_skipped",
    "errors",
]


def _copy_stats(run: PollRun, totals: PageStats, requests: int) -> None:
    for name in _STAT_FIELDS:
        setattr(run, name, getattr(totals, name))
    run.requests = requests


def _save_finished(run: PollRun) -> None:
    try:
        run.save()
    except DatabaseError as exc:
        # The database itself is what failed; the caller reports that, once.
        logger.warning("Could not record the end of poll run %s: %s", run.pk, _first_line(exc))
    except Exception:
        logger.exception("Could not record the end of poll run %s", run.pk)


def _first_line(exc: BaseException) -> str:
    # PostgreSQL follows the cause with the failing SQL or its own hints.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def database_problem(exc: DatabaseError) -> str:
    """One line saying what is wrong with the database and which setting to check."""
    detail = _first_line(exc)
    # PostgreSQL says "relation ... does not exist", SQLite "no such table": a fresh database.
    if isinstance(exc, ProgrammingError) or (isinstance(exc, OperationalError) and "no such table" in detail):
        return (
            f"The database at DATABASE_URL has no Kalshi Insights tables yet ({detail}). "
            "Run `python manage.py migrate` first."
        )
    return f"The database is unreachable ({detail}). Check DATABASE_URL and that the server is running."
