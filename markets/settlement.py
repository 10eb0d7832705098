"""The settlement sweep: follow every market from its close to its final, paid-out result.

The poll cycle lists only `status=open`, so a market that closes simply stops appearing there and
would stay "active" in our database forever. Each sweep therefore:

1. lists markets that closed since the previous sweep (`GET /markets?status=closed&min_close_ts=…`;
   Kalshi's `closed` filter covers every status past close that is not yet final, and it also
   catches markets that closed early and left the open listing before their scheduled close);
2. lists markets finalized since the previous sweep (`status=settled&min_settled_ts=…`);
3. re-reads by ticker the stored markets still awaiting a result, and those we still think open
   although their close time has passed, that neither listing returned, falling back to
   `/historical/markets` for ones Kalshi has archived.

What changed is upserted: status, result, `settlement_value` (the YES payout in dollars — 0.38
for a fair-price resolution, not 0/1), settlement time. A result that changes after determination
(a dispute, an amendment) is stored as the latest and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import locks
from .ingest import RawJson, record_markets
from .kalshi import KalshiClient, KalshiError, KalshiMarket, MarketsPage
from .models import HistoryJob, HistoryRun, Market, MarketStatus, PollOutcome, SettlementCheck

logger = logging.getLogger(__name__)

SWEEP_LOCK = "settlement-sweep"
# Each listing window starts this long before the previous sweep began, so a market that
# changed while that sweep ran is not missed.
OVERLAP = timedelta(minutes=15)
TICKERS_PER_REQUEST = 100
# A market Kalshi lists nowhere is asked for again for this long, then left alone.
GIVE_UP_AFTER = timedelta(days=7)
# Statuses after which the result is known (it may still change while disputed or amended).
DETERMINED = frozenset(
    {MarketStatus.DETERMINED, MarketStatus.DISPUTED, MarketStatus.AMENDED, MarketStatus.FINALIZED}
)
KNOWN_RESULTS = frozenset({"yes", "no", "scalar"})


def store_market_objects(markets: Sequence[tuple[KalshiMarket, RawJson]]) -> dict[str, int]:
    """Upsert full market objects read by the sweep or a backfill; returns ticker → id."""
    return record_markets(markets)


def normalise_settlement(market: KalshiMarket) -> KalshiMarket:
    """Fill in the YES payout of a yes/no result when Kalshi's object leaves it out.

    The payout of a yes/no result is fixed by the contract ($1 or $0); a scalar or fair-price
    result is never guessed: it stays empty until Kalshi states `settlement_value_dollars`.
    """
    if market.settlement_value is None and market.status in DETERMINED:
        if market.result == "yes":
            market.settlement_value = Decimal(1)
        elif market.result == "no":
            market.settlement_value = Decimal(0)
    return market


@dataclass
class SweepStats:
    markets: int = 0
    updated: int = 0
    settled: int = 0
    result_changes: int = 0
    missing: int = 0
    errors: int = 0
    messages: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def note(self, message: str) -> None:
        logger.warning("%s", message)
        self.messages.append(message)


@dataclass(slots=True)
class _Stored:
    status: str
    result: str
    settlement_value: Decimal | None
    settlement_ts: datetime | None
    close_time: datetime | None
    updated_time: datetime | None


def apply_markets(markets: Sequence[tuple[KalshiMarket, bytes]], *, stats: SweepStats) -> dict[str, int]:
    """Upsert the markets whose state differs from what is stored; returns ticker → id of those."""
    if not markets:
        return {}
    stored = {
        row[0]: _Stored(*row[1:])
        for row in Market.objects.filter(ticker__in=[km.ticker for km, _ in markets]).values_list(
            "ticker", "status", "result", "settlement_value", "settlement_ts", "close_time", "updated_time"
        )
    }
    changed: list[tuple[KalshiMarket, bytes]] = []
    for km, raw in markets:
        normalise_settlement(km)
        stats.markets += 1
        stats.seen.add(km.ticker)
        old = stored.get(km.ticker)
        new = _Stored(
            km.status, km.result, km.settlement_value, km.settlement_ts, km.close_time, km.updated_time
        )
        if old == new:
            continue
        if old is not None and old.result and km.result != old.result:
            stats.result_changes += 1
            stats.note(
                f"{km.ticker}: result changed from {old.result!r} to {km.result!r} "
                f"(status {old.status} → {km.status}); keeping the latest."
            )
        if km.status == MarketStatus.FINALIZED:
            if old is None or old.status != MarketStatus.FINALIZED:
                stats.settled += 1
            if km.result not in KNOWN_RESULTS:
                stats.note(
                    f"{km.ticker}: finalized with result {km.result!r} (voided?); "
                    f"settlement value {km.settlement_value}."
                )
            elif km.result == "scalar" and km.settlement_value is None:
                stats.note(f"{km.ticker}: finalized as scalar but Kalshi gave no settlement value yet.")
        changed.append((km, raw))
    if not changed:
        return {}
    with transaction.atomic():
        ids = store_market_objects(changed)
    stats.updated += len(changed)
    return ids


def _apply_page(page: MarketsPage, stats: SweepStats) -> set[str]:
    markets = page.full_markets()
    for skipped in page.skipped:
        stats.errors += 1
        stats.messages.append(f"{skipped.ticker}: {skipped.reason}")
    apply_markets([(km, page.raw[km.ticker]) for km in markets], stats=stats)
    return {km.ticker for km in markets}


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reread_candidates(*, now: datetime, exclude: set[str], limit: int) -> list[tuple[int, str]]:
    """(id, ticker) of markets the sweep should read by ticker, least recently checked first."""
    recheck_before = now - timedelta(seconds=settings.KALSHI_SETTLEMENT_RECHECK_INTERVAL)
    qs = (
        Market.objects.filter(
            Q(pk__in=Market.objects.awaiting_settlement().values("pk"))
            | Q(pk__in=Market.objects.overdue(now).values("pk"))
        )
        .filter(Q(settlement_check__isnull=True) | Q(settlement_check__checked_at__lt=recheck_before))
        .exclude(settlement_check__missing_since__lt=now - GIVE_UP_AFTER)
        # Never-checked markets first (PostgreSQL sorts NULL last by default).
        .order_by(F("settlement_check__checked_at").asc(nulls_first=True), "close_time")
        .values_list("pk", "ticker")
    )
    candidates: list[tuple[int, str]] = []
    # Over-fetch a little: some of the oldest may have just been seen in a listing.
    for pk, ticker in qs[: limit + len(exclude)]:
        if ticker not in exclude:
            candidates.append((pk, ticker))
        if len(candidates) >= limit:
            break
    return candidates


def reread_markets(*, client: KalshiClient, candidates: Sequence[tuple[int, str]], stats: SweepStats) -> None:
    """Read markets by ticker (live, then the archive) and apply what changed."""
    now = timezone.now()
    ids = {t: pk for pk, t in candidates}
    for batch in _chunks([t for _, t in candidates], TICKERS_PER_REQUEST):
        found: set[str] = set()
        for page in client.iter_markets_pages(tickers=list(batch), mve_filter=None, limit=1000):
            found |= _apply_page(page, stats)
        missing = [t for t in batch if t not in found]
        if missing:
            for page in client.iter_historical_markets_pages(tickers=missing, limit=1000):
                found |= _apply_page(page, stats)
        missing_since = dict(
            SettlementCheck.objects.filter(market_id__in=[ids[t] for t in batch]).values_list(
                "market_id", "missing_since"
            )
        )
        checks = []
        for ticker in batch:
            market_id = ids[ticker]
            gone_since = None
            if ticker not in found:
                stats.missing += 1
                gone_since = missing_since.get(market_id) or now
                logger.info("%s is listed neither by /markets nor by /historical/markets.", ticker)
            checks.append(SettlementCheck(market_id=market_id, checked_at=now, missing_since=gone_since))
        SettlementCheck.objects.bulk_create(
            checks,
            update_conflicts=True,
            unique_fields=["market"],
            update_fields=["checked_at", "missing_since"],
        )


def sweep_settlements(
    *,
    client: KalshiClient,
    trigger: str = "command",
    lookback: timedelta | None = None,
    reread_limit: int | None = None,
) -> HistoryRun:
    """One settlement sweep under its lock; returns its HistoryRun (outcome `skipped` if locked)."""
    lookback = lookback or timedelta(hours=settings.KALSHI_SETTLEMENT_LOOKBACK_HOURS)
    reread_limit = settings.KALSHI_SETTLEMENT_REREAD_LIMIT if reread_limit is None else reread_limit
    with locks.exclusive(SWEEP_LOCK) as held:
        now = timezone.now()
        if held is None:
            logger.info("Another settlement sweep is running; skipping this one.")
            return HistoryRun.objects.create(
                kind=HistoryJob.SETTLEMENT_SWEEP,
                trigger=trigger,
                started_at=now,
                finished_at=now,
                outcome=PollOutcome.SKIPPED,
            )
        previous = (
            HistoryRun.objects.of_kind(HistoryJob.SETTLEMENT_SWEEP)
            .successful()
            .order_by("-started_at")
            .first()
        )
        since = previous.started_at - OVERLAP if previous else now - lookback
        run = HistoryRun.objects.create(
            kind=HistoryJob.SETTLEMENT_SWEEP,
            trigger=trigger,
            started_at=now,
            params={"since": since.isoformat(), "reread_limit": reread_limit},
        )
        requests_before = client.requests_made
        stats = SweepStats()
        try:
            since_ts = int(since.timestamp())
            for page in client.iter_markets_pages(status="closed", min_close_ts=since_ts):
                _apply_page(page, stats)
                held.extend()
            for page in client.iter_markets_pages(status="settled", min_settled_ts=since_ts):
                _apply_page(page, stats)
                held.extend()
            candidates = reread_candidates(now=now, exclude=stats.seen, limit=reread_limit)
            reread_markets(client=client, candidates=candidates, stats=stats)
        except BaseException as exc:
            run.outcome = PollOutcome.FAILED
            detail = str(exc) if isinstance(exc, KalshiError) else f"{type(exc).__name__}: {exc}"
            stats.messages.append(detail)
            raise
        else:
            run.outcome = PollOutcome.PARTIAL if stats.errors else PollOutcome.OK
        finally:
            run.markets = stats.markets
            run.markets_updated = stats.updated
            run.settled = stats.settled
            run.result_changes = stats.result_changes
            run.errors = stats.errors
            run.requests = client.requests_made - requests_before
            run.error_messages = stats.messages[-50:]
            run.summary = (
                f"{stats.markets} markets read, {stats.updated} updated, {stats.settled} newly settled, "
                f"{stats.result_changes} results changed, {stats.missing} not found"
            )
            run.finished_at = timezone.now()
            _save_quietly(run)
        logger.info("Settlement sweep: %s (%d requests).", run.summary, run.requests)
        return run


def _save_quietly(run: HistoryRun) -> None:
    try:
        run.save()
    except Exception:
        # The database itself may be what failed; the original error matters more.
        logger.exception("Could not record the end of %s run %s", run.kind, run.pk)
