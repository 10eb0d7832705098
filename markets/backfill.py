"""Backfill market history from Kalshi's candlesticks, on both sides of the historical cutoff.

One run:

1. reads `GET /historical/cutoff`. Markets that settled before its `market_settled_ts` (and their
   candles) exist only under `/historical/*`; every other market only under the live endpoints;
2. lists the selected markets (by ticker, event, series and/or status filter) from `/markets` and,
   where the selection can reach archived markets, `/historical/markets`, and upserts them all —
   settled ones with their result and settlement value, so research has outcomes;
3. fetches candles: live markets up to 100 per `GET /markets/candlesticks` request (sized to stay
   under Kalshi's 10,000 candles per response), archived ones per market from
   `/historical/markets/{ticker}/candlesticks`;
4. stores one `MarketSnapshot(source="backfill")` per candle at its end time (`end_period_ts`).

How a candle becomes a snapshot:

* `yes_bid` / `yes_ask`: the closes of the bid and ask OHLC; `no_bid = 1 − yes_ask` and
  `no_ask = 1 − yes_bid`, each only when that close exists.
* `last_price`: the last trade *in the period*; NULL when nothing traded. Kalshi's `previous`
  (the last trade before the period) is not copied forward: a backfilled price is always a trade
  that happened in that period.
* `volume`: polled rows store Kalshi's cumulative `volume_fp`, but a candle's volume is what traded
  *during* its period. Backfilled rows store the cumulative figure too: the running sum of candle
  volumes since the market opened. When a run starts after the open, the volume before it is
  summed from daily candles first (one extra request per batch), so the figure is exact from the
  first stored row. If a candle is unreadable the sum is unknowable and `volume` stays NULL.
* `open_interest`: the candle's (contracts outstanding at the period end).
* `volume_24h`, bid/ask sizes: NULL; candles do not carry them.

Only complete candles are stored (ending at least `SETTLE_MARGIN` before the run started), so no
stored row can later turn out to have been a partial period; and for the last day before the run,
progress only advances to the last candle Kalshi actually returned, so a period it had not
published yet is asked for again by the next run rather than skipped.

Idempotent and resumable: inserts skip (market, time, source) rows already stored, and every batch
commits its rows together with each market's `BackfillProgress` (the span now completely stored and
the cumulative volume at its end). Running the same backfill again makes no candle requests; after
an interruption the next run continues each market where its progress ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from . import locks
from .ingest import EVENTS_PER_REQUEST, SnapshotRow, sync_reference_data, write_snapshots
from .kalshi import (
    MARKET_STATUS_FILTERS,
    MAX_BATCH_CANDLE_TICKERS,
    MAX_BATCH_CANDLES,
    HistoricalCutoff,
    KalshiCandle,
    KalshiClient,
    KalshiError,
    KalshiMarket,
    MarketCandles,
    MarketsPage,
)
from .models import (
    BackfillProgress,
    Event,
    HistoryJob,
    HistoryRun,
    PollOutcome,
    SnapshotSource,
)
from .settlement import normalise_settlement, store_market_objects
from .trades import backfill_trades

logger = logging.getLogger(__name__)

PERIOD_SECONDS = {1: 60, 60: 3_600, 1440: 86_400}
DAY = 1440
BACKFILL_LOCK = "backfill"
TICKERS_PER_LISTING = 100
# Kalshi documents no cap for single-market candle requests; stay well inside the batch one.
SINGLE_REQUEST_CANDLES = 5_000
# A candle is stored only once its period ended this long before the run started.
SETTLE_MARGIN = timedelta(minutes=2)
# Within this window before the run, progress only advances to the last candle Kalshi returned:
# a period it has not published yet is asked for again next time instead of being skipped for good.
RECENT = timedelta(days=1)
ONE = Decimal(1)


class BackfillError(Exception):
    """The backfill cannot start or go on; the message says what went wrong and what to do."""


class ProgressBar(Protocol):
    """What a progress display needs to offer (tqdm does)."""

    total: float | None

    def update(self, n: float | None = 1) -> bool | None: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


class _NoBar:
    total: float | None = None

    def update(self, n: float | None = 1) -> None:
        return None

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which markets to backfill. Filters are Kalshi's: `status` takes filter names (settled, …)."""

    tickers: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    status: str | None = None

    def __post_init__(self) -> None:
        if not (self.tickers or self.events or self.series or self.status):
            raise BackfillError("Choose the markets: give --ticker, --event, --series or --status.")
        if self.tickers and (self.events or self.series or self.status):
            raise BackfillError(
                "--ticker selects markets exactly; do not combine it with --event, --series or --status."
            )
        if self.status is not None and self.status not in MARKET_STATUS_FILTERS:
            hint = {
                "finalized": "settled",
                "active": "open",
                "inactive": "paused",
                "initialized": "unopened",
                "determined": "closed",
            }.get(self.status)
            raise BackfillError(
                f"--status {self.status!r} is not one of Kalshi's status filters "
                f"({', '.join(MARKET_STATUS_FILTERS)})." + (f" Did you mean {hint!r}?" if hint else "")
            )

    def describe(self) -> str:
        parts = [f"ticker {t}" for t in self.tickers]
        parts += [f"event {e}" for e in self.events]
        parts += [f"series {s}" for s in self.series]
        if self.status:
            parts.append(f"status {self.status}")
        return ", ".join(parts)


@dataclass(slots=True)
class Listed:
    market: KalshiMarket
    raw: bytes
    archived: bool  # listed by /historical/markets: its candles are only under /historical


@dataclass
class BackfillStats:
    markets: int = 0
    archived: int = 0
    targets: int = 0
    already_covered: int = 0
    outside_range: int = 0
    candles: int = 0
    snapshots_offered: int = 0
    snapshots_written: int = 0
    trades_written: int = 0
    errors: int = 0
    messages: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        logger.warning("%s", message)
        self.errors += 1
        self.messages.append(message)


@dataclass(slots=True)
class _Target:
    """One market's part of the run, in Unix seconds of candle *end* times."""

    market_id: int
    ticker: str
    event_ticker: str
    archived: bool
    open_ts: int | None
    close_ts: int | None
    store_from: int  # first candle end stored
    fetch_from: int  # first candle end fetched; earlier than store_from while summing volume
    until: int  # last candle end fetched and stored
    covered_from: int  # what BackfillProgress says once this target's candles are stored
    volume: Decimal | None  # cumulative volume before fetch_from; None = not known (yet)
    needs_prefix: bool
    progress: BackfillProgress | None
    failed: bool = False


@dataclass(slots=True)
class _Chunk:
    target: _Target
    lo: int
    hi: int


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def parse_when(value: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or datetime as an aware UTC datetime; raises ValueError with an example.

    A bare date means its midnight (UTC); with `end_of_day` it means the end of that day, so
    `--since 2026-08-01 --until 2026-08-01` covers the whole of 1 August.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end_of_day else day
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO date or date-time (e.g. 2026-08-01 or 2026-08-01T12:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# Choosing markets
# --------------------------------------------------------------------------------------------------


def read_cutoff(client: KalshiClient) -> HistoricalCutoff:
    try:
        return client.get_historical_cutoff()
    except KalshiError as exc:
        raise BackfillError(
            f"Could not read Kalshi's historical cutoff, which decides whether a market's history is "
            f"under /markets or /historical: {exc} Nothing was written; try again later."
        ) from exc


def select_markets(
    *,
    client: KalshiClient,
    selection: Selection,
    since: datetime | None,
    cutoff: HistoricalCutoff,
) -> tuple[list[Listed], list[str]]:
    """The selected markets from the live and archived listings, and notes for the user."""
    found: dict[str, Listed] = {}
    notes: list[str] = []

    def take(pages: Iterable[MarketsPage], archived: bool) -> int:
        count = 0
        for page in pages:
            for km in page.full_markets():
                # A market archived while we listed appears in both; the archive is then right.
                if archived or km.ticker not in found:
                    found[km.ticker] = Listed(normalise_settlement(km), page.raw[km.ticker], archived)
                count += 1
            for skipped in page.skipped:
                notes.append(f"Skipped malformed market {skipped.ticker}: {skipped.reason}")
        return count

    if selection.tickers:
        wanted = list(dict.fromkeys(selection.tickers))
        for batch in _chunks(wanted, TICKERS_PER_LISTING):
            take(client.iter_markets_pages(tickers=list(batch), mve_filter=None, limit=1000), False)
        missing = [t for t in wanted if t not in found]
        for batch in _chunks(missing, TICKERS_PER_LISTING):
            take(client.iter_historical_markets_pages(tickers=list(batch), limit=1000), True)
        unknown = [t for t in wanted if t not in found]
        if unknown:
            raise BackfillError(
                f"Kalshi has no market {', '.join(unknown)}: neither GET /markets nor "
                "GET /historical/markets lists it. Check the ticker (market tickers look like "
                "KXU3-26JUN-T4.8); nothing was written."
            )
        return list(found.values()), notes

    status = selection.status
    time_filter: dict[str, Any] = {}
    if since is not None and status == "settled":
        time_filter["min_settled_ts"] = _unix(since)
    elif since is not None and status == "closed":
        time_filter["min_close_ts"] = _unix(since)
    # Archived markets all settled before the cutoff; a range starting after it cannot reach them.
    archive_reachable = status in (None, "settled") and (
        since is None or since < cutoff.market_settled_ts + timedelta(days=1)
    )
    scopes = [("event_ticker", e) for e in selection.events] + [
        ("series_ticker", s) for s in selection.series
    ]
    for key, value in scopes:
        live = take(
            client.iter_markets_pages(
                **{key: value}, status=status, mve_filter=None, limit=1000, **time_filter
            ),
            False,
        )
        archived = 0
        if archive_reachable:
            archived = take(client.iter_historical_markets_pages(**{key: value}, limit=1000), True)
        if live + archived == 0 and status is None:
            what = "event" if key == "event_ticker" else "series"
            raise BackfillError(
                f"Kalshi lists no markets for {what} {value!r}, live or archived. Check the {what} ticker; "
                "nothing was written."
            )
    if not scopes:
        take(client.iter_markets_pages(status=status, mve_filter="exclude", limit=1000, **time_filter), False)
        if archive_reachable and status == "settled":
            notes.append(
                f"Markets settled before the historical cutoff ({cutoff.market_settled_ts:%Y-%m-%d}) "
                "are listed by Kalshi's archive only per event or series: add --series or --event to "
                "include them."
            )
    return list(found.values()), notes


def link_events(client: KalshiClient, listed: Sequence[Listed], stats: BackfillStats) -> None:
    """Fill in the events (and series) of the stored markets that are known only by ticker.

    Markets name only their event; without the event's series a backtest of these markets would
    neither find them by series nor charge the series' fees. A failure here costs only that: the
    poller's next cycle fills the rest in.
    """
    events = {item.market.event_ticker for item in listed}
    pending = Event.objects.filter(ticker__in=events, synced_at__isnull=True).count()
    if not pending:
        return
    try:
        sync_reference_data(client=client, budget=2 + -(-pending // EVENTS_PER_REQUEST))
    except KalshiError as exc:
        stats.note(f"Could not read the details of {pending} events: {exc} The poller fills them in later.")


def store_markets(listed: Sequence[Listed]) -> dict[str, int]:
    """Upsert the listed markets (metadata, state, result and settlement value); ticker → id."""
    ids: dict[str, int] = {}
    for start in range(0, len(listed), 500):
        batch = listed[start : start + 500]
        with transaction.atomic():
            ids.update(store_market_objects([(item.market, item.raw) for item in batch]))
    return ids


# --------------------------------------------------------------------------------------------------
# Planning requests
# --------------------------------------------------------------------------------------------------


def plan_targets(
    listed: Sequence[Listed],
    ids: dict[str, int],
    *,
    since: datetime | None,
    until: datetime | None,
    period: int,
    now: datetime,
    stats: BackfillStats,
) -> list[_Target]:
    """Each market's span of candles still to fetch, after what is already stored."""
    step = PERIOD_SECONDS[period]
    kind = str(period)
    progress = {
        p.market_id: p for p in BackfillProgress.objects.filter(market_id__in=ids.values(), kind=kind)
    }
    latest_complete = _unix(now - SETTLE_MARGIN)
    targets: list[_Target] = []
    for item in listed:
        km = item.market
        open_ts = _unix(km.open_time) if km.open_time else None
        lo = _unix(since) if since else open_ts
        if lo is None:
            stats.note(f"{km.ticker}: Kalshi gives no open time; pass --since to backfill it.")
            continue
        if open_ts is not None:
            lo = max(lo, open_ts)
        hi = min(_unix(until) if until else latest_complete, latest_complete)
        if km.close_time is not None:
            # Nothing trades after the close; the candle containing it ends within one period.
            hi = min(hi, _unix(km.close_time) + step)
        if lo > hi:
            stats.outside_range += 1
            continue
        market_id = ids[km.ticker]
        p = progress.get(market_id)
        p_from = _unix(p.covered_from) if p else None
        p_until = _unix(p.covered_until) if p else None
        if p_from is not None and p_until is not None and p_from <= lo and p_until >= hi:
            stats.already_covered += 1
            continue
        volume: Decimal | None
        if p is not None and p_from is not None and p_until is not None and p_from <= lo <= p_until:
            # Continue where the stored span ends, with its running volume.
            start, covered_from = p_until + 1, p_from
            volume = p.volume_at_until
        else:
            start, covered_from = lo, lo
            volume = Decimal(0) if open_ts is not None and lo <= open_ts else None
        targets.append(
            _Target(
                market_id=market_id,
                ticker=km.ticker,
                event_ticker=km.event_ticker,
                archived=item.archived,
                open_ts=open_ts,
                close_ts=_unix(km.close_time) if km.close_time else None,
                store_from=start,
                fetch_from=start,
                until=hi,
                covered_from=covered_from,
                volume=volume,
                needs_prefix=volume is None and open_ts is not None,
                progress=p,
            )
        )
    return targets


def _candles_between(lo: int, hi: int, step: int) -> int:
    # One more than the aligned count: Kalshi's days end at midnight ET, so a DST change makes
    # one day 23 hours long and a window can hold an extra candle.
    return max(0, (hi - lo) // step + 2)


def split_chunks(target: _Target, lo: int, hi: int, step: int) -> list[_Chunk]:
    cap = SINGLE_REQUEST_CANDLES if target.archived else MAX_BATCH_CANDLES
    width = max(1, cap - 1) * step
    return [_Chunk(target, start, min(hi, start + width - 1)) for start in range(lo, hi + 1, width)]


def group_live(chunks: Sequence[_Chunk], step: int) -> list[list[_Chunk]]:
    """Pack live chunks into batch requests: ≤100 markets and ≤10,000 candles per response.

    Sorted by start time, so each market's chunks are fetched in time order (the running volume
    depends on it) and markets with similar spans share a request.
    """
    groups: list[list[_Chunk]] = []
    current: list[_Chunk] = []
    lo = hi = 0
    for chunk in sorted(chunks, key=lambda c: (c.lo, c.target.ticker)):
        if current:
            new_lo, new_hi = min(lo, chunk.lo), max(hi, chunk.hi)
            size = len(current) + 1
            fits = (
                size <= MAX_BATCH_CANDLE_TICKERS
                and size * _candles_between(new_lo, new_hi, step) <= MAX_BATCH_CANDLES
                and all(c.target is not chunk.target for c in current)
            )
            if fits:
                current.append(chunk)
                lo, hi = new_lo, new_hi
                continue
            groups.append(current)
        current, lo, hi = [chunk], chunk.lo, chunk.hi
    if current:
        groups.append(current)
    return groups


# --------------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------------


class _Fetcher:
    """Issues candle requests for groups of chunks and hands back each chunk's candles."""

    def __init__(
        self, client: KalshiClient, period: int, stats: BackfillStats, bar: ProgressBar, *, now: datetime
    ) -> None:
        self.client = client
        self.period = period
        self.stats = stats
        self.bar = bar
        self.now = now
        self._series: dict[str, str] = {}

    def requests(self, chunks: Sequence[_Chunk]) -> list[list[_Chunk]]:
        """The chunks in request order: live ones batched, archived ones one per request."""
        step = PERIOD_SECONDS[self.period]
        live = [c for c in chunks if not c.target.archived]
        archived = [[c] for c in sorted(chunks, key=lambda c: c.lo) if c.target.archived]
        return group_live(live, step) + archived

    def fetch(self, group: Sequence[_Chunk]) -> list[tuple[_Chunk, MarketCandles]]:
        try:
            if group[0].target.archived:
                chunk = group[0]
                candles = self.client.get_historical_market_candlesticks(
                    chunk.target.ticker, start_ts=chunk.lo, end_ts=chunk.hi, period_interval=self.period
                )
                return [(chunk, candles)]
            by_ticker = self.client.get_markets_candlesticks(
                [c.target.ticker for c in group],
                start_ts=min(c.lo for c in group),
                end_ts=max(c.hi for c in group),
                period_interval=self.period,
            )
            if sum(len(m.candles) + len(m.skipped) for m in by_ticker.values()) >= MAX_BATCH_CANDLES:
                # Requests are sized below the cap, so this means Kalshi changed it.
                self.stats.note(
                    f"A candle response for {', '.join(by_ticker)} reached Kalshi's cap of "
                    f"{MAX_BATCH_CANDLES} candles and may be cut short; please report this."
                )
            return [(c, by_ticker[c.target.ticker]) for c in group]
        except KalshiError as exc:
            if exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500:
                raise
            # A 4xx for the whole request: find the market(s) it is about one at a time.
            logger.info("Candle request failed (%s); retrying its markets one by one.", exc)
            return [(c, self._fetch_single(c)) for c in group]
        finally:
            self.bar.update(1)

    def _fetch_single(self, chunk: _Chunk) -> MarketCandles:
        target = chunk.target
        window: dict[str, Any] = {"start_ts": chunk.lo, "end_ts": chunk.hi, "period_interval": self.period}
        empty = MarketCandles(ticker=target.ticker, candles=[], skipped=[])
        try:
            if not target.archived:
                try:
                    return self.client.get_market_candlesticks(
                        self._series_of(target), target.ticker, **window
                    )
                except KalshiError as exc:
                    if exc.status_code != 404:
                        raise
                # Archived since it was listed: the cutoff moved during the run.
            return self.client.get_historical_market_candlesticks(target.ticker, **window)
        except KalshiError as exc:
            if exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500:
                raise
            target.failed = True
            self.stats.note(
                f"{target.ticker}: Kalshi refused its candles (HTTP {exc.status_code}): {exc} "
                "Its other history was kept; check the ticker."
            )
            return empty

    def _series_of(self, target: _Target) -> str:
        if target.event_ticker not in self._series:
            series = (
                Event.objects.filter(ticker=target.event_ticker, series__isnull=False)
                .values_list("series__ticker", flat=True)
                .first()
            )
            if series is None:
                series = self.client.get_event(target.event_ticker, with_nested_markets=False).series_ticker
            self._series[target.event_ticker] = series
        return self._series[target.event_ticker]


def resolve_prefixes(fetcher: _Fetcher, targets: Sequence[_Target]) -> None:
    """Find the volume traded before each target's first candle, from daily candles.

    Daily candles from the open up to the last day boundary D before the first wanted candle give
    the volume through D; the main fetch then starts just after D (at most one extra day of
    candles, summed but not stored), so the running total is exact from the first stored row.
    """
    needing = [t for t in targets if t.needs_prefix and t.open_ts is not None and t.fetch_from > t.open_ts]
    if not needing:
        return
    if fetcher.period == DAY:
        for t in needing:
            t.fetch_from, t.volume = t.open_ts or t.fetch_from, Decimal(0)
        return
    daily = _Fetcher(fetcher.client, DAY, fetcher.stats, fetcher.bar, now=fetcher.now)
    sums: dict[int, Decimal | None] = {id(t): Decimal(0) for t in needing}
    last_end: dict[int, int] = {}
    for group in daily.requests(_prefix_chunks(needing)):
        for chunk, result in daily.fetch(group):
            key = id(chunk.target)
            if result.skipped:
                sums[key] = None
            for candle in result.candles:
                if not chunk.lo <= candle.end_ts <= chunk.hi:
                    continue
                total = sums[key]
                sums[key] = None if total is None or candle.volume is None else total + candle.volume
                last_end[key] = max(last_end.get(key, 0), candle.end_ts)
    for t in needing:
        volume = sums[id(t)]
        if volume is None or t.failed:
            continue  # stays unknown: rows get volume NULL rather than a wrong figure
        t.volume = volume
        t.fetch_from = last_end[id(t)] + 1 if id(t) in last_end else (t.open_ts or t.fetch_from)


# --------------------------------------------------------------------------------------------------
# Storing
# --------------------------------------------------------------------------------------------------


def snapshot_quote(candle: KalshiCandle, volume: Decimal | None) -> tuple[Decimal | None, ...]:
    """A candle as a quote tuple in MarketSnapshot's column order (see ingest.SNAPSHOT_COLUMNS)."""
    yes_bid = candle.yes_bid.close
    yes_ask = candle.yes_ask.close
    return (
        yes_bid,
        yes_ask,
        None if yes_ask is None else ONE - yes_ask,
        None if yes_bid is None else ONE - yes_bid,
        candle.price.close,  # None when nothing traded in the period
        None,
        None,
        volume,
        None,
        candle.open_interest,
    )


def _rows_for(chunk: _Chunk, result: MarketCandles, stats: BackfillStats) -> list[SnapshotRow]:
    target = chunk.target
    if result.skipped:
        target.volume = None
        for skipped in result.skipped:
            stats.note(
                f"{target.ticker}: skipped an unreadable candle ({skipped.reason}); volume unknown after it."
            )
    rows: list[SnapshotRow] = []
    for candle in result.candles:
        end = candle.end_ts
        if not chunk.lo <= end <= chunk.hi:
            continue  # another market's span in a shared batch window, or outside what was asked
        stats.candles += 1
        if target.volume is not None:
            target.volume = None if candle.volume is None else target.volume + candle.volume
        if end < target.store_from:
            continue
        rows.append(
            SnapshotRow(
                market_id=target.market_id,
                captured_at=candle.end,
                source=SnapshotSource.BACKFILL,
                quote=snapshot_quote(candle, target.volume),
            )
        )
    return rows


def _save_progress(target: _Target, through: int, period: int) -> None:
    if through < target.store_from:
        return  # only the volume prefix has been read so far
    step = PERIOD_SECONDS[period]
    start, end = target.covered_from, through
    volume: Decimal | None = target.volume
    p = target.progress
    if p is not None:
        p_from, p_until = _unix(p.covered_from), _unix(p.covered_until)
        # Merge with the stored span when the two touch; otherwise the new span replaces it
        # (the rows of the old one stay stored, a later rerun merely asks for them again).
        if p_from <= end + step and p_until >= start - step:
            start = min(start, p_from)
            if p_until > end:
                end, volume = p_until, p.volume_at_until
    target.progress, _ = BackfillProgress.objects.update_or_create(
        market_id=target.market_id,
        kind=str(period),
        defaults={"covered_from": _at(start), "covered_until": _at(end), "volume_at_until": volume},
    )


def fetch_and_store(
    fetcher: _Fetcher, targets: Sequence[_Target], *, on_batch: Callable[[], None] | None = None
) -> None:
    for group in fetcher.requests(_main_chunks(targets, fetcher.period)):
        live = [c for c in group if not c.target.failed]
        if not live:
            continue
        results = fetcher.fetch(live)
        rows: list[SnapshotRow] = []
        for chunk, result in results:
            if not chunk.target.failed:
                rows.extend(_rows_for(chunk, result, fetcher.stats))
        recent = _unix(fetcher.now - RECENT)
        with transaction.atomic():
            written = write_snapshots(rows, ignore_conflicts=True)
            for chunk, result in results:
                if chunk.target.failed:
                    continue
                through: int | None = chunk.hi
                if chunk.hi > recent:
                    ends = [c.end_ts for c in result.candles if chunk.lo <= c.end_ts <= chunk.hi]
                    through = max(ends, default=None)
                    close = chunk.target.close_ts
                    if through is not None and close is not None and through >= close:
                        # The candle holding the close came back: nothing later will.
                        through = chunk.hi
                if through is not None:
                    _save_progress(chunk.target, through, fetcher.period)
        fetcher.stats.snapshots_offered += len(rows)
        fetcher.stats.snapshots_written += written
        if on_batch is not None:
            on_batch()


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run_backfill(
    *,
    client: KalshiClient,
    selection: Selection,
    since: datetime | None = None,
    until: datetime | None = None,
    period: int = 60,
    trades: bool = False,
    candles: bool = True,
    trigger: str = "command",
    progress_bar: Callable[[int, str], ProgressBar] | None = None,
) -> HistoryRun:
    """Backfill the selected markets; returns the HistoryRun (outcome `skipped` if one is running).

    Raises BackfillError for bad input or an unreadable cutoff (nothing written), and re-raises a
    KalshiError that ends the run midway (what was stored stays stored; rerun to continue).
    """
    if period not in PERIOD_SECONDS:
        raise BackfillError(f"--period must be 1, 60 or 1440 (minutes), not {period}.")
    now = timezone.now()
    if (since is not None and since.tzinfo is None) or (until is not None and until.tzinfo is None):
        raise BackfillError("since/until must be timezone-aware (UTC).")
    if since is not None and since >= now:
        raise BackfillError(f"--since {since:%Y-%m-%d %H:%M}Z is in the future.")
    if since is not None and until is not None and until <= since:
        raise BackfillError("--until must be after --since.")
    params = {
        "selection": selection.describe(),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "period": period,
        "trades": trades,
        "candles": candles,
    }
    with locks.exclusive(BACKFILL_LOCK) as held:
        if held is None:
            return HistoryRun.objects.create(
                kind=HistoryJob.BACKFILL,
                trigger=trigger,
                params=params,
                started_at=now,
                finished_at=now,
                outcome=PollOutcome.SKIPPED,
                summary="Another backfill is running; this one did nothing.",
            )
        run = HistoryRun.objects.create(
            kind=HistoryJob.BACKFILL, trigger=trigger, params=params, started_at=now
        )
        stats = BackfillStats()
        requests_before = client.requests_made
        bar: ProgressBar = _NoBar()
        try:
            cutoff = read_cutoff(client)
            listed, notes = select_markets(client=client, selection=selection, since=since, cutoff=cutoff)
            for note in notes:
                logger.info("%s", note)
            stats.messages.extend(notes)
            stats.markets = len(listed)
            stats.archived = sum(item.archived for item in listed)
            ids = store_markets(listed)
            link_events(client, listed, stats)
            held.extend()
            if candles:
                targets = plan_targets(
                    listed, ids, since=since, until=until, period=period, now=now, stats=stats
                )
                stats.targets = len(targets)
                what = f"{_PERIOD_NAMES[period]} candles"
                prefix_requests = _prefix_requests(targets, period)
                if progress_bar is not None and prefix_requests:
                    bar = progress_bar(prefix_requests, what)
                fetcher = _Fetcher(client, period, stats, bar, now=now)
                resolve_prefixes(fetcher, targets)
                # Only now is each market's first request known (the volume prefix may move it).
                main_requests = len(fetcher.requests(_main_chunks(targets, period)))
                if progress_bar is not None and main_requests:
                    if prefix_requests:
                        bar.total = prefix_requests + main_requests
                        bar.refresh()
                    else:
                        bar = fetcher.bar = progress_bar(main_requests, what)
                fetch_and_store(fetcher, targets, on_batch=held.extend)
            if trades:
                _backfill_trades(
                    client,
                    listed,
                    ids,
                    since=since,
                    until=until,
                    now=now,
                    cutoff=cutoff,
                    stats=stats,
                    on_page=held.extend,
                )
                held.extend()
        except BaseException as exc:
            run.outcome = PollOutcome.FAILED
            stats.messages.append(str(exc) if isinstance(exc, KalshiError | BackfillError) else repr(exc))
            raise
        else:
            run.outcome = PollOutcome.PARTIAL if stats.errors else PollOutcome.OK
        finally:
            bar.close()
            _finish(
                run,
                stats,
                client.requests_made - requests_before,
                period=period,
                candles=candles,
                trades=trades,
            )
        return run


_PERIOD_NAMES = {1: "1-minute", 60: "hourly", 1440: "daily"}


def _main_chunks(targets: Sequence[_Target], period: int) -> list[_Chunk]:
    step = PERIOD_SECONDS[period]
    return [c for t in targets for c in split_chunks(t, t.fetch_from, t.until, step)]


def _prefix_chunks(targets: Sequence[_Target]) -> list[_Chunk]:
    needing = [t for t in targets if t.needs_prefix and t.open_ts is not None and t.fetch_from > t.open_ts]
    return [
        c
        for t in needing
        for c in split_chunks(t, t.open_ts or t.fetch_from, t.fetch_from - 1, PERIOD_SECONDS[DAY])
    ]


def _prefix_requests(targets: Sequence[_Target], period: int) -> int:
    if period == DAY:
        return 0
    chunks = _prefix_chunks(targets)
    step = PERIOD_SECONDS[DAY]
    return len(group_live([c for c in chunks if not c.target.archived], step)) + sum(
        1 for c in chunks if c.target.archived
    )


def _backfill_trades(
    client: KalshiClient,
    listed: Sequence[Listed],
    ids: dict[str, int],
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    cutoff: HistoricalCutoff,
    stats: BackfillStats,
    on_page: Callable[[], None],
) -> None:
    for item in listed:
        km = item.market
        start = since or km.open_time
        end = min(until or now, now - SETTLE_MARGIN)
        if km.close_time is not None:
            end = min(end, km.close_time)
        if start is None or start > end:
            continue
        result = backfill_trades(
            client=client,
            market_id=ids[km.ticker],
            ticker=km.ticker,
            since=start,
            until=end,
            cutoff=cutoff,
            on_page=on_page,
        )
        stats.trades_written += result.written
        for message in result.messages:
            stats.note(message)


def _finish(
    run: HistoryRun, stats: BackfillStats, requests: int, *, period: int, candles: bool, trades: bool
) -> None:
    run.markets = stats.markets
    run.snapshots_written = stats.snapshots_written
    run.trades_written = stats.trades_written
    run.requests = requests
    run.errors = stats.errors
    run.error_messages = stats.messages[-50:]
    run.summary = summarize(stats, period=period, candles=candles, trades=trades)
    run.finished_at = timezone.now()
    try:
        run.save()
    except Exception:
        # The database itself may be what failed; the original error matters more than this one.
        logger.exception("Could not record the end of backfill run %s", run.pk)
    if run.outcome == PollOutcome.FAILED:
        reason = stats.messages[-1] if stats.messages else "unknown error"
        logger.warning("Backfill stopped after %d requests: %s", requests, reason)
    else:
        logger.info("Backfill: %s (%d requests).", run.summary, requests)


def summarize(stats: BackfillStats, *, period: int, candles: bool, trades: bool) -> str:
    archived = f" ({stats.archived} from Kalshi's archive)" if stats.archived else ""
    parts = [f"{stats.markets} markets{archived}"]
    if candles:
        already = stats.snapshots_offered - stats.snapshots_written
        parts.append(
            f"{stats.candles} {_PERIOD_NAMES[period]} candles read, "
            f"{stats.snapshots_written} snapshots written"
            + (f" ({already} already stored)" if already else "")
        )
        if stats.already_covered:
            parts.append(f"{stats.already_covered} markets already backfilled for this range")
        if stats.outside_range:
            parts.append(f"{stats.outside_range} markets not open in the range")
        if stats.markets and not stats.candles and not stats.already_covered:
            parts.append("no candles in the requested range")
    if trades:
        parts.append(f"{stats.trades_written} trades written")
    if stats.errors:
        parts.append(f"{stats.errors} problems (see the run's messages)")
    return "; ".join(parts)
