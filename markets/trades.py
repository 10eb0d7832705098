"""The public trade tape: Kalshi's trades for chosen markets, stored once each by trade id.

Trades created before the historical cutoff's `trades_created_ts` are served only by
`/historical/trades`, later ones only by `/markets/trades`; `backfill_trades` asks each side for
its part of the requested span. Every page is committed on its own and inserts skip trade ids
already stored, so an interrupted run loses nothing and a rerun only adds what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from .kalshi import HistoricalCutoff, KalshiClient, KalshiTrade, TradesPage
from .models import BackfillKind, BackfillProgress, Trade

logger = logging.getLogger(__name__)

_COLUMNS = (
    "trade_id",
    "market_id",
    "created_time",
    "yes_price",
    "no_price",
    "count",
    "taker_outcome_side",
    "taker_book_side",
    "is_block_trade",
)


@dataclass
class TradeStats:
    seen: int = 0
    written: int = 0
    skipped: int = 0
    pages: int = 0
    messages: list[str] = field(default_factory=list)


def _row(trade: KalshiTrade, market_id: int) -> tuple[object, ...] | None:
    if trade.yes_price is None or trade.count is None:
        return None
    no_price = trade.no_price if trade.no_price is not None else Decimal(1) - trade.yes_price
    # Trades recorded before `taker_outcome_side` existed carry the same bit as `taker_side`.
    outcome = trade.taker_outcome_side or trade.taker_side
    return (
        trade.trade_id,
        market_id,
        trade.created_time,
        trade.yes_price,
        no_price,
        trade.count,
        outcome if outcome in ("yes", "no") else "",
        trade.taker_book_side if trade.taker_book_side in ("bid", "ask") else "",
        trade.is_block_trade,
    )


def record_trades(trades: Sequence[KalshiTrade], *, market_id: int) -> tuple[int, int]:
    """Store one market's trades, skipping trade ids already stored; returns (written, unusable)."""
    rows = [r for r in (_row(t, market_id) for t in trades) if r is not None]
    unusable = len(trades) - len(rows)
    if not rows:
        return 0, unusable
    table = Trade._meta.db_table
    columns = ", ".join(_COLUMNS)
    if connection.vendor == "postgresql":
        # The staging table empties at commit, so COPY and INSERT must share one transaction.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _ki_trade_in ON COMMIT DELETE ROWS AS "
                f"SELECT {columns} FROM {table} WITH NO DATA"
            )
            cursor.execute("TRUNCATE _ki_trade_in")
            with cursor.copy(f"COPY _ki_trade_in ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _ki_trade_in "
                "ON CONFLICT (trade_id) DO NOTHING"
            )
            return int(cursor.rowcount), unusable
    before = Trade.objects.filter(market_id=market_id).count()
    Trade.objects.bulk_create(
        [Trade(**dict(zip(_COLUMNS, row, strict=True))) for row in rows],
        ignore_conflicts=True,
        batch_size=500,
    )
    return Trade.objects.filter(market_id=market_id).count() - before, unusable


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def backfill_trades(
    *,
    client: KalshiClient,
    market_id: int,
    ticker: str,
    since: datetime,
    until: datetime,
    cutoff: HistoricalCutoff,
    on_page: Callable[[], None] | None = None,
) -> TradeStats:
    """Store the trades of one market created in [since, until], from both sides of the cutoff.

    A span already recorded as complete (BackfillProgress, kind "trades") is not asked for again.
    """
    stats = TradeStats()
    progress = BackfillProgress.objects.filter(market_id=market_id, kind=BackfillKind.TRADES).first()
    if progress is not None and progress.covered_from <= since and progress.covered_until >= until:
        return stats
    span_start = since
    if progress is not None and progress.covered_from <= since <= progress.covered_until:
        since = progress.covered_until  # continue after what a previous run stored completely

    boundary = cutoff.trades_created_ts
    # Kalshi's min_ts/max_ts are "after"/"before": widen each by a second so trades exactly on a
    # bound (or on the cutoff) are not lost between the two endpoints; ids make overlaps harmless.
    sources: list[Iterator[TradesPage]] = []
    if since < boundary:
        sources.append(
            client.iter_historical_trades_pages(
                ticker=ticker, min_ts=_unix(since) - 1, max_ts=_unix(min(until, boundary)) + 1
            )
        )
    if until >= boundary:
        sources.append(
            client.iter_trades_pages(
                ticker=ticker, min_ts=_unix(max(since, boundary)) - 1, max_ts=_unix(until) + 1
            )
        )
    for pages in sources:
        for page in pages:
            stats.pages += 1
            # Kalshi filters by ticker already; this guards against a stray row on a shared page.
            trades = [t for t in page.trades if t.ticker == ticker]
            stats.seen += len(trades)
            with transaction.atomic():
                written, unusable = record_trades(trades, market_id=market_id)
            stats.written += written
            stats.skipped += unusable + len(page.skipped)
            stats.messages.extend(f"trade {s.ticker}: {s.reason}" for s in page.skipped)
            if on_page is not None:
                on_page()

    # Only a finished span is recorded: a page cursor cannot be resumed, so an interrupted span
    # is asked for again and the stored trades are skipped by id.
    start, end = span_start, until
    if progress is not None and progress.covered_from <= end and progress.covered_until >= start:
        start, end = min(start, progress.covered_from), max(end, progress.covered_until)
    BackfillProgress.objects.update_or_create(
        market_id=market_id,
        kind=BackfillKind.TRADES,
        defaults={"covered_from": start, "covered_until": end, "volume_at_until": None},
    )
    logger.debug("Trades of %s: %d seen, %d new", ticker, stats.seen, stats.written)
    return stats
