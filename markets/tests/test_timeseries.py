from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from markets import timeseries
from markets.models import MarketSnapshot, SnapshotSource
from markets.tests.factories import MarketFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 1, tzinfo=UTC)
CENT = Decimal("0.01")


def _history(market, count, *, step=timedelta(seconds=15), start=T0, seed=7, backfill_every=0):
    """A seeded random walk of quotes, with empty books and sub-cent prices sprinkled in."""
    rng = random.Random(seed)
    mid = 50
    volume = Decimal("1000.00")
    rows = []
    for i in range(count):
        mid = min(95, max(5, mid + rng.choice((-2, -1, 0, 1, 2))))
        bid = Decimal(mid - rng.choice((1, 2))) * CENT
        ask = Decimal(mid + rng.choice((1, 2))) * CENT
        if i % 97 == 0:
            bid = Decimal("0")  # empty bid side
        if i % 89 == 0:
            ask = Decimal("1")  # empty ask side
        if i % 31 == 0:
            bid += Decimal("0.0050")  # sub-cent
        volume += Decimal(rng.randrange(0, 500)) / 100
        source = (
            SnapshotSource.BACKFILL if backfill_every and i % backfill_every == 0 else SnapshotSource.POLL
        )
        rows.append(
            MarketSnapshot(
                market=market,
                captured_at=start + i * step,
                source=source,
                yes_bid=bid,
                yes_ask=ask,
                last_price=Decimal(mid) * CENT,
                volume=volume,
            )
        )
    MarketSnapshot.objects.bulk_create(rows, batch_size=2000)
    return rows


def _expected(rows, width, *, start=None, end=None, previous_volume=None):
    """Brute force, independent of the module: group rows by aligned bucket."""
    rows = sorted(rows, key=lambda r: (r.captured_at, r.source))
    if start is not None:
        before = [r for r in rows if r.captured_at < start]
        previous_volume = before[-1].volume if before else previous_volume
        rows = [r for r in rows if r.captured_at >= start]
    if end is not None:
        rows = [r for r in rows if r.captured_at <= end]
    groups = defaultdict(list)
    for r in rows:
        groups[int((r.captured_at - timeseries.EPOCH) / width)].append(r)
    out = []
    for index in sorted(groups):
        g = groups[index]
        bids = [r.yes_bid for r in g if r.yes_bid > 0]
        asks = [r.yes_ask for r in g if 0 < r.yes_ask < 1]
        close = g[-1]
        out.append(
            {
                "start": timeseries.EPOCH + index * width,
                "time": close.captured_at,
                "yes_bid": close.yes_bid,
                "yes_ask": close.yes_ask,
                "last_price": close.last_price,
                "volume": close.volume,
                "volume_traded": None if previous_volume is None else close.volume - previous_volume,
                "low_yes_bid": min(bids) if bids else None,
                "high_yes_ask": max(asks) if asks else None,
                "snapshots": len(g),
                "sources": tuple(sorted({r.source for r in g})),
                "source": close.source,
            }
        )
        previous_volume = close.volume
    return out


def _as_dicts(buckets, *, closes_only=False):
    keys = ["start", "time", "yes_bid", "yes_ask", "last_price", "volume", "volume_traded", "source"]
    if not closes_only:
        keys += ["low_yes_bid", "high_yes_ask", "snapshots", "sources"]
    return [{k: getattr(b, k) for k in keys} for b in buckets]


def _pick(expected, *, closes_only=False):
    keys = ["start", "time", "yes_bid", "yes_ask", "last_price", "volume", "volume_traded", "source"]
    if not closes_only:
        keys += ["low_yes_bid", "high_yes_ask", "snapshots", "sources"]
    return [{k: e[k] for k in keys} for e in expected]


@pytest.mark.parametrize(
    ("span", "max_points", "width"),
    [
        (timedelta(hours=1), 2000, timedelta(seconds=2)),
        (timedelta(days=1), 2000, timedelta(minutes=1)),
        (timedelta(days=7), 2000, timedelta(minutes=10)),
        (timedelta(days=30), 2000, timedelta(minutes=30)),
        (timedelta(days=365), 2000, timedelta(hours=6)),
        (timedelta(days=3650), 2000, timedelta(days=2)),
        (timedelta(0), 2000, timedelta(seconds=1)),
    ],
)
def test_it_picks_the_smallest_round_width_that_fits(span, max_points, width):
    assert timeseries.bucket_width(span, max_points) == width


@pytest.mark.parametrize("max_points", [2, 3, 10, 100, 2000])
@pytest.mark.parametrize("seconds", [59, 3601, 86_399, 7 * 86400 + 13, 400 * 86400])
def test_it_never_makes_more_buckets_than_asked(max_points, seconds):
    start = T0 + timedelta(seconds=7)
    end = start + timedelta(seconds=seconds)
    width = timeseries.bucket_width(end - start, max_points)
    buckets = timeseries.bucket_of(end, width) - timeseries.bucket_of(start, width) + 1
    assert buckets <= max_points


def test_it_returns_nothing_for_a_market_without_snapshots():
    assert timeseries.downsample(MarketFactory.create()) == []


def test_it_rejects_bad_arguments():
    market = MarketFactory.create()
    with pytest.raises(ValueError, match="max_points"):
        timeseries.downsample(market, max_points=1)
    with pytest.raises(ValueError, match="source"):
        timeseries.downsample(market, source="carrier-pigeon")
    with pytest.raises(ValueError, match="timezone-aware"):
        timeseries.downsample(market, start=datetime(2026, 10, 1), end=T0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="end must not be before start"):
        timeseries.downsample(market, start=T0, end=T0 - timedelta(seconds=1))


def test_it_aggregates_every_snapshot_exactly_when_the_range_is_small():
    market = MarketFactory.create()
    rows = _history(market, 3000, backfill_every=10)

    buckets = timeseries.downsample(market.pk, max_points=100)

    width = timeseries.bucket_width(rows[-1].captured_at - rows[0].captured_at, 100)
    assert len(buckets) <= 100
    assert all(b.exact and b.width == width for b in buckets)
    assert _as_dicts(buckets) == _pick(_expected(rows, width))
    assert sum(b.snapshots or 0 for b in buckets) == 3000
    # The first bucket has nothing before it to subtract; every later one does.
    assert buckets[0].volume_traded is None
    assert sum(b.volume_traded or 0 for b in buckets[1:]) == rows[-1].volume - buckets[0].volume
    # Backfilled rows stay recognisable inside mixed buckets.
    assert any(b.sources == ("backfill", "poll") for b in buckets)


def test_it_ignores_empty_book_sentinels_in_the_extremes():
    market = MarketFactory.create()
    for i, (bid, ask) in enumerate([("0.40", "0.45"), ("0", "0.44"), ("0.41", "1"), ("0.42", "0")]):
        MarketSnapshot.objects.create(
            market=market, captured_at=T0 + timedelta(seconds=i), yes_bid=Decimal(bid), yes_ask=Decimal(ask)
        )

    [bucket] = timeseries.downsample(market, max_points=2, start=T0, end=T0 + timedelta(seconds=3))

    assert (bucket.low_yes_bid, bucket.high_yes_ask) == (Decimal("0.40"), Decimal("0.45"))
    assert (bucket.yes_bid, bucket.yes_ask) == (Decimal("0.42"), Decimal("0"))  # the close, as stored


def test_it_keeps_to_the_range_and_knows_the_volume_before_it():
    market = MarketFactory.create()
    rows = _history(market, 2000)
    start, end = rows[500].captured_at, rows[1499].captured_at

    buckets = timeseries.downsample(market, start=start, end=end, max_points=60)

    width = timeseries.bucket_width(end - start, 60)
    assert _as_dicts(buckets) == _pick(_expected(rows, width, start=start, end=end))
    assert buckets[0].time >= start and buckets[-1].time == end
    assert buckets[0].volume_traded == buckets[0].volume - rows[499].volume


def test_it_filters_by_source():
    market = MarketFactory.create()
    rows = _history(market, 1000, backfill_every=4)

    buckets = timeseries.downsample(market, source=SnapshotSource.BACKFILL, max_points=50)

    backfilled = [r for r in rows if r.source == SnapshotSource.BACKFILL]
    assert {b.source for b in buckets} == {"backfill"}
    assert sum(b.snapshots or 0 for b in buckets) == len(backfilled)


@pytest.mark.postgres
def test_it_samples_older_buckets_by_index_probes_past_the_row_budget():
    market = MarketFactory.create()
    rows = _history(market, 5000, backfill_every=7)

    buckets = timeseries.downsample(market, max_points=200, exact_rows=1000)

    width = timeseries.bucket_width(rows[-1].captured_at - rows[0].captured_at, 200)
    expected = _expected(rows, width)
    # Closing quotes and traded volume are exact everywhere...
    assert _as_dicts(buckets, closes_only=True) == _pick(expected, closes_only=True)
    # ...the newest ~1000 rows are aggregated in full, older buckets say they were sampled.
    exact = [b for b in buckets if b.exact]
    sampled = [b for b in buckets if not b.exact]
    assert sampled and exact
    assert max(b.start for b in sampled) < min(b.start for b in exact)
    assert 900 <= sum(b.snapshots or 0 for b in exact) <= 1000
    assert all(b.snapshots is None and b.low_yes_bid is None and b.high_yes_ask is None for b in sampled)
    by_start = {e["start"]: e for e in expected}
    for b in exact:
        e = by_start[b.start]
        assert (b.low_yes_bid, b.high_yes_ask, b.snapshots) == (
            e["low_yes_bid"],
            e["high_yes_ask"],
            e["snapshots"],
        )


@pytest.mark.postgres
def test_it_agrees_with_the_reference_aggregation_on_postgresql():
    market = MarketFactory.create()
    _history(market, 4000, step=timedelta(seconds=7), backfill_every=5)
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=6)
    width = timeseries.bucket_width(end - start, 300)

    sql = timeseries.downsample(market, start=start, end=end, max_points=300)
    reference = timeseries._aggregate(
        timeseries._rows(market.pk, start, end, None),
        width=width,
        previous=timeseries._volume_before(market.pk, start, None),
    )

    assert connection.vendor == "postgresql"
    assert sql == reference


def test_it_reads_the_quote_in_force_at_a_moment():
    market = MarketFactory.create()
    rows = _history(market, 10)

    quote = timeseries.quote_at(market, rows[4].captured_at + timedelta(seconds=3))

    assert quote is not None
    assert (quote.time, quote.yes_bid, quote.volume) == (rows[4].captured_at, rows[4].yes_bid, rows[4].volume)
    assert timeseries.quote_at(market, T0 - timedelta(seconds=1)) is None
