"""The settlement sweep and the series/fee refresh, against recorded Kalshi objects."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from markets import locks, reference, settlement
from markets.kalshi import KalshiClient, parse_market
from markets.models import (
    Event,
    HistoryJob,
    HistoryRun,
    Market,
    PollOutcome,
    Series,
    SettlementCheck,
)
from markets.tests.history_exchange import HistoryExchange, market_like

pytestmark = pytest.mark.django_db

MIA = "KXMLBGAME-26AUG081610LAAMIA-MIA"
NCAAF = "KXNCAAFGAME-26JAN19MIAIND-MIA"
SCALAR = "KXWTAGTOTAL-26SEP19ZIDJEO-25"
ARCHIVED = "KXU3-26JUN-T4.8"


def _store(*markets):
    """Put markets in the database as the poller would have stored them."""
    pairs = []
    for market in markets:
        raw = json.dumps(market).encode()
        pairs.append((parse_market(raw), raw))
    settlement.store_market_objects(pairs)


def _as_open(market):
    """The same market as it looked while trading: active, no result yet."""
    return market_like(
        market,
        status="active",
        result="",
        settlement_ts=None,
        settlement_value_dollars=None,
        expiration_value="",
    )


@pytest.fixture
def recorded(kalshi_fixture):
    settled = {m["ticker"]: m for m in kalshi_fixture("2026-08_markets_settled.json")["markets"]}
    return {
        **settled,
        SCALAR: kalshi_fixture("2026-09_market_settled_scalar_fairprice.json"),
        ARCHIVED: kalshi_fixture("2026-09_historical_markets_page.json")["markets"][0],
        "NFL": kalshi_fixture("2026-10_market_single.json")["market"],
    }


def _sweep(client, **kwargs):
    return settlement.sweep_settlements(client=client, **kwargs)


def test_it_stores_results_of_markets_that_settled_since_the_last_sweep(kalshi_client, recorded):
    _store(_as_open(recorded[MIA]))
    ex = HistoryExchange()
    ex.add_market(recorded[MIA])
    client = kalshi_client(ex)

    with time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=False):
        run = _sweep(client)

    market = Market.objects.get(ticker=MIA)
    assert (market.status, market.result, market.settlement_value) == ("finalized", "yes", Decimal(1))
    assert market.settlement_ts == datetime(2026, 8, 8, 22, 57, 45, 764968, tzinfo=UTC)
    assert (run.outcome, run.settled, run.markets_updated) == (PollOutcome.OK, 1, 1)
    settled_listing = next(r for r in ex.requests if r.url.params.get("status") == "settled")
    # A first sweep looks back KALSHI_SETTLEMENT_LOOKBACK_HOURS (48 h).
    assert int(settled_listing.url.params["min_settled_ts"]) == int(
        datetime(2026, 8, 7, tzinfo=UTC).timestamp()
    )
    assert settled_listing.url.params["mve_filter"] == "exclude"


def test_it_stores_a_fair_price_settlement_value_not_zero_or_one(kalshi_client, recorded):
    _store(_as_open(recorded[SCALAR]))
    ex = HistoryExchange()
    ex.add_market(recorded[SCALAR])

    with time_machine.travel(datetime(2026, 9, 20, tzinfo=UTC), tick=False):
        _sweep(kalshi_client(ex))

    market = Market.objects.get(ticker=SCALAR)
    assert (market.status, market.result) == ("finalized", "scalar")
    assert market.settlement_value == Decimal("0.38")
    assert market.is_settled


def test_it_catches_a_market_that_closed_early(kalshi_client, recorded):
    # The poller last saw it open, closing on the 11th; it left the open listing on the 9th.
    _store(recorded["NFL"])
    ex = HistoryExchange()
    ex.add_market(market_like(recorded["NFL"], status="closed"))

    with time_machine.travel(datetime(2026, 10, 9, 6, tzinfo=UTC), tick=False):
        run = _sweep(kalshi_client(ex))

    assert Market.objects.get(ticker=recorded["NFL"]["ticker"]).status == "closed"
    assert Market.objects.awaiting_settlement().filter(ticker=recorded["NFL"]["ticker"]).exists()
    assert run.markets_updated == 1
    closed_listing = next(r for r in ex.requests if r.url.params.get("status") == "closed")
    assert "min_close_ts" in closed_listing.url.params


def test_it_rereads_markets_outside_the_listing_windows(kalshi_client, recorded):
    # Closed long ago (February) but stored as open: no listing window reaches it any more.
    _store(_as_open(recorded[NCAAF]))
    ex = HistoryExchange()
    ex.add_market(recorded[NCAAF])

    with time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=False):
        _sweep(kalshi_client(ex))

    assert Market.objects.get(ticker=NCAAF).status == "closed"
    by_ticker = [r for r in ex.requests if r.url.params.get("tickers")]
    assert by_ticker and by_ticker[0].url.params["tickers"] == NCAAF
    assert SettlementCheck.objects.get(market__ticker=NCAAF).missing_since is None


def test_it_finds_markets_kalshi_has_archived(kalshi_client, recorded):
    _store(
        market_like(
            recorded[ARCHIVED], status="closed", result="", settlement_ts=None, settlement_value_dollars=None
        )
    )
    ex = HistoryExchange()
    ex.add_market(recorded[ARCHIVED], archived=True)

    with time_machine.travel(datetime(2026, 10, 7, tzinfo=UTC), tick=False):
        run = _sweep(kalshi_client(ex))

    market = Market.objects.get(ticker=ARCHIVED)
    assert (market.status, market.result, market.settlement_value) == ("finalized", "no", Decimal(0))
    assert run.settled == 1
    assert any(r.url.path.endswith("/historical/markets") for r in ex.requests)


def test_it_keeps_the_latest_result_when_one_is_amended(kalshi_client, recorded, caplog):
    _store(recorded[MIA])  # finalized "yes"
    ex = HistoryExchange()
    ex.add_market(
        market_like(recorded[MIA], status="amended", result="no", settlement_value_dollars="0.0000")
    )
    client = kalshi_client(ex)

    with time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=True), caplog.at_level(logging.WARNING):
        amended = _sweep(client)
        ex.live[MIA]["status"] = "finalized"
        # No listing window reaches it any more: it is re-read because it is awaiting settlement.
        final = _sweep(client)

    market = Market.objects.get(ticker=MIA)
    assert (market.status, market.result, market.settlement_value) == ("finalized", "no", Decimal(0))
    assert amended.result_changes == 1
    assert any("result changed from 'yes' to 'no'" in m for m in amended.error_messages)
    assert "result changed from 'yes' to 'no'" in caplog.text
    assert final.settled == 1 and final.result_changes == 0


def test_it_reports_a_voided_market(kalshi_client, recorded):
    _store(_as_open(recorded[MIA]))
    ex = HistoryExchange()
    ex.add_market(market_like(recorded[MIA], result="", settlement_value_dollars=None))

    with time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=False):
        run = _sweep(kalshi_client(ex))

    market = Market.objects.get(ticker=MIA)
    assert (market.status, market.result) == ("finalized", "")
    assert Market.objects.filter(ticker=MIA, settlement_value__isnull=True).exists()
    assert any("voided" in m for m in run.error_messages)


def test_it_starts_where_the_last_sweep_began_and_rewrites_nothing_unchanged(kalshi_client, recorded):
    _store(_as_open(recorded[MIA]))
    ex = HistoryExchange()
    ex.add_market(recorded[MIA])
    client = kalshi_client(ex)
    first_at = datetime(2026, 8, 8, 23, tzinfo=UTC)  # three minutes after it settled
    with time_machine.travel(first_at, tick=False):
        _sweep(client)
    ex.requests.clear()

    with time_machine.travel(first_at + timedelta(minutes=5), tick=False):
        second = _sweep(client)

    listing = next(r for r in ex.requests if r.url.params.get("status") == "settled")
    assert int(listing.url.params["min_settled_ts"]) == int((first_at - settlement.OVERLAP).timestamp())
    assert second.markets_updated == 0 and second.markets == 1


def test_it_gives_up_on_a_market_kalshi_no_longer_lists(kalshi_client, recorded):
    _store(market_like(recorded[NCAAF], ticker="KXNCAAFGAME-26JAN19MIAIND-GONE", status="closed"))
    ex = HistoryExchange()
    client = kalshi_client(ex)
    start = datetime(2026, 8, 9, tzinfo=UTC)

    def tickers_asked():
        return [r.url.params["tickers"] for r in ex.requests if r.url.params.get("tickers")]

    with time_machine.travel(start, tick=False):
        first = _sweep(client)
    assert tickers_asked() == ["KXNCAAFGAME-26JAN19MIAIND-GONE"] * 2  # live, then the archive
    assert "1 not found" in first.summary
    check = SettlementCheck.objects.get()
    assert check.missing_since == start

    ex.requests.clear()
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        _sweep(client)
    assert tickers_asked() == []  # not asked again before KALSHI_SETTLEMENT_RECHECK_INTERVAL

    with time_machine.travel(start + timedelta(hours=1), tick=False):
        _sweep(client)
    assert len(tickers_asked()) == 2

    ex.requests.clear()
    with time_machine.travel(start + settlement.GIVE_UP_AFTER + timedelta(hours=1), tick=False):
        _sweep(client)
    assert tickers_asked() == []
    assert Market.objects.get().status == "closed"  # left as Kalshi last said


def test_a_sweep_is_skipped_while_another_holds_the_lock(kalshi_client):
    ex = HistoryExchange()
    with locks.exclusive(settlement.SWEEP_LOCK) as held:
        assert held is not None
        run = _sweep(kalshi_client(ex))

    assert run.outcome == PollOutcome.SKIPPED and not ex.requests


def test_a_failed_sweep_is_recorded_and_does_not_move_the_window(kalshi_client, recorded):
    ex = HistoryExchange()
    ex.fail(lambda r: r.url.params.get("status") == "settled", status=503)
    client = kalshi_client(ex, max_retries=0)

    with (
        time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=False),
        pytest.raises(Exception, match="503"),
    ):
        _sweep(client)

    run = HistoryRun.objects.get()
    assert run.outcome == PollOutcome.FAILED
    assert not HistoryRun.objects.of_kind(HistoryJob.SETTLEMENT_SWEEP).successful().exists()


def test_the_command_runs_one_sweep(kalshi_client, recorded, monkeypatch):
    _store(_as_open(recorded[MIA]))
    ex = HistoryExchange()
    ex.add_market(recorded[MIA])
    monkeypatch.setattr(KalshiClient, "from_settings", lambda **kw: kalshi_client(ex))
    out = io.StringIO()

    with time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=False):
        call_command("sweepsettlements", stdout=out)

    assert "1 newly settled" in out.getvalue()
    assert Market.objects.get(ticker=MIA).is_settled


# --------------------------------------------------------------------------------------------------
# Series and fee refresh
# --------------------------------------------------------------------------------------------------


def test_it_keeps_series_and_event_fees_current(kalshi_client, kalshi_fixture, caplog):
    payloads = kalshi_fixture("2026-08_series_fee_fields.json")["payloads"]
    Series.objects.create(
        ticker="KXMLBGAME", fee_type="quadratic", fee_multiplier=Decimal(1), raw={"old": True}
    )
    event = kalshi_fixture("2026-10_events_page.json")["events"][0]
    ex = HistoryExchange(
        series=[p["series"] for p in payloads.values()],
        events=[dict(event, fee_type_override="quadratic", fee_multiplier_override=0.25)],
    )
    client = kalshi_client(ex)

    with caplog.at_level(logging.WARNING):
        run = reference.refresh_series(client=client)

    mlb = Series.objects.get(ticker="KXMLBGAME")
    assert (mlb.fee_type, mlb.fee_multiplier) == ("quadratic_with_maker_fees", Decimal("0.5"))
    assert Series.objects.get(ticker="KXATPDOUBLES").fee_multiplier == 1
    stored = Event.objects.get(ticker=event["event_ticker"])
    assert (stored.fee_type_override, stored.fee_multiplier_override) == ("quadratic", Decimal("0.25"))
    assert stored.series is not None and stored.series.ticker == "KXNFLGAME"
    assert run.markets_updated == 5 and run.outcome == PollOutcome.OK
    assert any("KXMLBGAME: fee quadratic x1" in m for m in run.error_messages)
    assert "Fee of series KXMLBGAME changed" in caplog.text

    again = reference.refresh_series(client=client)
    assert again.markets_updated == 0  # nothing changed, nothing rewritten


def test_the_beat_schedule_runs_the_sweep_and_the_refresh(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["sweep-settlements"]["task"] == "markets.tasks.sweep_settlements"
    assert schedule["sweep-settlements"]["schedule"] == settings.KALSHI_SETTLEMENT_SWEEP_INTERVAL
    assert schedule["refresh-series"]["task"] == "markets.tasks.refresh_series"
    from kalshi_insights.celery import app
    from markets import tasks  # noqa: F401  (registers them, as the worker's autodiscovery does)

    registered = app.tasks.keys()
    assert {
        "markets.tasks.sweep_settlements",
        "markets.tasks.refresh_series",
        "markets.tasks.backfill_markets",
    } <= registered


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_the_sweep_task(kalshi_client, recorded, monkeypatch):
    import time

    from celery.contrib.testing.worker import start_worker

    from kalshi_insights.celery import app
    from markets import tasks

    _store(_as_open(recorded[MIA]))
    ex = HistoryExchange()
    ex.add_market(recorded[MIA])
    monkeypatch.setattr(KalshiClient, "from_settings", lambda **kw: kalshi_client(ex))

    with (
        time_machine.travel(datetime(2026, 8, 9, tzinfo=UTC), tick=True),
        start_worker(app, pool="solo", perform_ping_check=False),
    ):
        tasks.sweep_settlements.delay()
        deadline = time.monotonic() + 30
        while not HistoryRun.objects.filter(
            kind=HistoryJob.SETTLEMENT_SWEEP, finished_at__isnull=False
        ).exists():
            assert time.monotonic() < deadline, "the worker did not finish the sweep within 30 s"
            time.sleep(0.1)

    run = HistoryRun.objects.get(kind=HistoryJob.SETTLEMENT_SWEEP)
    assert (run.outcome, run.trigger, run.settled) == (PollOutcome.OK, "celery", 1)
    assert Market.objects.get(ticker=MIA).result == "yes"
