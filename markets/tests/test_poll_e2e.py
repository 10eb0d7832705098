"""End to end: the real client over real HTTP to the fake exchange → a poll cycle → PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from markets import ingest
from markets.fakeexchange import QueuedFault, RunningExchange, serve
from markets.kalshi import KalshiClient, KalshiError
from markets.models import Event, Market, MarketSnapshot, PollOutcome, PollRun, Series

pytestmark = pytest.mark.django_db

QUOTE = (
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "yes_bid_size",
    "yes_ask_size",
    "volume",
    "volume_24h",
)


@pytest.fixture
def fake() -> Iterator[RunningExchange]:
    with serve(seed=11) as running:
        yield running


@pytest.fixture
def client(fake: RunningExchange) -> Iterator[KalshiClient]:
    with KalshiClient(base_url=fake.base_url, sleep=lambda s: None, max_retries=10) as c:
        yield c


def polled(fake: RunningExchange) -> dict[str, dict[str, str]]:
    """What the poller should see: open, non-combo markets, as the exchange renders them now."""
    return {
        m.ticker: m.render()
        for m in fake.exchange.markets.values()
        if m.status == "active" and not m.is_combo
    }


def assert_stored(market: Market | MarketSnapshot, shown: dict[str, str]) -> None:
    for name in QUOTE:
        key = (
            f"{name}_fp"
            if name in ("yes_bid_size", "yes_ask_size", "volume", "volume_24h")
            else f"{name}_dollars"
        )
        assert getattr(market, name) == Decimal(shown[key]), (shown["ticker"], name)
    assert market.open_interest == Decimal(shown["open_interest_fp"])


def test_it_stores_the_fake_exchanges_open_markets(fake, client):
    expected = polled(fake)

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK, run.error_messages
    assert (run.pages, run.markets_seen, run.markets_created) == (1, len(expected), len(expected))
    assert run.snapshots_written == len(expected) == MarketSnapshot.objects.count()
    assert set(Market.objects.values_list("ticker", flat=True)) == set(expected)
    for market in Market.objects.all():
        assert_stored(market, expected[market.ticker])
        assert_stored(market.snapshots.get(), expected[market.ticker])
    assert run.requests == fake.exchange.requests["total"] == client.requests_made
    # Reference data came from /events and /series on the same exchange.
    dal = Market.objects.with_event().get(ticker="KXNFLGAME-26OCT08TBDAL-DAL")
    assert dal.event.title == "TB Buccaneers vs DAL Cowboys"
    assert dal.event.series is not None and dal.event.series.fee_type == "quadratic_with_maker_fees"
    assert not Event.objects.filter(synced_at__isnull=True).exists()
    assert not Series.objects.filter(synced_at__isnull=True).exists()


def test_the_next_cycle_writes_snapshots_only_for_markets_that_moved(fake, client):
    ingest.run_poll_cycle(client=client)
    assert ingest.run_poll_cycle(client=client).snapshots_written == 0

    moved = fake.exchange.advance(tickers=["KXNFLGAME-26OCT08TBDAL-TB", "KXNFLGAME-26AUG13GBPIT-GB"])
    run = ingest.run_poll_cycle(client=client)

    assert sorted(moved) == ["KXNFLGAME-26AUG13GBPIT-GB", "KXNFLGAME-26OCT08TBDAL-TB"]
    assert (run.snapshots_written, run.unchanged_skipped) == (2, run.markets_seen - 2)
    expected = polled(fake)
    for ticker in moved:
        market = Market.objects.get(ticker=ticker)
        first, second = market.snapshots.order_by("captured_at")
        assert_stored(second, expected[ticker])
        assert_stored(market, expected[ticker])
        assert first.volume is not None and second.volume is not None
        assert second.volume > first.volume  # a forced move always trades

    # A random tick: exactly the polled markets it moved get a snapshot.
    randomly = set(fake.exchange.advance(fraction=0.3)) & set(expected)
    assert randomly
    run = ingest.run_poll_cycle(client=client)
    assert run.snapshots_written == len(randomly)
    latest = MarketSnapshot.objects.filter(captured_at=MarketSnapshot.objects.latest().captured_at)
    assert set(latest.values_list("market__ticker", flat=True)) == randomly


def test_a_cycle_rides_out_429s_and_5xx(fake, client):
    fake.exchange.set_faults(rate_429=0.3, rate_5xx=0.2)

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK, run.error_messages
    assert run.markets_created == run.snapshots_written == len(polled(fake))
    served = fake.exchange.faults_served
    assert served["429"] > 0 and served["5xx"] > 0
    # Every attempt is counted, the refused ones too: exactly what the exchange answered.
    assert run.requests == fake.exchange.requests["total"]
    assert run.requests > sum(served.values())


def test_a_timeout_is_retried_over_real_http(fake):
    fake.exchange.set_faults(queue=[QueuedFault("slow", "/markets", seconds=1.5)])
    with KalshiClient(base_url=fake.base_url, timeout=0.5, sleep=lambda s: None) as client:
        run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK
    assert fake.exchange.faults_served["slow"] == 1
    assert run.requests == fake.exchange.requests["total"]


def test_a_truncated_page_is_read_again():
    with (
        serve(seed=11, extra_markets=1500) as fake,
        KalshiClient(base_url=fake.base_url, sleep=lambda s: None) as client,
    ):
        fake.exchange.set_faults(queue=[QueuedFault("malformed", "/markets", skip=1)])
        run = ingest.run_poll_cycle(client=client)
        assert fake.exchange.faults_served["malformed"] == 1
        assert fake.exchange.requests["GET /markets"] == 3  # two pages, the second one twice

    assert run.outcome == PollOutcome.OK, run.error_messages
    assert run.pages == 2
    assert Market.objects.count() == MarketSnapshot.objects.count() == len(polled(fake))


def test_pages_that_stay_truncated_fail_the_cycle_and_keep_the_pages_before_it():
    with (
        serve(seed=11, extra_markets=1500) as fake,
        KalshiClient(base_url=fake.base_url, sleep=lambda s: None, max_retries=2) as client,
    ):
        broken = QueuedFault("malformed", "/markets")
        fake.exchange.set_faults(queue=[QueuedFault("malformed", "/markets", skip=1), broken, broken])
        with pytest.raises(KalshiError, match="malformed JSON, cut short or garbled"):
            ingest.run_poll_cycle(client=client)
        assert fake.exchange.faults_served["malformed"] == 3

    run = PollRun.objects.get()
    assert run.outcome == PollOutcome.FAILED
    assert run.pages == 1 and run.finished_at is not None
    assert "after 3 attempt(s): the response body was malformed JSON" in run.error_messages[-1]
    assert Market.objects.count() == MarketSnapshot.objects.count() == 1000


def test_from_settings_reaches_the_fake_through_the_shared_throttle(fake, settings):
    settings.KALSHI_API_BASE = fake.base_url
    with KalshiClient.from_settings() as client:
        run = ingest.run_poll_cycle(client=client, trigger="test")

    assert client.base_url == fake.base_url
    assert type(client.throttle).__name__ == "RedisTokenBucket"
    assert (run.outcome, run.trigger, run.snapshots_written) == (PollOutcome.OK, "test", len(polled(fake)))


def test_a_dropped_connection_is_retried(fake, client):
    fake.exchange.set_faults(
        queue=[QueuedFault("disconnect", "/markets"), QueuedFault("disconnect", "/events")]
    )

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK, run.error_messages
    assert fake.exchange.faults_served["disconnect"] == 2
    assert run.requests == fake.exchange.requests["total"]
    assert Market.objects.with_event().get(ticker="KXNFLGAME-26OCT08TBDAL-DAL").event.title
