"""Calibration and movers on hand-made markets whose answers are worked out by hand.

Every calibration and movers test runs twice: through the PostgreSQL LATERAL path and through the
portable correlated-subquery path (the one SQLite uses), on the same PostgreSQL data.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from markets import insights
from markets.models import Market, MarketStatus
from markets.tests import insight_data
from markets.tests.insight_data import CLOSE, D, market

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


@pytest.fixture(params=["lateral", "portable"])
def path(request, monkeypatch):
    if request.param == "portable":
        monkeypatch.setattr(insights, "lateral_joins", lambda: False)
    return request.param


@pytest.fixture
def calibration_set():
    insight_data.calibration_set()


def bin_at(result: insights.Calibration, lower: str) -> insights.CalibrationBin:
    return next(b for b in result.bins if b.lower == Decimal(lower))


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


def test_it_bins_ten_markets_at_seventy_cents_of_which_seven_resolved_yes(path, calibration_set):
    result = insights.calibration(horizon=HOUR, series="KXCAL")

    seventy = bin_at(result, "0.7")
    assert (seventy.count, seventy.yes) == (10, 7)
    assert seventy.mean_predicted == D("0.700000")
    assert seventy.observed == D("0.700000")
    assert seventy.upper == D("0.800000")
    twenty = bin_at(result, "0.2")
    assert (twenty.count, twenty.yes, twenty.observed) == (4, 1, D("0.250000"))
    assert twenty.mean_predicted == D("0.200000")
    assert [b.count for b in result.bins] == [0, 0, 4, 0, 0, 0, 0, 10, 0, 0]
    assert result.markets == 14
    assert result.yes == 8
    # (7×0.3² + 3×0.7² + 1×0.8² + 3×0.2²) / 14 = 2.86 / 14
    assert result.brier_score == D("0.204286")
    assert result.base_rate == D("0.571429")  # 8 / 14
    # Only the 0.2 bin is off: 4 markets × |0.25 − 0.20| / 14
    assert result.expected_calibration_error == D("0.014286")


def test_it_excludes_early_closes_empty_books_and_missing_quotes_and_counts_them(path, calibration_set):
    result = insights.calibration(horizon=HOUR, series="KXCAL")

    assert result.excluded == insights.CalibrationExclusions(
        closed_early=1, no_quote=1, stale_quote=0, empty_book=1
    )
    assert result.excluded.total == 3


def test_it_reports_scalar_outcomes_separately(path, calibration_set):
    result = insights.calibration(horizon=HOUR)

    assert result.scalar == insights.ScalarOutcomes(
        count=1, mean_settlement_value=D("0.380000"), with_quote=1, mean_mid=D("0.400000")
    )
    assert sum(b.count for b in result.bins) == result.markets  # never binned


def test_it_counts_a_game_that_closed_at_the_final_whistle_as_on_schedule(path, calibration_set):
    everything = insights.calibration(horizon=HOUR)
    sports = insights.calibration(horizon=HOUR, category="sports")

    assert everything.markets == 15
    assert bin_at(everything, "0.7").count == 11
    assert everything.brier_score == D("0.196667")  # 2.95 / 15
    assert (sports.markets, sports.yes, sports.brier_score) == (1, 1, D("0.090000"))
    assert sports.excluded.total == 0
    assert sports.scalar.count == 0


def test_it_reads_the_last_quote_at_or_before_close_minus_the_horizon(path, calibration_set):
    # 10 minutes before close the seventy-cent markets were quoted 0.95/0.97, and the late
    # market 0.40/0.42 is now in time.
    result = insights.calibration(horizon=timedelta(minutes=5), series="KXCAL")

    assert bin_at(result, "0.9").count == 10
    assert bin_at(result, "0.9").mean_predicted == D("0.960000")
    assert bin_at(result, "0.4").count == 1
    assert result.excluded.no_quote == 0


def test_it_has_no_quote_for_a_horizon_before_any_snapshot(path, calibration_set):
    result = insights.calibration(horizon=timedelta(weeks=1), series="KXCAL")

    assert result.markets == 0
    assert result.is_empty
    assert result.brier_score is None
    assert all(b.count == 0 and b.observed is None for b in result.bins)
    assert result.excluded == insights.CalibrationExclusions(closed_early=1, no_quote=16)


def test_it_can_exclude_quotes_older_than_a_maximum_age(path, calibration_set):
    result = insights.calibration(horizon=HOUR, series="KXCAL", max_quote_age=timedelta(minutes=30))

    # Every usable quote at close − 1 h was taken at close − 2 h.
    assert result.markets == 0
    assert result.excluded.stale_quote == 15  # 14 binned before, and the empty book
    assert result.scalar.with_quote == 0
    fresh = insights.calibration(horizon=HOUR, series="KXCAL", max_quote_age=timedelta(hours=2))
    assert fresh.markets == 14


def test_it_filters_by_close_time(path, calibration_set):
    assert insights.calibration(horizon=HOUR, closed_after=CLOSE + timedelta(minutes=1)).markets == 1
    assert insights.calibration(horizon=HOUR, closed_before=CLOSE).markets == 14
    assert (
        insights.calibration(horizon=HOUR, closed_before=CLOSE - timedelta(days=1)).excluded.closed_early == 1
    )


def test_it_takes_a_market_selection(path, calibration_set):
    chosen = Market.objects.filter(ticker__startswith="KXCAL-TWENTY")
    result = insights.calibration(horizon=HOUR, markets=chosen)

    assert (result.markets, result.yes) == (4, 1)


def test_it_uses_a_one_sided_book_with_the_missing_side_at_its_bound(path):
    before = CLOSE - timedelta(hours=2)
    market("KXCAL-LONG-1", result="no", quotes=[(before, "0", "0.04")])  # no bid: mid 0.02
    market("KXCAL-FAV-1", result="yes", quotes=[(before, "0.97", "1")])  # no ask: mid 0.985
    market("KXCAL-LEGACY-1", result="yes", quotes=[(before, "0.90", "0")])  # legacy "no ask"
    market("KXCAL-LEGACYEMPTY-1", result="yes", quotes=[(before, "0", "0")])  # legacy empty book

    result = insights.calibration(horizon=HOUR, bins=20)

    assert [(b.lower, b.count, b.mean_predicted) for b in result.bins if b.count] == [
        (D("0"), 1, D("0.020000")),
        (D("0.95"), 2, D("0.967500")),  # (0.985 + 0.95) / 2
    ]
    assert result.excluded.empty_book == 1


def test_it_puts_a_mid_on_a_bin_edge_in_the_upper_bin_and_one_in_the_last(path):
    before = CLOSE - timedelta(hours=2)
    market("KXCAL-EDGE-1", result="yes", quotes=[(before, "0.29", "0.31")])  # 0.30 exactly
    market("KXCAL-ONE-1", result="yes", quotes=[(before, "1", "1")])  # a crossed-out 1.00

    result = insights.calibration(horizon=HOUR, bins=10)

    assert bin_at(result, "0.3").count == 1
    assert bin_at(result, "0.9").count == 1
    assert bin_at(result, "0.9").upper == D("1")


def test_it_prefers_the_live_quote_over_a_backfilled_one_at_the_same_instant(path):
    before = CLOSE - timedelta(hours=2)
    m = market("KXCAL-BOTH-1", result="yes", quotes=[(before, "0.59", "0.61")], source="backfill")
    from markets import ingest

    ingest.write_snapshots([insight_data.snapshot_row(m, (before, "0.79", "0.81"))])

    assert bin_at(insights.calibration(horizon=HOUR), "0.8").count == 1


def test_it_gives_wilson_intervals(path, calibration_set):
    seventy = bin_at(insights.calibration(horizon=HOUR, series="KXCAL"), "0.7")

    # Wilson 95 % for 7/10 (R: prop.test(7, 10, correct=FALSE)$conf.int = 0.3967781 0.8922087).
    assert seventy.ci_low == D("0.396778")
    assert seventy.ci_high == D("0.892209")


def test_wilson_interval_matches_published_values():
    low, high = insights.wilson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)
    low, high = insights.wilson_interval(0, 20)
    assert low == 0.0
    assert round(high, 4) == 0.1611
    low, high = insights.wilson_interval(20, 20)
    assert round(low, 4) == 0.8389
    assert high == 1.0
    low99, high99 = insights.wilson_interval(7, 10, confidence=0.99)
    assert low99 < 0.3968 and high99 > 0.8922


def test_it_is_empty_without_settled_markets(path):
    market("KXCAL-OPEN-2", status=MarketStatus.ACTIVE, quotes=[(CLOSE - timedelta(hours=2), "0.5", "0.6")])

    result = insights.calibration()

    assert result.is_empty
    assert result.excluded.total == 0
    assert result.scalar == insights.ScalarOutcomes()
    assert len(result.bins) == insights.DEFAULT_BINS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 1}, "bins must be from 2 to 50"),
        ({"bins": 51}, "bins must be from 2 to 50"),
        ({"horizon": -HOUR}, "horizon must not be negative"),
        ({"max_quote_age": timedelta(0)}, "max_quote_age must be positive"),
        ({"confidence": 1.0}, "confidence must be between 0 and 1"),
    ],
)
def test_it_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        insights.calibration(**kwargs)


def test_the_closed_early_rule_reads_the_final_market_object():
    rule = insights.closed_early_condition()
    common: dict[str, Any] = {"result": "yes", "can_close_early": True, "expected_expiration_time": CLOSE}
    market("KXCAL-R1-1", close_time=CLOSE - timedelta(days=2, seconds=-17), **common)  # early
    market("KXCAL-R2-1", close_time=CLOSE - timedelta(days=2), **common)  # scheduled: whole minute
    market("KXCAL-R3-1", close_time=CLOSE - timedelta(hours=5, seconds=-17), **common)  # within grace
    market("KXCAL-R4-1", close_time=CLOSE - timedelta(days=2, seconds=-17), result="yes")  # cannot
    market(
        "KXCAL-R5-1",
        close_time=CLOSE - timedelta(days=2, seconds=-17),
        result="yes",
        can_close_early=True,
    )  # no expected expiration: off the minute grid decides

    early = set(Market.objects.filter(rule).values_list("ticker", flat=True))

    assert early == {"KXCAL-R1-1", "KXCAL-R5-1"}
    assert Market.objects.filter(insights.closed_early_condition(timedelta(days=3))).count() == 1


# --------------------------------------------------------------------------------------------------
# Movers
# --------------------------------------------------------------------------------------------------

NOW = CLOSE - timedelta(days=1)


@pytest.fixture
def one_hour_moves():
    """Five open markets quoted before and during the hour that ends at NOW, and two that do not count."""
    then, recent = NOW - timedelta(hours=2), NOW - timedelta(minutes=10)
    market(
        "KXMOV-UP-1", status="active", quotes=[(then, "0.49", "0.51", "100"), (recent, "0.59", "0.61", "150")]
    )
    market(
        "KXMOV-DOWN-1",
        status="active",
        quotes=[(then, "0.39", "0.41", "10"), (recent, "0.29", "0.31", "210")],
    )
    market(
        "KXMOV-SMALLUP-1",
        status="active",
        quotes=[(then, "0.10", "0.12", "5"), (recent, "0.12", "0.14", "5")],
    )
    market(
        "KXMOV-WIDE-1", status="active", quotes=[(then, "0.10", "0.90", "0"), (recent, "0.45", "0.47", "1")]
    )
    market("KXMOV-EMPTY-1", status="active", quotes=[(then, "0", "1", "0"), (recent, "0.45", "0.47", "1")])
    # Quoted only before the window: it did not move in it.
    market("KXMOV-STILL-1", status="active", quotes=[(then - HOUR, "0.20", "0.30", "7")])
    # Closed before NOW.
    market(
        "KXMOV-CLOSED-1",
        result="yes",
        close_time=NOW - timedelta(minutes=5),
        quotes=[(then, "0.10", "0.12", "1"), (recent, "0.90", "0.92", "500")],
    )
    # Not open yet at NOW.
    market(
        "KXMOV-LATER-1",
        status="active",
        open_time=NOW + HOUR,
        quotes=[(then, "0.10", "0.12", "1"), (recent, "0.90", "0.92", "500")],
    )


def tickers(moves: list[insights.Move]) -> list[str]:
    return [m.ticker for m in moves]


def test_it_ranks_one_hour_moves_from_snapshots(path, one_hour_moves):
    result = insights.movers(window=HOUR, now=NOW)

    assert tickers(result.gainers) == ["KXMOV-UP-1", "KXMOV-SMALLUP-1"]
    assert tickers(result.losers) == ["KXMOV-DOWN-1"]
    up = result.gainers[0]
    assert (up.price_before, up.price_now, up.change, up.volume) == (
        D("0.500000"),
        D("0.600000"),
        D("0.100000"),
        D("50.00"),
    )
    assert result.losers[0].change == D("-0.100000")
    assert result.as_of == NOW
    assert result.window == HOUR
    assert result.basis == insights.BASIS_SNAPSHOTS
    # Wide and empty books are not compared; the still market has no quote in the window.
    assert result.compared == 3


def test_it_ranks_volume_in_the_window_whatever_the_book(path, one_hour_moves):
    result = insights.movers(window=HOUR, now=NOW)

    assert tickers(result.volume_leaders) == ["KXMOV-DOWN-1", "KXMOV-UP-1", "KXMOV-WIDE-1", "KXMOV-EMPTY-1"]
    assert [m.volume for m in result.volume_leaders] == [D("200.00"), D("50.00"), D("1.00"), D("1.00")]
    wide = result.volume_leaders[2]
    assert (wide.price_before, wide.change) == (None, None)


def test_it_compares_wide_books_when_asked(path, one_hour_moves):
    result = insights.movers(window=HOUR, now=NOW, max_spread=None)

    assert tickers(result.losers) == ["KXMOV-DOWN-1", "KXMOV-WIDE-1"]  # 0.50 → 0.46
    assert "KXMOV-EMPTY-1" not in tickers(result.gainers + result.losers)


def test_it_limits_and_filters_movers(path, one_hour_moves):
    assert tickers(insights.movers(window=HOUR, now=NOW, limit=1).gainers) == ["KXMOV-UP-1"]
    assert insights.movers(window=HOUR, now=NOW, series="KXOTHER").compared == 0
    chosen = Market.objects.filter(ticker="KXMOV-DOWN-1")
    assert tickers(insights.movers(window=HOUR, now=NOW, markets=chosen).losers) == ["KXMOV-DOWN-1"]


def test_it_uses_kalshis_day_ago_fields_for_24_hours(path):
    fields: dict[str, Any] = {"status": "active", "close_time": CLOSE + timedelta(days=30)}
    market(
        "KX24-UP-1",
        yes_bid=D("0.50"),
        yes_ask=D("0.52"),
        previous_yes_bid=D("0.30"),
        previous_yes_ask=D("0.32"),
        volume_24h=D("10"),
        **fields,
    )
    market(
        "KX24-DOWN-1",
        yes_bid=D("0.05"),
        yes_ask=D("0.07"),
        previous_yes_bid=D("0.45"),
        previous_yes_ask=D("0.47"),
        volume_24h=D("900.50"),
        **fields,
    )
    market(
        "KX24-EMPTY-1",
        yes_bid=D("0"),
        yes_ask=D("1"),
        previous_yes_bid=D("0.45"),
        previous_yes_ask=D("0.47"),
        volume_24h=D("5"),
        **fields,
    )
    market("KX24-NEW-1", yes_bid=D("0.20"), yes_ask=D("0.22"), volume_24h=D("50"), **fields)
    market(
        "KX24-DONE-1",
        result="yes",
        yes_bid=D("0.98"),
        yes_ask=D("1"),
        previous_yes_bid=D("0.1"),
        previous_yes_ask=D("0.12"),
        volume_24h=D("9999"),
    )

    result = insights.movers(window=timedelta(hours=24))

    assert result.basis == insights.BASIS_KALSHI
    assert tickers(result.gainers) == ["KX24-UP-1"]
    assert result.gainers[0].change == D("0.200000")
    assert tickers(result.losers) == ["KX24-DOWN-1"]
    assert result.losers[0].change == D("-0.400000")
    assert tickers(result.volume_leaders) == ["KX24-DOWN-1", "KX24-NEW-1", "KX24-UP-1", "KX24-EMPTY-1"]
    assert result.volume_leaders[1].price_before is None  # no day-ago quote yet
    assert result.compared == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit must be from 1 to 100"),
        ({"limit": 101}, "limit must be from 1 to 100"),
        ({"window": timedelta(0)}, "window must be positive"),
        ({"max_spread": D("1.5")}, "max_spread must be between 0 and 1"),
    ],
)
def test_it_rejects_bad_mover_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        insights.movers(**kwargs)


def test_it_labels_durations():
    assert insights.label_for(timedelta(days=1), insights.HORIZONS) == "1d"
    assert insights.label_for(timedelta(minutes=5), insights.HORIZONS) == "300s"
