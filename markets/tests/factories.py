"""factory_boy factories for the markets models (typed: `MarketFactory.create()` is a Market)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from factory.declarations import LazyAttribute, LazyAttributeSequence, LazyFunction, Sequence, SubFactory
from factory.django import DjangoModelFactory

from markets.models import (
    Event,
    Market,
    MarketSnapshot,
    MarketStatus,
    PollOutcome,
    PollRun,
    Series,
    SnapshotSource,
)


class SeriesFactory(DjangoModelFactory[Series]):
    class Meta:
        model = Series
        django_get_or_create = ("ticker",)

    ticker = Sequence(lambda n: f"KXTEST{n}")
    title = LazyAttribute(lambda s: f"Test series {s.ticker}")
    category = "Sports"
    fee_type = "quadratic"
    synced_at = LazyFunction(timezone.now)


class EventFactory(DjangoModelFactory[Event]):
    class Meta:
        model = Event
        django_get_or_create = ("ticker",)

    series = SubFactory(SeriesFactory)
    ticker = LazyAttributeSequence(lambda e, n: f"{e.series.ticker}-26OCT{n:02d}")
    title = LazyAttribute(lambda e: f"Event {e.ticker}")
    category = LazyAttribute(lambda e: e.series.category)
    mutually_exclusive = True
    synced_at = LazyFunction(timezone.now)


class MarketFactory(DjangoModelFactory[Market]):
    """An open market with a two-sided book: 41¢ bid, 43¢ ask, last 42¢ (40¢ a day ago)."""

    class Meta:
        model = Market
        django_get_or_create = ("ticker",)

    event = SubFactory(EventFactory)
    ticker = LazyAttributeSequence(lambda m, n: f"{m.event.ticker}-M{n}")
    title = LazyAttribute(lambda m: f"Will {m.ticker} happen?")
    yes_sub_title = ""
    status = MarketStatus.ACTIVE
    open_time = LazyFunction(lambda: timezone.now() - timedelta(days=2))
    close_time = LazyFunction(lambda: timezone.now() + timedelta(days=3))
    expiration_time = LazyAttribute(lambda m: m.close_time)
    rules_primary = "If the thing happens, the market resolves to Yes."
    yes_bid = Decimal("0.4100")
    yes_ask = Decimal("0.4300")
    no_bid = Decimal("0.5700")
    no_ask = Decimal("0.5900")
    last_price = Decimal("0.4200")
    previous_price = Decimal("0.4000")
    previous_yes_bid = Decimal("0.3900")
    previous_yes_ask = Decimal("0.4100")
    yes_bid_size = Decimal("120.00")
    yes_ask_size = Decimal("80.50")
    volume = Decimal("10000.00")
    volume_24h = Decimal("1500.00")
    open_interest = Decimal("5000.00")
    price_level_structure = "linear_cent"
    price_ranges = LazyFunction(lambda: [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}])
    last_snapshot_at = LazyFunction(timezone.now)


class MarketSnapshotFactory(DjangoModelFactory[MarketSnapshot]):
    class Meta:
        model = MarketSnapshot

    market = SubFactory(MarketFactory)
    captured_at = LazyFunction(timezone.now)
    source = SnapshotSource.POLL
    yes_bid = Decimal("0.4100")
    yes_ask = Decimal("0.4300")
    no_bid = Decimal("0.5700")
    no_ask = Decimal("0.5900")
    last_price = Decimal("0.4200")
    volume = Decimal("10000.00")
    volume_24h = Decimal("1500.00")
    open_interest = Decimal("5000.00")


class PollRunFactory(DjangoModelFactory[PollRun]):
    """A successful cycle that finished two seconds after it started."""

    class Meta:
        model = PollRun

    started_at = LazyFunction(timezone.now)
    finished_at = LazyAttribute(lambda r: r.started_at + timedelta(seconds=2))
    trigger = "celery"
    pages = 1
    markets_seen = 10
    snapshots_written = 4
    unchanged_skipped = 6
    requests = 2
    outcome = PollOutcome.OK
