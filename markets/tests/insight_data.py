"""Hand-made markets whose calibration and movers are known exactly, for the insights tests.

`calibration_set()` stores, in series KXCAL (category "Economics") unless noted, closing at CLOSE:

* 10 markets quoted 0.69/0.71 (mid 0.70) two hours before close, 7 of which resolved YES, and
  quoted 0.95/0.97 thirty minutes before close (what a 1 h horizon must *not* read);
* 4 markets quoted 0.19/0.21 (mid 0.20), 1 of which resolved YES;
* a market that closed early (may close early, closed at 12:34:17 three days before its expected
  expiration), quoted 0.50/0.52 before — excluded as `closed_early`;
* a sports-style close 25 minutes before its expected expiration at an odd second — counted
  (quoted 0.69/0.71, resolved YES; series KXGAME, category "Sports");
* a scalar (fair-price) settlement at 0.38, quoted 0.39/0.41;
* an empty book (0 / 1) two hours before close — `empty_book`;
* a market whose only quote came 10 minutes before close — `no_quote` at 1 h;
* an open market with a quote, and a settled one with no result yet — not counted at all.

Brier at 1 h, by hand: 7×0.3² + 3×0.7² + 1×0.8² + 3×0.2² + the sports game's 0.3² = 2.95 over 15.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from markets import ingest
from markets.models import Event, Market, MarketStatus, Series, SnapshotSource

CLOSE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
D = Decimal

Quote = tuple[datetime, str, str] | tuple[datetime, str, str, str]


def series(ticker: str, category: str) -> Series:
    obj, _ = Series.objects.get_or_create(ticker=ticker, defaults={"category": category, "title": ticker})
    return obj


def market(
    ticker: str,
    *,
    series_ticker: str = "KXCAL",
    category: str = "Economics",
    status: str = MarketStatus.FINALIZED,
    result: str = "",
    settlement_value: Decimal | None = None,
    close_time: datetime = CLOSE,
    open_time: datetime | None = None,
    expected_expiration_time: datetime | None = None,
    can_close_early: bool = False,
    quotes: Sequence[Quote] = (),
    source: str = SnapshotSource.POLL,
    **fields: object,
) -> Market:
    """A market in its own event, with snapshots `(time, yes_bid, yes_ask[, volume])`."""
    event, _ = Event.objects.get_or_create(
        ticker=ticker.rsplit("-", 1)[0], defaults={"series": series(series_ticker, category)}
    )
    if settlement_value is None and result in ("yes", "no"):
        settlement_value = D(1) if result == "yes" else D(0)
    obj = Market.objects.create(
        ticker=ticker,
        event=event,
        title=f"Title of {ticker}",
        yes_sub_title=f"Yes of {ticker}",
        status=status,
        result=result,
        settlement_value=settlement_value,
        close_time=close_time,
        open_time=open_time or close_time - timedelta(days=30),
        expected_expiration_time=expected_expiration_time,
        can_close_early=can_close_early,
        **fields,
    )
    ingest.write_snapshots([snapshot_row(obj, q, source=source) for q in quotes])
    return obj


def snapshot_row(m: Market, quote: Quote, *, source: str = SnapshotSource.POLL) -> ingest.SnapshotRow:
    at, bid, ask, *rest = quote
    volume = D(rest[0]) if rest else None
    return ingest.SnapshotRow(
        market_id=m.pk,
        captured_at=at,
        source=source,
        quote=(D(bid), D(ask), 1 - D(ask), 1 - D(bid), None, None, None, volume, None, None),
    )


def calibration_set() -> None:
    before = CLOSE - timedelta(hours=2)
    late = CLOSE - timedelta(minutes=30)
    for i in range(10):
        market(
            f"KXCAL-SEVENTY-{i}",
            result="yes" if i < 7 else "no",
            quotes=[(before, "0.69", "0.71"), (late, "0.95", "0.97")],
        )
    for i in range(4):
        market(f"KXCAL-TWENTY-{i}", result="yes" if i < 1 else "no", quotes=[(before, "0.19", "0.21")])
    market(
        "KXCAL-EARLY-1",
        result="yes",
        close_time=CLOSE - timedelta(days=3) + timedelta(minutes=34, seconds=17),
        expected_expiration_time=CLOSE,
        can_close_early=True,
        quotes=[(CLOSE - timedelta(days=4), "0.50", "0.52")],
    )
    game_close = CLOSE + timedelta(minutes=35, seconds=42)
    market(
        "KXGAME-26JUN01AB-A",
        series_ticker="KXGAME",
        category="Sports",
        result="yes",
        close_time=game_close,
        expected_expiration_time=game_close + timedelta(minutes=25),
        can_close_early=True,
        quotes=[(game_close - timedelta(hours=2), "0.69", "0.71")],
    )
    market("KXCAL-SCALAR-1", result="scalar", settlement_value=D("0.38"), quotes=[(before, "0.39", "0.41")])
    market("KXCAL-EMPTY-1", result="yes", quotes=[(before, "0", "1")])
    market("KXCAL-LATE-1", result="no", quotes=[(CLOSE - timedelta(minutes=10), "0.40", "0.42")])
    market(
        "KXCAL-OPEN-1",
        status=MarketStatus.ACTIVE,
        close_time=CLOSE + timedelta(days=5),
        quotes=[(before, "0.5", "0.6")],
    )
    market(
        "KXCAL-DETERMINED-1", status=MarketStatus.DETERMINED, result="yes", quotes=[(before, "0.5", "0.6")]
    )
