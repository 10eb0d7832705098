"""End to end for history: the real client over real HTTP to the fake exchange → `manage.py backfill`
→ snapshots and settled outcomes in PostgreSQL → `manage.py runbacktest` trades them to settlement."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from backtests.models import BacktestRun, BacktestTrade, RunStatus
from markets.fakeexchange import RunningExchange, serve
from markets.models import Market, MarketSnapshot, SnapshotSource, Trade

pytestmark = pytest.mark.django_db

D = Decimal
GAME = "KXMLBGAME-26AUG081610LAAMIA-MIA"  # finalized "yes"


@pytest.fixture
def fake(settings) -> Iterator[RunningExchange]:
    with serve(seed=5) as running:
        settings.KALSHI_API_BASE = running.base_url
        yield running


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_backfilled_settled_markets_backtest_to_their_outcomes(fake):
    since = timezone.now() - timedelta(days=4)
    summary = backfill("--status", "settled", "--since", since.strftime("%Y-%m-%dT%H:%M"))

    settled = {
        t: m
        for t, m in fake.exchange.markets.items()
        if m.status == "finalized" and m.settled_ts and m.settled_ts >= since.timestamp()
    }
    assert len(settled) >= 30 and GAME in settled
    stored = {m.ticker: m for m in Market.objects.filter(ticker__in=settled)}
    assert stored.keys() == settled.keys()
    for ticker, market in stored.items():
        shown = settled[ticker].render()
        assert (market.status, market.result) == ("finalized", shown["result"])
        assert market.settlement_value == D(shown["settlement_value_dollars"])
    assert f"{len(settled)} markets" in summary

    rows = list(MarketSnapshot.objects.filter(market=stored[GAME]).order_by("captured_at"))
    assert rows and {r.source for r in rows} == {SnapshotSource.BACKFILL}
    hourly = [r.captured_at for r in rows]
    assert all(b - a == timedelta(hours=1) for a, b in zip(hourly, hourly[1:], strict=False))
    assert hourly[0] >= since
    last = rows[-1]
    # The game's book closed around its last trade, 0.99, with every contract counted.
    assert (last.yes_bid, last.yes_ask, last.no_bid, last.no_ask) == (
        D("0.98"),
        D("0.99"),
        D("0.01"),
        D("0.02"),
    )
    assert last.last_price == D("0.99")
    assert last.volume == D(settled[GAME].render()["volume_fp"])
    assert all(r.volume is not None and r.open_interest is not None for r in rows)
    # The events came with their series, so fees follow the series (KXMLBGAME: half rate).
    game = Market.objects.select_related("event__series").get(ticker=GAME)
    assert game.event.series is not None and game.event.series.ticker == "KXMLBGAME"
    assert game.event.series.fee_multiplier == D("0.5")

    # Running it again reads the listing but asks for no candle.
    candle_requests = fake.exchange.requests["GET /markets/candlesticks"]
    stored_rows = MarketSnapshot.objects.count()
    assert "0 snapshots written" in backfill(
        "--status", "settled", "--since", since.strftime("%Y-%m-%dT%H:%M")
    )
    assert fake.exchange.requests["GET /markets/candlesticks"] == candle_requests
    assert MarketSnapshot.objects.count() == stored_rows

    out = io.StringIO()
    call_command(
        "runbacktest",
        "--strategy",
        "hold_to_settlement",
        "--series",
        "KXMLBGAME",
        stdout=out,
        stderr=io.StringIO(),
    )
    run = BacktestRun.objects.latest("id")
    assert run.status == RunStatus.SUCCEEDED, run.error
    trades = list(run.trades.select_related("market"))
    mlb = {t for t in settled if t.startswith("KXMLBGAME-")}
    assert {t.ticker for t in trades} == mlb
    for trade in trades:
        assert trade.side == BacktestTrade.Side.YES
        assert trade.exit_reason == BacktestTrade.ExitReason.SETTLEMENT
        assert trade.market is not None and trade.exit_price == trade.market.settlement_value
        assert trade.pnl == trade.contracts * (trade.exit_price - trade.entry_price) - trade.fees
    # Winners and losers, as the recorded results had them.
    assert {t.exit_price for t in trades} == {D(0), D(1)}


def test_archived_markets_come_from_the_historical_endpoints(fake):
    out = backfill("--series", "KXU3", "--trades")

    archived = fake.exchange.archived
    assert "3 from Kalshi's archive" in out
    for ticker in archived:
        market = Market.objects.get(ticker=ticker)
        assert (market.status, market.result, market.settlement_value) == ("finalized", "no", D(0))
        rows = MarketSnapshot.objects.filter(market=market, source=SnapshotSource.BACKFILL)
        assert rows.count() > 24 * 20  # hourly, open to close
        assert rows.latest("captured_at").volume == D(archived[ticker].render()["volume_fp"])
    assert fake.exchange.requests["GET /historical/markets/(?P<ticker>[^/]+)/candlesticks"] >= 3
    assert fake.exchange.requests.get("GET /markets/candlesticks", 0) == 0
    # The archived trade tape, stored by trade id.
    assert sorted(Trade.objects.filter(market__ticker="KXU3-26JUN-T4.8").values_list("count", flat=True)) == [
        D("50.00"),
        D("50.00"),
        D("700.60"),
    ]
