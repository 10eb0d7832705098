"""Backfills: candles → snapshots on both sides of the historical cutoff, idempotent, resumable."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import time_machine
from django.core.management import CommandError, call_command

from markets import backfill
from markets.backfill import BackfillError, Selection, run_backfill
from markets.kalshi import KalshiClient, KalshiError
from markets.models import (
    BackfillKind,
    BackfillProgress,
    HistoryJob,
    HistoryRun,
    Market,
    MarketSnapshot,
    PollOutcome,
    SnapshotSource,
    Trade,
)
from markets.tests.history_exchange import HistoryExchange, market_like

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 10, 7, tzinfo=UTC)
MLB = "2026-08_candlesticks_1m_mlb.json"
TOR, NYM, CIN = (
    "KXMLBGAME-26AUG071840TORPHI-TOR",
    "KXMLBGAME-26AUG071840NYMPIT-NYM",
    "KXMLBGAME-26AUG071845CINWSH-CIN",
)
ARCHIVED = "KXU3-26JUN-T4.8"
LIVE_U3 = "KXU3-26NOV-T5.0"
SCALAR = "KXWTAGTOTAL-26SEP19ZIDJEO-25"


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def exchange(kalshi_fixture) -> HistoryExchange:
    """Kalshi as the recordings show it: three MLB games (1-minute candles, settled after the
    cutoff, so live), the KXU3-26JUN event (settled before it, so archived, with hourly candles
    for T4.8), a live KXU3 market with hourly candles, the scalar fair-price market."""
    ex = HistoryExchange()
    settled = {m["ticker"]: m for m in kalshi_fixture("2026-08_markets_settled.json")["markets"]}
    # The candle recording has no market objects; a settled game of the same series and day
    # supplies the shape, with the identity and schedule of these games.
    template = settled["KXMLBGAME-26AUG072010CHCKC-KC"]
    for ticker, recorded in kalshi_fixture(MLB)["markets"].items():
        ex.add_market(
            market_like(
                template,
                ticker=ticker,
                event_ticker=ticker.rsplit("-", 1)[0],
                open_time="2026-08-05T00:25:00Z",
                close_time="2026-08-08T02:49:33Z",
            )
        )
        ex.add_candles(ticker, 1, recorded["candlesticks"])
    for market in kalshi_fixture("2026-09_historical_markets_page.json")["markets"]:
        ex.add_market(market, archived=True)
    ex.add_candles(
        ARCHIVED,
        60,
        kalshi_fixture("2026-09_historical_candlesticks_hourly.json")["candlesticks"],
        historical=True,
    )
    ex.add_market(
        market_like(
            ex.archived[ARCHIVED],
            ticker=LIVE_U3,
            event_ticker="KXU3-26NOV",
            status="active",
            result="",
            close_time="2026-12-04T13:29:00Z",
            settlement_ts=None,
            settlement_value_dollars=None,
        )
    )
    ex.add_candles(LIVE_U3, 60, kalshi_fixture("2026-09_candlesticks_hourly_live.json")["candlesticks"])
    ex.add_market(kalshi_fixture("2026-09_market_settled_scalar_fairprice.json"))
    return ex


def _run(client, **kwargs):
    kwargs.setdefault("period", 60)
    selection = kwargs.pop("selection", None) or Selection(tickers=tuple(kwargs.pop("tickers")))
    return run_backfill(client=client, selection=selection, **kwargs)


def _snapshots(ticker):
    return list(MarketSnapshot.objects.filter(market__ticker=ticker).order_by("captured_at"))


def _candle_requests(ex):
    return [r for r in ex.requests if r.url.path.endswith("candlesticks")]


def _expected_cumulative(kalshi_fixture, ticker):
    total, out = Decimal(0), []
    for candle in kalshi_fixture(MLB)["markets"][ticker]["candlesticks"]:
        total += Decimal(candle["volume_fp"])
        out.append(total)
    return out


# --------------------------------------------------------------------------------------------------
# What gets stored
# --------------------------------------------------------------------------------------------------


def test_it_stores_each_live_candle_as_a_snapshot_at_its_end(kalshi_client, kalshi_fixture, exchange):
    client = kalshi_client(exchange)

    run = _run(client, tickers=[TOR, NYM, CIN], period=1)

    assert run.outcome == PollOutcome.OK
    assert (
        run.snapshots_written == 48 == MarketSnapshot.objects.filter(source=SnapshotSource.BACKFILL).count()
    )
    # Live markets: only the batch endpoint, never the per-market or the archive one.
    assert all(r.url.path == "/trade-api/v2/markets/candlesticks" for r in _candle_requests(exchange))
    assert all(r.url.params["period_interval"] == "1" for r in _candle_requests(exchange))
    tor = _snapshots(TOR)
    first = tor[0]
    assert first.captured_at == datetime.fromtimestamp(1786137900, UTC)
    assert first.source == SnapshotSource.BACKFILL and first.sequence is None
    assert (first.yes_bid, first.yes_ask) == (Decimal("0.33"), Decimal("0.34"))
    assert (first.no_bid, first.no_ask) == (Decimal("0.66"), Decimal("0.67"))
    assert first.last_price == Decimal("0.34")
    assert first.open_interest == Decimal("128107.77")
    assert (first.yes_bid_size, first.yes_ask_size, first.volume_24h) == (None, None, None)
    # Candles carry per-minute volume; snapshots hold the cumulative figure, as polled ones do.
    assert [s.volume for s in tor] == _expected_cumulative(kalshi_fixture, TOR)
    assert Market.objects.get(ticker=TOR).status == "finalized"


def test_it_leaves_the_price_empty_when_nothing_traded(kalshi_client, exchange):
    _run(kalshi_client(exchange), tickers=[CIN], period=1)

    quiet = [
        s
        for s in _snapshots(CIN)
        if s.captured_at in (datetime.fromtimestamp(1786138380, UTC), datetime.fromtimestamp(1786138620, UTC))
    ]
    assert len(quiet) == 2
    for snapshot in quiet:
        # Kalshi's `previous` (0.48, the last trade before the minute) is not copied forward.
        assert snapshot.last_price is None
        assert (snapshot.yes_bid, snapshot.yes_ask) == (Decimal("0.47"), Decimal("0.48"))


def test_it_routes_markets_across_the_historical_cutoff(kalshi_client, exchange):
    client = kalshi_client(exchange)

    run = _run(client, tickers=[ARCHIVED, LIVE_U3])

    paths = exchange.paths()
    assert paths[0] == "/historical/cutoff"
    # Only the market settled before the cutoff is looked up in, and fetched from, the archive.
    assert [
        r.url.params["tickers"] for r in exchange.requests if r.url.path.endswith("/historical/markets")
    ] == [ARCHIVED]
    assert f"/historical/markets/{ARCHIVED}/candlesticks" in paths
    batch = [r for r in exchange.requests if r.url.path.endswith("/markets/candlesticks")]
    assert batch and all(r.url.params["market_tickers"] == LIVE_U3 for r in batch)
    assert not any(LIVE_U3 in p and "historical" in p for p in paths)

    archived = _snapshots(ARCHIVED)
    assert [s.yes_ask for s in archived] == [Decimal("0.01"), Decimal("0.01"), Decimal("0.02")]
    assert all(s.last_price is None and s.yes_bid == 0 and s.no_ask == 1 for s in archived)
    assert [s.open_interest for s in archived] == [Decimal("1054.00")] * 3
    live = _snapshots(LIVE_U3)
    assert [s.last_price for s in live] == [None, None, Decimal("0.51")]
    assert live[-1].volume == Decimal("0.01")
    assert (live[-1].yes_bid, live[-1].no_bid) == (Decimal("0.12"), Decimal("0.25"))
    assert run.summary.startswith("2 markets (1 from Kalshi's archive)")


def test_it_lists_a_series_from_both_sides_of_the_cutoff(kalshi_client, exchange):
    client = kalshi_client(exchange)

    run = _run(client, selection=Selection(series=("KXU3",)))

    assert run.markets == 4  # T4.6/T4.7/T4.8 archived, T5.0 live
    assert {
        r.url.params.get("series_ticker")
        for r in exchange.requests
        if "markets" in r.url.path and not r.url.path.endswith("candlesticks")
    } == {"KXU3"}
    assert len(_snapshots(ARCHIVED)) == 3 and len(_snapshots(LIVE_U3)) == 3
    t47 = Market.objects.get(ticker="KXU3-26JUN-T4.7")
    assert (t47.status, t47.result, t47.settlement_value) == ("finalized", "no", Decimal(0))


def test_it_reads_legacy_cent_and_dollar_candles(kalshi_client, kalshi_fixture):
    ex = HistoryExchange()
    ex.add_market(kalshi_fixture("legacy_2026-01_event_single.json")["markets"][0])
    ex.add_candles(
        "KXELONMARS-99", 1440, kalshi_fixture("legacy_2026-01_candlesticks_daily.json")["candlesticks"]
    )

    run = _run(
        kalshi_client(ex),
        tickers=["KXELONMARS-99"],
        period=1440,
        since=datetime(2025, 10, 15, tzinfo=UTC),
        until=datetime(2026, 1, 13, tzinfo=UTC),
    )

    rows = _snapshots("KXELONMARS-99")
    assert run.snapshots_written == 90 == len(rows)
    last = rows[-1]
    assert last.captured_at == datetime.fromtimestamp(1768194000, UTC)
    assert (last.yes_bid, last.yes_ask, last.last_price) == (
        Decimal("0.06"),
        Decimal("0.07"),
        Decimal("0.06"),
    )
    assert (last.no_bid, last.no_ask) == (Decimal("0.93"), Decimal("0.94"))
    assert last.volume == sum(
        Decimal(c["volume"]) for c in kalshi_fixture("legacy_2026-01_candlesticks_daily.json")["candlesticks"]
    )
    assert last.open_interest == Decimal(13673)
    assert sum(1 for r in rows if r.last_price is None) == 22  # the days without a trade


def test_it_records_settled_markets_with_their_outcomes(kalshi_client, exchange):
    run = _run(kalshi_client(exchange), tickers=[SCALAR, ARCHIVED], candles=False)

    scalar = Market.objects.get(ticker=SCALAR)
    # A fair-price resolution pays its settlement value, not 0 or 1.
    assert (scalar.status, scalar.result, scalar.settlement_value) == ("finalized", "scalar", Decimal("0.38"))
    assert scalar.settlement_ts == datetime(2026, 9, 19, 4, 52, 14, 502181, tzinfo=UTC)
    assert Market.objects.get(ticker=ARCHIVED).settlement_value == 0
    assert not MarketSnapshot.objects.exists() and not _candle_requests(exchange)
    assert run.outcome == PollOutcome.OK


# --------------------------------------------------------------------------------------------------
# Cumulative volume when a run starts after the open
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def multi_day(kalshi_fixture):
    """One market with hourly candles over two UTC days. Kalshi's recordings hold no such series, so
    the 16 recorded one-minute candles of the CIN game are laid out an hour apart (values as recorded)."""
    ex = HistoryExchange()
    settled = {m["ticker"]: m for m in kalshi_fixture("2026-08_markets_settled.json")["markets"]}
    template = settled["KXMLBGAME-26AUG072010CHCKC-KC"]
    recorded = kalshi_fixture(MLB)["markets"][CIN]["candlesticks"]
    base = int(datetime(2026, 8, 6, 16, tzinfo=UTC).timestamp())
    hourly = [dict(c, end_period_ts=base + i * 3600) for i, c in enumerate(recorded)]
    ex.add_market(
        market_like(
            template, ticker=CIN, event_ticker=CIN.rsplit("-", 1)[0], open_time="2026-08-05T00:25:00Z"
        )
    )
    ex.add_candles(CIN, 60, hourly)
    return ex, hourly


def test_it_sums_the_volume_before_a_late_start_from_daily_candles(kalshi_client, multi_day):
    ex, hourly = multi_day
    expected, total = {}, Decimal(0)
    for candle in hourly:
        total += Decimal(candle["volume_fp"])
        expected[datetime.fromtimestamp(candle["end_period_ts"], UTC)] = total
    since = datetime(2026, 8, 7, 3, tzinfo=UTC)

    _run(kalshi_client(ex), tickers=[CIN], since=since)

    rows = _snapshots(CIN)
    assert [r.captured_at for r in rows] == [t for t in expected if t >= since]
    assert [r.volume for r in rows] == [expected[r.captured_at] for r in rows]
    daily, hourly_requests = _candle_requests(ex)
    # Daily candles up to the start give the volume through midnight; hourly ones from there on.
    assert daily.url.params["period_interval"] == "1440"
    assert int(daily.url.params["end_ts"]) == int(since.timestamp()) - 1
    assert (
        int(hourly_requests.url.params["start_ts"]) == int(datetime(2026, 8, 7, tzinfo=UTC).timestamp()) + 1
    )


def test_it_continues_the_volume_from_its_progress_on_a_later_run(kalshi_client, multi_day):
    ex, hourly = multi_day
    client = kalshi_client(ex)
    _run(client, tickers=[CIN], until=datetime(2026, 8, 7, 1, tzinfo=UTC))
    ex.requests.clear()

    _run(client, tickers=[CIN])

    rows = _snapshots(CIN)
    assert len(rows) == 16
    assert rows[-1].volume == sum(Decimal(c["volume_fp"]) for c in hourly)
    # The second run asked only for what came after the first one's end, with no volume prefix.
    [request] = _candle_requests(ex)
    assert int(request.url.params["start_ts"]) == int(datetime(2026, 8, 7, 1, tzinfo=UTC).timestamp()) + 1
    progress = BackfillProgress.objects.get(market__ticker=CIN, kind=BackfillKind.HOUR)
    assert progress.volume_at_until == rows[-1].volume


# --------------------------------------------------------------------------------------------------
# Idempotency, resume, rate limit
# --------------------------------------------------------------------------------------------------


def test_it_adds_nothing_and_fetches_no_candles_when_run_again(kalshi_client, exchange):
    client = kalshi_client(exchange)
    _run(client, tickers=[TOR, ARCHIVED], period=1)
    stored = MarketSnapshot.objects.count()
    exchange.requests.clear()

    again = _run(client, tickers=[TOR, ARCHIVED], period=1)

    assert MarketSnapshot.objects.count() == stored and again.snapshots_written == 0
    assert not _candle_requests(exchange)
    assert "2 markets already backfilled for this range" in again.summary


def test_it_skips_rows_already_stored_when_progress_is_lost(kalshi_client, exchange):
    client = kalshi_client(exchange)
    _run(client, tickers=[TOR], period=1)
    BackfillProgress.objects.all().delete()

    again = _run(client, tickers=[TOR], period=1)

    assert again.snapshots_written == 0 and MarketSnapshot.objects.count() == 16
    assert "(16 already stored)" in again.summary


def test_it_resumes_after_an_interruption_and_adds_exactly_the_missing_rows(
    kalshi_client, exchange, kalshi_fixture, monkeypatch
):
    # Small requests so one market's 16 minutes take several: the run breaks in the middle of it.
    monkeypatch.setattr(backfill, "MAX_BATCH_CANDLES", 5)
    exchange.live[CIN].update(open_time="2026-08-07T21:29:00Z", close_time="2026-08-07T21:46:00Z")
    calls: list[httpx.Request] = []

    def third_batch(request: httpx.Request) -> bool:
        if request.url.path.endswith("/markets/candlesticks"):
            calls.append(request)
        return len(calls) == 3 and calls[-1] is request

    exchange.fail(third_batch)
    client = kalshi_client(exchange, max_retries=0)

    with pytest.raises(KalshiError):
        _run(client, tickers=[CIN], period=1)

    failed = HistoryRun.objects.get()
    assert failed.outcome == PollOutcome.FAILED and "HTTP 500" in failed.error_messages[-1]
    kept = _snapshots(CIN)
    assert 0 < len(kept) < 16  # the batches before the failure are stored, with their progress
    progress = BackfillProgress.objects.get(market__ticker=CIN)
    assert progress.covered_until >= kept[-1].captured_at
    assert progress.volume_at_until == kept[-1].volume

    exchange.faults.clear()
    resumed = _run(client, tickers=[CIN], period=1)

    assert resumed.snapshots_written == 16 - len(kept)
    rows = _snapshots(CIN)
    assert [r.volume for r in rows] == _expected_cumulative(kalshi_fixture, CIN)
    first_resumed = min(int(r.url.params["start_ts"]) for r in _candle_requests(exchange)[3:])
    assert first_resumed > int(kept[-1].captured_at.timestamp())


def test_it_never_exceeds_the_configured_request_rate(exchange, settings, monkeypatch):
    """Every request of a backfill, and of another client running alongside, draws from the one
    Redis bucket: no 1-second window holds more than rate + burst requests."""
    settings.KALSHI_RATE_LIMIT = 10
    settings.KALSHI_RATE_BURST = 1
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("kalshi_insights:kalshi_rate")
    monkeypatch.setattr(backfill, "MAX_BATCH_CANDLES", 2)
    exchange.live[CIN].update(open_time="2026-08-07T21:29:00Z", close_time="2026-08-07T21:46:00Z")

    def make():
        return KalshiClient.from_settings(
            base_url="https://kalshi.test/trade-api/v2", transport=httpx.MockTransport(exchange)
        )

    stop = threading.Event()

    def other_process():
        with make() as other:
            while not stop.is_set():
                other.get_historical_cutoff()

    neighbour = threading.Thread(target=other_process)
    with time_machine.travel(NOW, tick=True), make() as client:
        neighbour.start()
        try:
            _run(client, tickers=[CIN], period=1)
        finally:
            stop.set()
            neighbour.join()

    times = exchange.times
    # Enough requests, from both clients, that an unthrottled run would overflow a 1-second window.
    assert len(times) > settings.KALSHI_RATE_LIMIT + settings.KALSHI_RATE_BURST
    assert sum(1 for r in exchange.requests if r.url.path.endswith("/historical/cutoff")) > 2
    assert len(_snapshots(CIN)) == 16
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= settings.KALSHI_RATE_LIMIT + settings.KALSHI_RATE_BURST
    # And it really waited: n requests at 10/s after a burst of 1 take at least (n - 1) / 10 s.
    assert times[-1] - times[0] >= (len(times) - 1 - 1) / settings.KALSHI_RATE_LIMIT


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_it_names_an_unknown_ticker_and_writes_nothing(kalshi_client, exchange):
    with pytest.raises(BackfillError, match=r"Kalshi has no market KXNOPE-99.*nothing was written"):
        _run(kalshi_client(exchange), tickers=[TOR, "KXNOPE-99"])

    assert not Market.objects.exists() and not MarketSnapshot.objects.exists()
    # It looked in both places before saying so.
    assert "/historical/markets" in exchange.paths()


def test_it_says_so_when_the_range_holds_no_data(kalshi_client, exchange):
    run = _run(kalshi_client(exchange), tickers=["KXU3-26JUN-T4.7"])  # archived, no candles recorded

    assert run.outcome == PollOutcome.OK and run.snapshots_written == 0
    assert "no candles in the requested range" in run.summary
    assert Market.objects.filter(ticker="KXU3-26JUN-T4.7").exists()  # its outcome is still recorded

    before_open = _run(kalshi_client(exchange), tickers=[TOR], until=datetime(2026, 8, 1, tzinfo=UTC))
    assert "1 markets not open in the range" in before_open.summary


@pytest.mark.parametrize(
    "cutoff",
    [
        {"trades_created_ts": "2026-08-07T00:00:00Z"},
        {"market_settled_ts": "soon", "trades_created_ts": "2026-08-07T00:00:00Z"},
        b"upstream connect error",
    ],
    ids=["missing", "garbled", "not-json"],
)
def test_it_stops_before_writing_when_the_cutoff_is_unusable(kalshi_client, exchange, cutoff):
    exchange.cutoff = cutoff

    with pytest.raises(
        BackfillError, match=r"Could not read Kalshi's historical cutoff.*Nothing was written"
    ):
        _run(kalshi_client(exchange), tickers=[TOR])

    assert not Market.objects.exists() and not MarketSnapshot.objects.exists()
    assert HistoryRun.objects.get().outcome == PollOutcome.FAILED


def test_it_stops_before_writing_when_the_cutoff_is_unreachable(kalshi_client, exchange):
    exchange.fail(lambda r: r.url.path.endswith("/historical/cutoff"), status=503)

    with pytest.raises(BackfillError, match="HTTP 503"):
        _run(kalshi_client(exchange, max_retries=1), tickers=[TOR])
    assert not Market.objects.exists()


def test_it_keeps_other_markets_when_one_is_refused(kalshi_client, exchange):
    # Kalshi answers the batch with a 400 naming no market; the markets are retried one by one.
    exchange.fail(lambda r: r.url.path.endswith("/markets/candlesticks"), status=400)
    exchange.fail(lambda r: r.url.path.endswith(f"/markets/{NYM}/candlesticks"), status=404)

    run = _run(kalshi_client(exchange), tickers=[TOR, NYM], period=1)

    assert run.outcome == PollOutcome.PARTIAL
    assert len(_snapshots(TOR)) == 16 and _snapshots(NYM) == []
    assert any(NYM in m and "HTTP 404" in m for m in run.error_messages)
    assert f"/series/KXMLBGAME/markets/{TOR}/candlesticks" in exchange.paths()


def test_it_refuses_contradictory_options():
    with pytest.raises(BackfillError, match="Choose the markets"):
        Selection()
    with pytest.raises(BackfillError, match="Did you mean 'settled'"):
        Selection(series=("KXU3",), status="finalized")
    with pytest.raises(BackfillError, match="do not combine"):
        Selection(tickers=("A",), series=("B",))


# --------------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------------


def test_it_stores_the_trade_tape_from_both_sides_of_the_cutoff_once(kalshi_client, kalshi_fixture, exchange):
    nfl = kalshi_fixture("2026-10_market_single.json")["market"]
    exchange.add_market(nfl)
    exchange.live_trades[nfl["ticker"]] = kalshi_fixture("2026-10_trades_page.json")["trades"]
    exchange.historical_trades[ARCHIVED] = kalshi_fixture("2026-09_historical_trades_page.json")["trades"]
    exchange.page_size = 2
    client = kalshi_client(exchange)

    run = _run(client, tickers=[ARCHIVED, nfl["ticker"]], trades=True, candles=False)

    assert run.trades_written == 6 == Trade.objects.count()
    assert {
        r.url.params["ticker"] for r in exchange.requests if r.url.path.endswith("/historical/trades")
    } == {ARCHIVED}
    assert {r.url.params["ticker"] for r in exchange.requests if r.url.path.endswith("/markets/trades")} == {
        nfl["ticker"]
    }
    trade = Trade.objects.get(trade_id="823957d0-baf3-6830-fba9-a42db0db73b9")
    assert trade.market.ticker == ARCHIVED
    assert (trade.count, trade.yes_price, trade.no_price) == (
        Decimal("700.60"),
        Decimal("0.01"),
        Decimal("0.99"),
    )
    assert (trade.taker_outcome_side, trade.taker_book_side, trade.is_block_trade) == ("no", "ask", False)
    assert trade.created_time == datetime(2026, 7, 1, 7, 0, 15, 526723, tzinfo=UTC)

    exchange.requests.clear()
    again = _run(client, tickers=[ARCHIVED, nfl["ticker"]], trades=True, candles=False)
    assert again.trades_written == 0 and Trade.objects.count() == 6
    assert not [r for r in exchange.requests if "trades" in r.url.path]

    # A day later only the live market's new trades are asked for, from where the last run ended.
    covered = BackfillProgress.objects.get(market__ticker=nfl["ticker"], kind=BackfillKind.TRADES)
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        _run(client, tickers=[ARCHIVED, nfl["ticker"]], trades=True, candles=False)
    [later] = [r for r in exchange.requests if "trades" in r.url.path]
    assert later.url.params["ticker"] == nfl["ticker"]
    assert int(later.url.params["min_ts"]) == int(covered.covered_until.timestamp()) - 1


# --------------------------------------------------------------------------------------------------
# Command, progress bar, Celery
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def offline_kalshi(exchange, monkeypatch):
    """`KalshiClient.from_settings()` (what the command and task build) talking to the exchange."""
    original = KalshiClient.from_settings

    def from_settings(**overrides):
        overrides.setdefault("transport", httpx.MockTransport(exchange))
        overrides.setdefault("base_url", "https://kalshi.test/trade-api/v2")
        overrides.setdefault("sleep", lambda s: None)
        return original(**overrides)

    monkeypatch.setattr(KalshiClient, "from_settings", from_settings)
    return exchange


def test_the_command_backfills_and_reports(offline_kalshi):
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "backfill", "--ticker", ARCHIVED, "--ticker", LIVE_U3, "--since", "2026-06-01", stdout=out, stderr=err
    )

    text = out.getvalue()
    assert "Backfill of ticker KXU3-26JUN-T4.8, ticker KXU3-26NOV-T5.0: 2 markets" in text
    assert "6 snapshots written" in text
    assert "Backfill hourly candles" not in err.getvalue()  # no progress bar when not on a terminal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Choose the markets"),
        (["--status", "active"], "Did you mean 'open'"),
        (["--ticker", "A", "--since", "last tuesday"], "not an ISO date"),
        (["--ticker", "A", "--period", "5"], "invalid choice"),
        (
            ["--ticker", TOR, "--since", "2026-08-02", "--until", "2026-08-01T00:00Z"],
            "--until must be after --since",
        ),
        (["--ticker", TOR, "--since", "2027-01-01"], "in the future"),
        (["--ticker", "KXNOPE-1"], "Kalshi has no market KXNOPE-1"),
    ],
)
def test_the_command_explains_bad_arguments(offline_kalshi, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("backfill", *args, stdout=io.StringIO())
    assert not MarketSnapshot.objects.exists()


def test_the_command_says_how_to_continue_after_an_interruption(offline_kalshi):
    offline_kalshi.fail(lambda r: r.url.path.endswith("/markets/candlesticks"), status=502)

    with pytest.raises(CommandError, match="run the same command again to continue"):
        call_command("backfill", "--ticker", TOR, "--period", "1", stdout=io.StringIO())


def test_it_drives_a_progress_bar_to_completion(kalshi_client, exchange):
    bars = []

    class Bar:
        def __init__(self, total, what):
            self.total, self.what, self.n, self.closed = total, what, 0, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def refresh(self):
            pass

        def close(self):
            self.closed = True

    _run(kalshi_client(exchange), tickers=[TOR, NYM, ARCHIVED], period=1, progress_bar=Bar)

    [bar] = bars
    assert bar.what == "1-minute candles" and bar.closed
    assert bar.n == bar.total == len(_candle_requests(exchange))


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_the_backfill_task(offline_kalshi):
    from celery.contrib.testing.worker import start_worker

    from kalshi_insights.celery import app
    from markets import tasks

    with time_machine.travel(NOW, tick=True), start_worker(app, pool="solo", perform_ping_check=False):
        tasks.backfill_markets.delay([ARCHIVED, LIVE_U3], since="2026-06-01", period=60)
        deadline = time.monotonic() + 30
        while not HistoryRun.objects.filter(kind=HistoryJob.BACKFILL, finished_at__isnull=False).exists():
            assert time.monotonic() < deadline, "the worker did not finish the backfill within 30 s"
            time.sleep(0.1)

    run = HistoryRun.objects.get(kind=HistoryJob.BACKFILL)
    assert (run.outcome, run.trigger) == (PollOutcome.OK, "celery")
    assert MarketSnapshot.objects.filter(source=SnapshotSource.BACKFILL).count() == 6


def test_it_asks_again_for_recent_candles_kalshi_had_not_published(kalshi_client, kalshi_fixture, exchange):
    # The game is live: its last minute ended at 21:45 and the run starts at 21:47:30.
    exchange.live[TOR].update(status="active", result="", close_time="2026-08-08T02:49:33Z")
    recorded = kalshi_fixture(MLB)["markets"][TOR]["candlesticks"]
    exchange.add_candles(TOR, 1, recorded[:-1])  # Kalshi has not published the last minute yet
    client = kalshi_client(exchange)
    with time_machine.travel(datetime(2026, 8, 7, 21, 47, 30, tzinfo=UTC), tick=False):
        first = _run(client, tickers=[TOR], period=1)
    assert first.snapshots_written == 15
    assert BackfillProgress.objects.get().covered_until == datetime.fromtimestamp(
        recorded[-2]["end_period_ts"], UTC
    )

    exchange.add_candles(TOR, 1, recorded)
    with time_machine.travel(datetime(2026, 8, 7, 21, 48, 30, tzinfo=UTC), tick=False):
        second = _run(client, tickers=[TOR], period=1)

    assert second.snapshots_written == 1
    assert [s.volume for s in _snapshots(TOR)] == _expected_cumulative(kalshi_fixture, TOR)


def test_the_admin_queues_a_backfill_of_the_selected_markets(
    admin_client, kalshi_client, exchange, django_capture_on_commit_callbacks
):
    from unittest import mock

    from markets import tasks

    _run(kalshi_client(exchange), tickers=[TOR, NYM], candles=False)
    ids = [str(pk) for pk in Market.objects.order_by("ticker").values_list("pk", flat=True)]

    with (
        mock.patch.object(tasks.backfill_markets, "delay", autospec=True) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(
            "/admin/markets/market/", {"action": "queue_backfill", "_selected_action": ids}, follow=True
        )

    assert response.status_code == 200
    assert "Queued a backfill of 2 market(s)" in response.content.decode()
    delay.assert_called_once_with(sorted([TOR, NYM]), period=60)
