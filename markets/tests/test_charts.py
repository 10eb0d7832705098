"""Figure builders and display helpers: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from markets import charts, display
from markets.timeseries import QuoteBucket

T0 = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def bucket(i, *, bid="0.41", ask="0.43", last="0.42", volume="100", traded="5", source="poll", exact=True):
    return QuoteBucket(
        start=T0 + i * MINUTE,
        width=MINUTE,
        time=T0 + i * MINUTE + timedelta(seconds=30),
        yes_bid=Decimal(bid),
        yes_ask=Decimal(ask),
        last_price=Decimal(last),
        volume=Decimal(volume),
        volume_traded=None if traded is None else Decimal(traded),
        low_yes_bid=Decimal(bid) - Decimal("0.01") if exact else None,
        high_yes_ask=Decimal(ask) + Decimal("0.01") if exact else None,
        snapshots=3 if exact else None,
        source=source,
        sources=(source,),
        exact=exact,
    )


def traces(figure):
    return {t["name"]: t for t in figure["data"]}


def test_it_draws_the_band_last_price_and_volume():
    figure = charts.price_chart([bucket(0), bucket(1, bid="0.415", ask="0.44")], uirevision="X:1d")

    t = traces(figure)
    assert t["Yes bid"]["y"] == [41.0, 41.5]
    assert t["Yes ask"]["y"] == [43.0, 44.0]
    assert t["Yes ask"]["fill"] == "tonexty"  # the spread band sits between bid and ask
    assert t["Bid–ask range in bucket"]["y"] == [44.0, 45.0]
    assert t["Lowest bid in bucket"]["y"] == [40.0, 40.5]
    assert t["Last price"]["y"] == [42.0, 42.0]
    assert t["Last price"]["line"]["shape"] == "hv"  # a quote holds until the next one
    assert t["Yes bid"]["x"] == ["2026-10-06 12:00:30", "2026-10-06 12:01:30"]
    bars = t["Volume traded"]
    assert bars["type"] == "bar" and bars["yaxis"] == "y2"
    assert bars["x"] == ["2026-10-06 12:00:00", "2026-10-06 12:01:00"] and bars["width"] == [60000.0, 60000.0]
    assert figure["layout"]["uirevision"] == "X:1d"
    assert "Last price (backfilled)" not in t
    orjson.dumps(figure)  # plain JSON all the way down


def test_it_never_draws_an_empty_book_as_a_price():
    figure = charts.price_chart([bucket(0, bid="0", ask="1"), bucket(1, bid="0.30", ask="0")], uirevision="x")

    t = traces(figure)
    assert t["Yes bid"]["y"] == [None, 30.0]
    assert t["Yes ask"]["y"] == [None, None]


def test_it_draws_backfilled_data_apart_from_polled_data():
    figure = charts.price_chart(
        [bucket(0, source="backfill"), bucket(1, source="backfill"), bucket(2, source="poll")], uirevision="x"
    )

    t = traces(figure)
    assert t["Last price (backfilled)"]["y"] == [42.0, 42.0, None]
    assert t["Last price"]["y"] == [None, None, 42.0]
    assert t["Last price (backfilled)"]["line"]["dash"] == "dot"
    colors = t["Volume traded"]["marker"]["color"]
    assert colors[0] == colors[1] != colors[2]


def test_it_breaks_lines_where_the_poller_was_not_watching():
    late = bucket(200)  # 200 minutes later: longer than 1.5 heartbeats of one hour
    figure = charts.price_chart(
        [bucket(0), bucket(1), late], uirevision="x", break_after=timedelta(minutes=90)
    )

    t = traces(figure)
    assert t["Yes bid"]["y"] == [41.0, 41.0, None, 41.0]
    assert len(t["Yes bid"]["x"]) == 4
    assert len(t["Volume traded"]["x"]) == 3  # bars need no break


def test_it_carries_the_quote_in_from_before_the_range_and_on_to_now():
    start, end = T0 - timedelta(minutes=10), T0 + timedelta(minutes=10)
    before = bucket(-30, bid="0.38", ask="0.40")
    figure = charts.price_chart(
        [bucket(0), bucket(1)], uirevision="x", carry_in=before, extend_to=end, x_range=(start, end)
    )

    t = traces(figure)
    assert t["Yes bid"]["x"][0] == "2026-10-06 11:50:00" and t["Yes bid"]["y"][0] == 38.0
    assert t["Yes bid"]["x"][-1] == "2026-10-06 12:10:00" and t["Yes bid"]["y"][-1] == 41.0
    # Carried points are quotes, not buckets: no range, no volume.
    assert t["Bid–ask range in bucket"]["y"][0] is None and t["Bid–ask range in bucket"]["y"][-1] is None
    assert len(t["Volume traded"]["x"]) == 2
    assert figure["layout"]["xaxis"]["range"] == ["2026-10-06 11:50:00", "2026-10-06 12:10:00"]


def test_it_explains_sampled_buckets_and_empty_ranges():
    sampled = charts.price_chart([bucket(0, exact=False), bucket(1)], uirevision="x")
    empty = charts.price_chart([], uirevision="x")

    assert "each bucket shows the quote at its end" in sampled["layout"]["annotations"][0]["text"]
    assert traces(sampled)["Bid–ask range in bucket"]["y"] == [None, 44.0]
    assert empty["layout"]["annotations"][0]["text"] == "No snapshots in this range yet."


def test_it_hides_negative_traded_volume():
    figure = charts.price_chart([bucket(0, traded="-20"), bucket(1, traded=None)], uirevision="x")
    assert traces(figure)["Volume traded"]["y"] == [None, None]


def outcome(label, bid, ask, last="0.50"):
    return charts.Outcome(
        label=label, ticker=f"T-{label}", yes_bid=Decimal(bid), yes_ask=Decimal(ask), last_price=Decimal(last)
    )


def test_it_sums_the_implied_distribution():
    outcomes = [outcome("a", "0.20", "0.22"), outcome("b", "0.50", "0.53"), outcome("c", "0.25", "0.27")]

    dist = charts.distribution(outcomes)

    assert [i.value for i in dist.implied] == [Decimal("0.21"), Decimal("0.515"), Decimal("0.26")]
    assert dist.total == Decimal("0.985")
    assert (dist.total_bid, dist.total_ask) == (Decimal("0.95"), Decimal("1.02"))


def test_it_falls_back_to_the_last_trade_when_the_book_is_one_sided():
    dist = charts.distribution([outcome("a", "0", "0.30", last="0.12"), outcome("b", "0", "1", last="0")])

    assert dist.implied[0] == charts.Implied(Decimal("0.12"), "last")
    assert dist.implied[1] == charts.Implied(None, "")
    assert dist.total == Decimal("0.12")
    assert dist.total_bid is None and dist.total_ask is None


def test_it_draws_the_distribution_with_spread_whiskers():
    figure = charts.distribution_chart(
        [outcome("below 80", "0.08", "0.10"), outcome("above 80", "0", "0.95", last="0.90")], uirevision="E"
    )

    [bars] = figure["data"]
    assert bars["x"] == ["below 80", "above 80"]
    assert bars["y"] == [9.0, 90.0]
    assert bars["text"] == ["9.0%", "90.0%"]
    assert bars["error_y"]["arrayminus"] == [1.0, 0.0] and bars["error_y"]["array"] == [1.0, 0.0]
    assert bars["marker"]["color"][0] != bars["marker"]["color"][1]  # mid vs last trade
    orjson.dumps(figure)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.41"), "41¢"),
        (Decimal("0.410000"), "41¢"),
        (Decimal("0.415"), "41.5¢"),
        (Decimal("0.0025"), "0.25¢"),
        (Decimal("0"), "0¢"),
        (Decimal("1.000000"), "100¢"),
        (Decimal("0.4"), "40¢"),
        (None, "—"),
    ],
)
def test_it_writes_prices_in_cents(value, text):
    assert display.cents(value) == text


def test_it_writes_changes_counts_and_durations():
    assert display.signed_cents(Decimal("0.03")) == "+3¢"
    assert display.signed_cents(Decimal("-0.015")) == "−1.5¢"
    assert display.signed_cents(Decimal("0")) == "0¢"
    assert display.compact_count(Decimal("950")) == "950"
    assert display.compact_count(Decimal("12.50")) == "12.50"
    assert display.compact_count(Decimal("27215.5")) == "27.2k"
    assert display.compact_count(Decimal("1234567")) == "1.23M"
    assert display.duration(timedelta(seconds=45)) == "45s"
    assert display.duration(timedelta(hours=3, minutes=5)) == "3h 05m"
    assert display.duration(timedelta(days=2, hours=4)) == "2d 4h"
    assert display.closes_in(T0 + timedelta(minutes=12), T0) == "in 12m"
    assert display.closes_in(T0 - timedelta(days=2), T0) == "closed 2d 0h ago"
    assert display.percent(Decimal("0.995")) == "99.5%"


def test_it_treats_empty_book_sentinels_as_no_quote():
    assert display.book_spread(Decimal("0"), Decimal("1")) is None
    assert display.book_spread(Decimal("0.40"), Decimal("0")) is None  # legacy "no ask"
    assert display.book_spread(Decimal("0.40"), Decimal("0.42")) == Decimal("0.02")
    assert display.mid(Decimal("0.40"), Decimal("0.43")) == Decimal("0.415")
