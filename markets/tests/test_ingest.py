from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
import time_machine

from markets import ingest, locks
from markets.kalshi import KalshiError
from markets.models import Market, MarketSnapshot, PollOutcome, PollRun, SnapshotSource

pytestmark = pytest.mark.django_db

SETTLED = "2026-08_markets_settled.json"
LIVE = "2026-10_markets_page.json"


def _exchange(kalshi_fixture, pages, counter=None):
    """A handler serving `pages` (lists of market dicts) with cursors, plus events/series."""

    def handler(request: httpx.Request) -> httpx.Response:
        if counter is not None:
            counter.append(request)
        path = request.url.path
        if path.endswith("/markets"):
            index = int(request.url.params.get("cursor") or 0)
            cursor = str(index + 1) if index + 1 < len(pages) else ""
            return httpx.Response(200, json={"markets": pages[index], "cursor": cursor})
        if path.endswith("/events"):
            return httpx.Response(200, json=kalshi_fixture("2026-10_events_page.json"))
        if path.endswith("/series"):
            return httpx.Response(200, json={"series": []})
        if "/series/" in path:
            return httpx.Response(200, json=kalshi_fixture("2026-10_series_single.json"))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})

    return handler


@pytest.fixture
def live_markets(kalshi_fixture):
    return kalshi_fixture(LIVE)["markets"]


def test_it_stores_markets_and_one_snapshot_each_on_first_cycle(kalshi_client, kalshi_fixture, live_markets):
    settled = kalshi_fixture(SETTLED)["markets"]
    client = kalshi_client(_exchange(kalshi_fixture, [settled[:20], settled[20:] + live_markets]))

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK
    assert (run.pages, run.markets_seen, run.markets_created) == (2, 46, 46)
    assert run.snapshots_written == 46 == MarketSnapshot.objects.count()
    market = Market.objects.get(ticker="KXNFLGAME-26OCT08TBDAL-DAL")
    assert market.yes_bid == Decimal("0.8000")
    assert market.yes_bid_size == Decimal("16529.55")
    assert market.volume == Decimal("271926.68")
    assert market.raw is not None and market.raw["ticker"] == market.ticker
    snap = market.snapshots.get()
    assert snap.source == SnapshotSource.POLL
    assert snap.open_interest == Decimal("242310.93")


def test_it_skips_unchanged_quotes_and_writes_changed_ones(kalshi_client, kalshi_fixture, live_markets):
    pages = [live_markets]
    client = kalshi_client(_exchange(kalshi_fixture, pages))
    ingest.run_poll_cycle(client=client)

    second = ingest.run_poll_cycle(client=client)
    assert (second.snapshots_written, second.unchanged_skipped) == (0, 2)

    changed = json.loads(json.dumps(live_markets))
    changed[0]["yes_bid_dollars"] = "0.8050"  # a sub-cent move
    pages[0] = changed
    third = ingest.run_poll_cycle(client=client)
    assert (third.snapshots_written, third.unchanged_skipped) == (1, 1)
    market = Market.objects.get(ticker=changed[0]["ticker"])
    assert market.yes_bid == Decimal("0.8050")
    assert list(market.snapshots.order_by("captured_at").values_list("yes_bid", flat=True)) == [
        Decimal("0.8000"),
        Decimal("0.8050"),
    ]


def test_it_writes_a_heartbeat_snapshot_when_quote_is_stale(
    kalshi_client, kalshi_fixture, live_markets, settings
):
    settings.KALSHI_SNAPSHOT_HEARTBEAT = 600
    client = kalshi_client(_exchange(kalshi_fixture, [live_markets]))
    with time_machine.travel("2026-10-06 07:00:00Z", tick=False):
        ingest.run_poll_cycle(client=client)
    with time_machine.travel("2026-10-06 07:05:00Z", tick=False):
        assert ingest.run_poll_cycle(client=client).snapshots_written == 0
    with time_machine.travel("2026-10-06 07:10:01Z", tick=False):
        assert ingest.run_poll_cycle(client=client).snapshots_written == 2
    assert MarketSnapshot.objects.count() == 4


def test_it_skips_a_malformed_market_and_keeps_the_rest(kalshi_client, kalshi_fixture, live_markets, caplog):
    broken = json.loads(json.dumps(live_markets))
    broken[0]["yes_bid_dollars"] = "1.7500"  # outside [0, 1]
    client = kalshi_client(_exchange(kalshi_fixture, [broken]))

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.PARTIAL
    assert run.errors == 1
    assert broken[0]["ticker"] in run.error_messages[0]
    assert broken[0]["ticker"] in caplog.text
    assert list(Market.objects.values_list("ticker", flat=True)) == [broken[1]["ticker"]]


def test_an_infinite_count_on_a_known_market_skips_only_that_market(
    kalshi_client, kalshi_fixture, live_markets
):
    # A known market whose metadata did not change takes the quick path (quote only); an
    # "Infinity" count there once reached COPY, and numeric(20, 2) refused the whole page.
    pages = [json.loads(json.dumps(live_markets))]
    client = kalshi_client(_exchange(kalshi_fixture, pages))
    with time_machine.travel("2026-10-06 07:00:00Z", tick=False):
        ingest.run_poll_cycle(client=client)
    pages[0][0]["volume_fp"] = "Infinity"
    pages[0][1]["volume_fp"] = "123456.00"
    with time_machine.travel("2026-10-06 07:00:15Z", tick=False):
        run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.PARTIAL
    assert run.errors == 1 and pages[0][0]["ticker"] in run.error_messages[0]
    assert run.snapshots_written == 1
    latest = MarketSnapshot.objects.filter(market__ticker=pages[0][1]["ticker"]).latest("captured_at")
    assert latest.volume == Decimal("123456.00")


def test_a_ticker_with_a_comma_is_still_recognised(kalshi_client, kalshi_fixture, live_markets):
    # The known-market look-up sends a page's tickers comma-joined; a comma in one falls back.
    markets = json.loads(json.dumps(live_markets))
    markets[0]["ticker"] = "ODD,TICKER"
    client = kalshi_client(_exchange(kalshi_fixture, [markets]))
    with time_machine.travel("2026-10-06 07:00:00Z", tick=False):
        ingest.run_poll_cycle(client=client)
    with time_machine.travel("2026-10-06 07:00:15Z", tick=False):
        run = ingest.run_poll_cycle(client=client)
    assert (run.markets_created, run.unchanged_skipped, run.snapshots_written) == (0, 2, 0)


def test_it_is_idempotent_over_the_same_page(kalshi_client, kalshi_fixture, live_markets):
    client = kalshi_client(_exchange(kalshi_fixture, [live_markets + live_markets]))
    ingest.run_poll_cycle(client=client)
    ingest.run_poll_cycle(client=client)
    assert Market.objects.count() == 2
    assert MarketSnapshot.objects.count() == 2


def test_it_blocks_a_concurrent_cycle(kalshi_client, kalshi_fixture, live_markets):
    client = kalshi_client(_exchange(kalshi_fixture, [live_markets]))
    with locks.exclusive(ingest.POLL_LOCK_NAME) as held:
        assert held is not None
        run = ingest.run_poll_cycle(client=client)
    assert run.outcome == PollOutcome.SKIPPED
    assert client.requests_made == 0
    assert ingest.run_poll_cycle(client=client).outcome == PollOutcome.OK


def test_it_records_a_failed_run_and_keeps_stored_pages(kalshi_client, kalshi_fixture, live_markets):
    def handler(request):
        if request.url.params.get("cursor") == "1":
            return httpx.Response(503, text="upstream down")
        return httpx.Response(200, json={"markets": live_markets, "cursor": "1"})

    client = kalshi_client(handler, max_retries=1)
    with pytest.raises(KalshiError, match="503"):
        ingest.run_poll_cycle(client=client)
    run = PollRun.objects.get()
    assert run.outcome == PollOutcome.FAILED
    assert run.pages == 1
    assert run.finished_at is not None
    assert MarketSnapshot.objects.count() == 2


def test_it_fills_in_events_and_series_after_paging(kalshi_client, kalshi_fixture, live_markets):
    client = kalshi_client(_exchange(kalshi_fixture, [live_markets]))
    ingest.run_poll_cycle(client=client)
    market = Market.objects.select_related("event__series").get(ticker="KXNFLGAME-26OCT08TBDAL-DAL")
    assert market.event.title == "TB Buccaneers vs DAL Cowboys"
    series = market.event.series
    assert series is not None
    assert series.ticker == "KXNFLGAME"
    assert series.fee_type == "quadratic_with_maker_fees"
    assert series.fee_multiplier == Decimal(1)


def test_it_keeps_raw_json_with_escapes_intact_when_asked(
    kalshi_client, kalshi_fixture, live_markets, settings
):
    settings.KALSHI_STORE_RAW_SNAPSHOTS = True
    tricky = json.loads(json.dumps(live_markets))
    title = 'Will "it" rain?\tBack\\slash\nnew line, and caf\u00e9 \u2019'
    tricky[0]["title"] = title
    client = kalshi_client(_exchange(kalshi_fixture, [tricky]))

    ingest.run_poll_cycle(client=client)

    snap = MarketSnapshot.objects.get(market__ticker=tricky[0]["ticker"])
    assert snap.raw is not None and snap.raw["title"] == title
    assert Market.objects.get(ticker=tricky[0]["ticker"]).title == title


def test_it_reads_the_legacy_cents_shape(kalshi_client, kalshi_fixture):
    legacy = kalshi_fixture("legacy_2026-01_markets_page.json")["markets"]
    for market in legacy:  # the shape before the dollar fields existed
        for key in [k for k in market if k.endswith(("_dollars", "_fp"))]:
            del market[key]
    legacy[0]["yes_bid"], legacy[0]["yes_ask"], legacy[0]["volume"] = 41, 43, 1200
    client = kalshi_client(_exchange(kalshi_fixture, [legacy]))

    run = ingest.run_poll_cycle(client=client)

    assert run.outcome == PollOutcome.OK
    market = Market.objects.get(ticker=legacy[0]["ticker"])
    assert (market.yes_bid, market.yes_ask, market.volume) == (
        Decimal("0.41"),
        Decimal("0.43"),
        Decimal(1200),
    )
    assert market.snapshots.get().yes_ask == Decimal("0.43")
    legacy[0]["yes_ask"] = 44
    assert ingest.run_poll_cycle(client=client).snapshots_written == 1


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-0.0100", "0.41.0", ""])
def test_it_skips_a_market_whose_quote_is_not_a_finite_decimal_in_range(
    kalshi_client, kalshi_fixture, live_markets, bad
):
    broken = json.loads(json.dumps(live_markets))
    broken[0]["volume_fp"] = bad
    client = kalshi_client(_exchange(kalshi_fixture, [broken]))

    run = ingest.run_poll_cycle(client=client)

    assert (run.outcome, run.errors, run.snapshots_written) == (PollOutcome.PARTIAL, 1, 1)
    assert broken[0]["ticker"] in run.error_messages[0]
    assert not Market.objects.filter(ticker=broken[0]["ticker"]).exists()


def test_a_legacy_empty_book_is_stored_in_todays_convention(kalshi_client, kalshi_fixture):
    # Jan 2026 wrote "no ask" as yes_ask 0 (and no_bid 100): stored, it reads like today's books,
    # so charts and backtests see one convention. The quote a day ago was not known: NULL.
    legacy = kalshi_fixture("legacy_2026-01_markets_page.json")["markets"]
    client = kalshi_client(_exchange(kalshi_fixture, [legacy]))

    assert ingest.run_poll_cycle(client=client).outcome == PollOutcome.OK

    book = (Decimal(0), Decimal(1), Decimal(0), Decimal(1))
    for market in Market.objects.all():
        assert (market.yes_bid, market.yes_ask, market.no_bid, market.no_ask) == book, market.ticker
        assert market.previous_yes_ask is None
        snap = market.snapshots.get()
        assert (snap.yes_bid, snap.yes_ask, snap.no_bid, snap.no_ask) == book
    assert Market.objects.count() == len(legacy)
    # Seen again unchanged: nothing new to store.
    assert ingest.run_poll_cycle(client=client).snapshots_written == 0
