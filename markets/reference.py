"""Keep series and event reference data current, above all the fee fields backtests charge with.

Kalshi sets the trading fee per series (`fee_type`, `fee_multiplier`) and may override it per event
(`fee_type_override`, `fee_multiplier_override`); both change without notice. A refresh reads the
whole series list (one request) and the open events (200 per page) and rewrites only rows whose
object changed, logging every fee change.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from django.db import transaction
from django.utils import timezone

from .ingest import apply_event, apply_series
from .kalshi import KalshiClient, KalshiError
from .models import Event, HistoryJob, HistoryRun, PollOutcome, Series

logger = logging.getLogger(__name__)


def _event_raw(event: Any) -> Any:
    raw = msgspec.to_builtins(event)
    raw.pop("markets", None)
    return raw


def refresh_series(*, client: KalshiClient, events: bool = True, trigger: str = "command") -> HistoryRun:
    """Re-read every series (and the open events) and store what changed; returns the run."""
    run = HistoryRun.objects.create(
        kind=HistoryJob.SERIES_REFRESH, trigger=trigger, params={"events": events}
    )
    requests_before = client.requests_made
    messages: list[str] = []
    read = updated = 0
    try:
        series_list, skipped = client.get_series_list()
        messages.extend(f"series {s.ticker}: {s.reason}" for s in skipped)
        stored = {
            row[0]: row[1:]
            for row in Series.objects.values_list("ticker", "raw", "fee_type", "fee_multiplier")
        }
        with transaction.atomic():
            for series in series_list:
                read += 1
                raw = msgspec.to_builtins(series)
                old = stored.get(series.ticker)
                if old is not None and old[0] == raw:
                    continue
                if (
                    old is not None
                    and old[0] is not None
                    and (old[1], old[2])
                    != (
                        series.fee_type,
                        series.fee_multiplier,
                    )
                ):
                    messages.append(
                        f"series {series.ticker}: fee {old[1] or '?'} x{old[2]} → "
                        f"{series.fee_type} x{series.fee_multiplier}"
                    )
                    logger.warning("Fee of series %s changed: %s", series.ticker, messages[-1])
                apply_series(series, raw=raw)
                updated += 1
        if events:
            for page in client.iter_events_pages(status="open", limit=200):
                messages.extend(f"event {s.ticker}: {s.reason}" for s in page.skipped)
                tickers = [e.event_ticker for e in page.events]
                stored_events = dict(Event.objects.filter(ticker__in=tickers).values_list("ticker", "raw"))
                with transaction.atomic():
                    for event in page.events:
                        read += 1
                        if stored_events.get(event.event_ticker) == _event_raw(event):
                            continue
                        apply_event(event)
                        updated += 1
    except BaseException as exc:
        run.outcome = PollOutcome.FAILED
        messages.append(str(exc) if isinstance(exc, KalshiError) else f"{type(exc).__name__}: {exc}")
        raise
    else:
        run.outcome = PollOutcome.OK
    finally:
        run.markets = 0
        run.markets_updated = updated
        run.requests = client.requests_made - requests_before
        run.error_messages = messages[-50:]
        run.summary = f"{read} series and events read, {updated} updated"
        run.finished_at = timezone.now()
        try:
            run.save()
        except Exception:
            logger.exception("Could not record the end of series refresh %s", run.pk)
    logger.info("Series refresh: %s (%d requests).", run.summary, run.requests)
    return run
