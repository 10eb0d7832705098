"""The demo dataset: the real recordings, stored through the project's client and ingest functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from markets import demo, insights
from markets.models import Event, Market, MarketSnapshot, Series, SnapshotSource

pytestmark = pytest.mark.django_db


def test_it_stores_the_recorded_markets_outcomes_and_quotes():
    loaded = demo.load_demo()

    assert (loaded.markets, loaded.settled) == (53, 46)
    assert loaded.snapshots == MarketSnapshot.objects.count() > 0
    assert str(loaded) == f"53 markets (46 settled) and {loaded.snapshots:,} snapshots"
    # 42 settled games (21 YES, 21 NO), the fair-price settlement and the 3 archived KXU3 markets.
    results = Market.objects.settled().values_list("result", flat=True)
    assert sorted(set(results)) == ["no", "scalar", "yes"]
    assert list(results).count("yes") == 21
    scalar = Market.objects.get(ticker="KXWTAGTOTAL-26SEP19ZIDJEO-25")
    assert (scalar.result, scalar.settlement_value) == ("scalar", Decimal("0.380000"))
    # Series and their fee fields, and every event linked to its series.
    mlb = Series.objects.get(ticker="KXMLBGAME")
    assert (mlb.category, mlb.fee_type) == ("Sports", "quadratic_with_maker_fees")
    assert not Event.objects.filter(series__isnull=True).exists()
    live = Market.objects.get(ticker="KXNFLGAME-26OCT08TBDAL-DAL")
    assert (live.status, live.yes_bid, live.previous_yes_bid) == (
        "active",
        Decimal("0.800000"),
        Decimal("0.830000"),
    )


def test_it_turns_the_recorded_order_book_stream_into_top_of_book_snapshots():
    demo.load_demo()

    lad = MarketSnapshot.objects.for_market(Market.objects.get(ticker="KXMLBGAME-26AUG072140LADAZ-LAD"))
    first = lad.from_source(SnapshotSource.WEBSOCKET).order_by("captured_at").first()
    assert first is not None
    # The recorded snapshot frame: best YES bid 0.62, best NO bid 0.37, so the YES ask is 0.63.
    assert (first.yes_bid, first.yes_ask, first.no_bid, first.no_ask) == (
        Decimal("0.620000"),
        Decimal("0.630000"),
        Decimal("0.370000"),
        Decimal("0.380000"),
    )
    assert first.yes_bid_size == Decimal("1720.33")
    assert first.captured_at == datetime(2026, 8, 7, 6, 46, 28, 416000, tzinfo=UTC)


def test_it_stores_recorded_candles_as_backfill_with_volume_summed_from_the_first():
    demo.load_demo()

    archived = MarketSnapshot.objects.for_market(Market.objects.get(ticker="KXU3-26JUN-T4.8")).order_by(
        "captured_at"
    )
    assert [(s.yes_bid, s.yes_ask, s.last_price) for s in archived][0] == (
        Decimal("0.000000"),
        Decimal("0.010000"),
        None,  # nothing traded in that hour
    )
    assert {s.source for s in archived} == {SnapshotSource.BACKFILL}
    minute = list(
        MarketSnapshot.objects.for_market(
            Market.objects.get(ticker="KXMLBGAME-26AUG071840TORPHI-TOR")
        ).order_by("captured_at")
    )
    assert len(minute) == 16
    assert minute[0].yes_bid == Decimal("0.330000")
    volumes = [s.volume for s in minute]
    assert None not in volumes
    assert volumes == sorted(volumes)  # type: ignore[type-var]


def test_its_calibration_is_what_the_recordings_say():
    demo.load_demo()

    result = insights.calibration(horizon=timedelta(hours=1))

    # Four recorded order books of settled games (about 20 h before their close) and the archived
    # KXU3 market's hourly candles have a quote by then; the other settled markets have none.
    assert result.markets == 5
    assert result.excluded.no_quote == 40
    assert result.scalar.count == 1


def test_it_refuses_a_database_that_already_holds_markets():
    demo.load_demo()

    with pytest.raises(demo.DemoError, match="already holds markets"):
        demo.load_demo()


def test_its_client_serves_only_the_recordings():
    with demo.client() as kalshi, pytest.raises(Exception, match="404"):
        kalshi.get_market("KXNOT-RECORDED")
