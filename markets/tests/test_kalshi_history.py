"""The client's candlestick and historical endpoints, on real recordings of every shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from markets.kalshi import KalshiError

MLB = "2026-08_candlesticks_1m_mlb.json"
LIVE_HOURLY = "2026-09_candlesticks_hourly_live.json"
HISTORICAL = "2026-09_historical_candlesticks_hourly.json"
LEGACY_DAILY = "legacy_2026-01_candlesticks_daily.json"
LEGACY_BATCH = "legacy_2026-01_candlesticks_batch.json"


def _serve(body, seen=None, status=200):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return handler


def test_it_reads_current_live_candles_with_trades(kalshi_client, kalshi_fixture):
    recorded = kalshi_fixture(MLB)["markets"]["KXMLBGAME-26AUG071840TORPHI-TOR"]
    seen: list[httpx.Request] = []
    client = kalshi_client(_serve({"ticker": "KXMLBGAME-26AUG071840TORPHI-TOR", **recorded}, seen))

    result = client.get_market_candlesticks(
        "KXMLBGAME",
        "KXMLBGAME-26AUG071840TORPHI-TOR",
        start_ts=1786137900,
        end_ts=1786138800,
        period_interval=1,
    )

    assert seen[0].url.path.endswith("/series/KXMLBGAME/markets/KXMLBGAME-26AUG071840TORPHI-TOR/candlesticks")
    assert dict(seen[0].url.params) == {
        "start_ts": "1786137900",
        "end_ts": "1786138800",
        "period_interval": "1",
    }
    assert len(result.candles) == 16 and not result.skipped
    first = result.candles[0]
    assert first.end == datetime.fromtimestamp(1786137900, UTC)
    assert first.yes_bid.close == Decimal("0.3300")
    assert first.yes_ask.close == Decimal("0.3400")
    assert first.price.close == Decimal("0.3400")
    assert first.traded
    assert first.volume == Decimal("28.74")  # contracts traded in that minute
    assert first.open_interest == Decimal("128107.77")


def test_it_reads_an_empty_price_object_as_no_trade(kalshi_client, kalshi_fixture):
    client = kalshi_client(_serve(kalshi_fixture(LIVE_HOURLY)))

    candles = client.get_market_candlesticks(
        "KXU3", "KXU3-26NOV-T5.0", start_ts=1781139600, end_ts=1781146800, period_interval=60
    ).candles

    quiet, _, traded = candles
    assert quiet.price.close is None and quiet.price.previous is None and not quiet.traded
    assert quiet.yes_bid.close == Decimal("0.0000")  # empty bid side, as Kalshi writes it
    assert quiet.yes_ask.close == Decimal("0.9900")
    assert traded.price.close == Decimal("0.5100")
    assert traded.volume == Decimal("0.01")  # a fractional contract
    assert traded.yes_ask.low == Decimal("0.2700")


def test_it_keeps_only_previous_when_a_minute_had_no_trade(kalshi_client, kalshi_fixture):
    recorded = kalshi_fixture(MLB)["markets"]["KXMLBGAME-26AUG071845CINWSH-CIN"]
    client = kalshi_client(_serve({"ticker": "X", "candlesticks": recorded["candlesticks"]}))

    candles = client.get_market_candlesticks("S", "X", start_ts=0, end_ts=2**31, period_interval=1).candles

    quiet = next(c for c in candles if c.end_ts == 1786138380)
    assert quiet.price.close is None
    assert quiet.price.previous == Decimal("0.4800")
    assert quiet.volume == Decimal("0.00")


def test_it_reads_the_historical_shape_with_bare_names_and_nulls(kalshi_client, kalshi_fixture):
    seen: list[httpx.Request] = []
    client = kalshi_client(_serve(kalshi_fixture(HISTORICAL), seen))

    result = client.get_historical_market_candlesticks(
        "KXU3-26JUN-T4.8", start_ts=1780801200, end_ts=1780808400, period_interval=60
    )

    assert seen[0].url.path.endswith("/historical/markets/KXU3-26JUN-T4.8/candlesticks")
    assert "series" not in seen[0].url.path
    assert [c.yes_ask.close for c in result.candles] == [
        Decimal("0.0100"),
        Decimal("0.0100"),
        Decimal("0.0200"),
    ]
    first = result.candles[0]
    assert first.price.close is None and first.price.mean is None
    assert first.price.previous == Decimal("0.0100")
    assert first.volume == Decimal("0.00")
    assert first.open_interest == Decimal("1054.00")


def test_it_prefers_dollars_over_cents_in_legacy_candles(kalshi_client, kalshi_fixture):
    client = kalshi_client(_serve(kalshi_fixture(LEGACY_DAILY)))

    candles = client.get_market_candlesticks(
        "KXELONMARS", "KXELONMARS-99", start_ts=1760479690, end_ts=1768255690, period_interval=1440
    ).candles

    assert len(candles) == 90
    last = candles[-1]
    # The cent field says 6, the dollar field 0.0625: sub-cent precision only survives in dollars.
    assert last.price.mean == Decimal("0.0625")
    assert last.price.close == Decimal("0.0600")
    assert last.volume == Decimal(4) and last.open_interest == Decimal(13673)
    quiet = candles[0]
    assert quiet.price.close is None
    assert quiet.price.previous == Decimal("0.1100")


def test_it_reads_a_legacy_missing_ask_as_no_ask(kalshi_client, kalshi_fixture):
    body = kalshi_fixture(LEGACY_DAILY)
    candle = body["candlesticks"][0]
    # Cents-era payloads wrote "no ask" as 0 (see the legacy market recordings).
    candle["yes_ask"] = dict.fromkeys(("open", "high", "low", "close"), 0) | {
        f"{k}_dollars": "0.0000" for k in ("open", "high", "low", "close")
    }
    client = kalshi_client(_serve({"ticker": "KXELONMARS-99", "candlesticks": [candle]}))

    [parsed] = client.get_market_candlesticks(
        "S", "KXELONMARS-99", start_ts=0, end_ts=2**31, period_interval=1440
    ).candles

    assert parsed.yes_ask.close == Decimal(1)


def test_it_reads_the_batch_endpoint_by_ticker(kalshi_client, kalshi_fixture):
    seen: list[httpx.Request] = []
    client = kalshi_client(_serve(kalshi_fixture(LEGACY_BATCH), seen))

    result = client.get_markets_candlesticks(
        ["KXELONMARS-99", "KXNOPE-1"], start_ts=1760479690, end_ts=1768255690, period_interval=1440
    )

    assert seen[0].url.path.endswith("/markets/candlesticks")
    assert seen[0].url.params["market_tickers"] == "KXELONMARS-99,KXNOPE-1"
    assert len(result["KXELONMARS-99"].candles) == 90
    assert result["KXNOPE-1"].candles == []


def test_it_refuses_bad_candle_requests_before_sending(kalshi_client):
    client = kalshi_client(_serve({}))
    with pytest.raises(ValueError, match="period_interval"):
        client.get_markets_candlesticks(["A"], start_ts=0, end_ts=1, period_interval=5)
    with pytest.raises(ValueError, match="at most 100"):
        client.get_markets_candlesticks(
            [f"T{i}" for i in range(101)], start_ts=0, end_ts=1, period_interval=60
        )
    with pytest.raises(ValueError, match="before start_ts"):
        client.get_historical_market_candlesticks("A", start_ts=10, end_ts=1, period_interval=60)
    assert client.requests_made == 0


def test_it_skips_a_malformed_candle_and_keeps_the_rest(kalshi_client, kalshi_fixture):
    body = kalshi_fixture(HISTORICAL)
    body["candlesticks"][1]["yes_bid"]["close"] = "1.5000"  # outside [0, 1]
    client = kalshi_client(_serve(body))

    result = client.get_historical_market_candlesticks(
        "KXU3-26JUN-T4.8", start_ts=0, end_ts=2**31, period_interval=60
    )

    assert len(result.candles) == 2
    assert len(result.skipped) == 1 and "1.5000" in result.skipped[0].reason


def test_it_reads_the_historical_cutoff(kalshi_client, kalshi_fixture):
    client = kalshi_client(_serve(kalshi_fixture("2026-09_historical_cutoff.json")))

    cutoff = client.get_historical_cutoff()

    assert cutoff.market_settled_ts == datetime(2026, 8, 7, tzinfo=UTC)
    assert cutoff.trades_created_ts == datetime(2026, 8, 7, tzinfo=UTC)
    assert cutoff.orders_updated_ts == datetime(2026, 9, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {"trades_created_ts": "2026-08-07T00:00:00Z"},
        {"market_settled_ts": "yesterday", "trades_created_ts": "2026-08-07T00:00:00Z"},
        b"<html>maintenance</html>",
    ],
    ids=["missing", "garbled", "not-json"],
)
def test_it_reports_an_unusable_cutoff_clearly(kalshi_client, body):
    client = kalshi_client(_serve(body))

    with pytest.raises(KalshiError, match="/historical/cutoff returned a response we cannot read"):
        client.get_historical_cutoff()


def test_it_pages_historical_markets(kalshi_client, kalshi_fixture):
    seen: list[httpx.Request] = []
    page = kalshi_fixture("2026-09_historical_markets_page.json")
    client = kalshi_client(_serve(page, seen))

    result = client.get_historical_markets_page(event_ticker="KXU3-26JUN", limit=3)

    assert seen[0].url.path.endswith("/historical/markets")
    assert dict(seen[0].url.params) == {"event_ticker": "KXU3-26JUN", "limit": "3"}
    assert result.cursor == page["cursor"]
    markets = {m.ticker: m for m in result.full_markets()}
    market = markets["KXU3-26JUN-T4.8"]
    assert (market.status, market.result) == ("finalized", "no")
    assert market.settlement_value == Decimal("0.0000")
    assert market.settlement_ts == datetime(2026, 7, 2, 13, 5, 34, 458674, tzinfo=UTC)
    assert market.volume == Decimal("3366.94")
    with pytest.raises(ValueError, match="at most one"):
        client.get_historical_markets_page(event_ticker="A", series_ticker="B")


def test_it_reads_one_historical_market(kalshi_client, kalshi_fixture):
    market = kalshi_fixture("2026-09_historical_markets_page.json")["markets"][0]
    client = kalshi_client(_serve({"market": market}))

    parsed, raw = client.get_historical_market_raw("KXU3-26JUN-T4.8")

    assert parsed.ticker == "KXU3-26JUN-T4.8" and json.loads(raw)["ticker"] == parsed.ticker


def test_it_names_an_unknown_historical_market_in_the_error(kalshi_client):
    client = kalshi_client(_serve({"error": {"code": "not_found", "message": "not found"}}, status=404))

    with pytest.raises(KalshiError, match="KXNOPE-1") as caught:
        client.get_historical_market_candlesticks("KXNOPE-1", start_ts=0, end_ts=1, period_interval=60)
    assert caught.value.status_code == 404


def test_it_pages_historical_trades(kalshi_client, kalshi_fixture):
    seen: list[httpx.Request] = []
    client = kalshi_client(_serve(kalshi_fixture("2026-09_historical_trades_page.json"), seen))

    page = client.get_historical_trades_page(ticker="KXU3-26JUN-T4.8", min_ts=1, max_ts=2)

    assert seen[0].url.path.endswith("/historical/trades")
    assert seen[0].url.params["ticker"] == "KXU3-26JUN-T4.8"
    assert len(page.trades) == 3 and page.cursor
    trade = page.trades[1]
    assert trade.count == Decimal("700.60")
    assert (trade.yes_price, trade.no_price) == (Decimal("0.0100"), Decimal("0.9900"))
    assert (trade.taker_outcome_side, trade.taker_book_side) == ("no", "ask")
