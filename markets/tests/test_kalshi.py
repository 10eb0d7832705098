"""The Kalshi client against every real recording it has an endpoint for, plus paging, throttling
and retries. The network edge is httpx.MockTransport serving the recordings (or, for connection
failures, a real socket); the Redis throttle runs against the real Redis."""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from markets.kalshi import (
    QUOTE_VALUE_NAMES,
    KalshiClient,
    KalshiError,
    MalformedPayload,
    OrderbookLevel,
    RedisTokenBucket,
    TokenBucket,
    shared_throttle,
)

D = Decimal


def redis_url() -> str:
    if not settings.REDIS_URL:
        pytest.fail("This test needs Redis: run the suite with ./dev test, which sets REDIS_URL.")
    return settings.REDIS_URL


def routes(table, seen=None):
    """A MockTransport handler: path (below /trade-api/v2) → JSON body, or a callable(request)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        path = request.url.path.removeprefix("/trade-api/v2")
        answer = table.get(path)
        if answer is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})
        if callable(answer):
            response: httpx.Response = answer(request)
            return response
        return httpx.Response(200, json=answer)

    return handler


def without_dollar_fields(obj):
    """A legacy object as it looked before the *_dollars strings existed: integer cents only."""
    return {k: v for k, v in obj.items() if not k.endswith("_dollars")}


# --------------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------------


def test_it_parses_the_current_markets_page(kalshi_client, kalshi_fixture):
    body = kalshi_fixture("2026-10_markets_page.json")
    client = kalshi_client(routes({"/markets": body}))

    page = client.get_markets_page(event_ticker="KXNFLGAME-26OCT08TBDAL")

    assert page.cursor is None  # Kalshi's "" ends the listing
    assert page.skipped == []
    assert [q.ticker for q in page.quotes] == ["KXNFLGAME-26OCT08TBDAL-DAL", "KXNFLGAME-26OCT08TBDAL-TB"]
    dal = page.quotes[0]
    assert dal.values()[:10] == (
        D("0.8000"),
        D("0.8100"),
        D("0.1900"),
        D("0.2000"),
        D("0.8100"),
        D("16529.55"),
        D("375864.43"),
        D("271926.68"),
        D("202329.86"),
        D("242310.93"),
    )
    # The poller compares Kalshi's exact strings; the full object has the parsed time.
    assert dal.updated_time == "2026-09-29T04:05:00.889551Z"
    assert dal.checked_texts()[0] == "0.8000"
    market = page.market("KXNFLGAME-26OCT08TBDAL-DAL")
    assert market.updated_time == datetime(2026, 9, 29, 4, 5, 0, 889551, tzinfo=UTC)
    assert market.previous_yes_bid == D("0.8300")
    assert market.notional_value == D("1.0000")
    assert market.settlement_value is None
    assert market.strike_type == "structured"
    assert market.floor_strike is None and market.cap_strike is None
    assert market.custom_strike == {"football_team": "62b97b7c-5503-461c-b328-fd8543219b22"}
    assert [(r.start, r.end, r.step) for r in market.price_ranges] == [(D("0"), D("1"), D("0.01"))]
    assert market.close_time is not None and market.close_time.tzinfo is not None
    assert json.loads(page.raw[market.ticker]) == body["markets"][0]


def test_it_parses_the_legacy_markets_page(kalshi_client, kalshi_fixture):
    body = kalshi_fixture("legacy_2026-01_markets_page.json")
    client = kalshi_client(routes({"/markets": body}))

    page = client.get_markets_page(mve_filter=None)
    markets = page.full_markets()

    assert len(markets) == 5 and page.skipped == []
    assert page.cursor == body["cursor"]
    first = markets[0]
    assert first.mve_collection_ticker == "KXMVENFLSINGLEGAME-26JAN12HOUPIT"
    assert [r.step for r in first.price_ranges] == [D("0.0010")]
    # No *_fp counts in January: the integer counts are read instead.
    assert first.volume == D(0) and first.open_interest == D(0)
    assert first.yes_bid_size is None
    assert first.updated_time is None


def test_it_reads_legacy_cents_when_dollar_fields_are_absent(kalshi_client, kalshi_fixture):
    legacy = kalshi_fixture("legacy_2026-01_event_single.json")["markets"][0]
    stripped = without_dollar_fields(legacy)
    client = kalshi_client(routes({"/markets": {"markets": [stripped], "cursor": ""}}))

    page = client.get_markets_page()
    quote, market = page.quotes[0], page.market("KXELONMARS-99")

    values = dict(zip(QUOTE_VALUE_NAMES, quote.values(), strict=True))
    for name, expected in (
        ("yes_bid", D("0.06")),
        ("yes_ask", D("0.07")),
        ("no_bid", D("0.93")),
        ("no_ask", D("0.94")),
        ("last_price", D("0.06")),
        ("volume", D(35001)),
        ("volume_24h", D(10)),
        ("open_interest", D(13679)),
    ):
        assert values[name] == expected, name
        assert getattr(market, name) == expected, name
    assert market.notional_value == D(1)
    # The same market with its dollar strings gives the same numbers.
    with_dollars = kalshi_client(routes({"/markets": {"markets": [legacy], "cursor": ""}})).get_markets_page()
    assert with_dollars.quotes[0].values() == quote.values()


def test_a_legacy_zero_ask_reads_as_todays_no_ask(kalshi_client, kalshi_fixture):
    # Jan 2026: an empty book was yes_bid 0 / yes_ask 0 with no_bid 100 derived from the ask, in
    # cents and in the dollar strings alike. Today it is 0.0000 / 1.0000 with no_bid 0.0000.
    body = kalshi_fixture("legacy_2026-01_markets_page.json")
    assert {(m["yes_ask"], m["yes_ask_dollars"], m["no_bid"]) for m in body["markets"]} == {
        (0, "0.0000", 100)
    }
    stripped = {"markets": [without_dollar_fields(m) for m in body["markets"]], "cursor": ""}
    for payload in (body, stripped):
        page = kalshi_client(routes({"/markets": payload})).get_markets_page(mve_filter=None)
        for market, quote in zip(page.full_markets(), page.quotes, strict=True):
            book = (market.yes_bid, market.yes_ask, market.no_bid, market.no_ask)
            assert book == (D(0), D(1), D(0), D(1)), market.ticker
            values = dict(zip(QUOTE_VALUE_NAMES, quote.values(), strict=True))
            assert (values["yes_bid"], values["yes_ask"], values["no_bid"], values["no_ask"]) == book
            texts = dict(zip(QUOTE_VALUE_NAMES, quote.checked_texts(), strict=True))
            assert D(texts["yes_ask"]) == 1 and D(texts["no_bid"]) == 0
            assert market.previous_yes_ask is None and values["previous_yes_ask"] is None
    # A real legacy ask stays as it was; so does today's shape, where 0.0000 is never an ask.
    quoted = kalshi_fixture("legacy_2026-01_event_single.json")["markets"][0]
    market = kalshi_client(routes({"/markets/KXELONMARS-99": {"market": quoted}})).get_market("KXELONMARS-99")
    assert (market.yes_ask, market.no_bid) == (D("0.0700"), D("0.9300"))


def test_previous_yes_ask_zero_means_no_quote_a_day_ago(kalshi_client, kalshi_fixture):
    # Created four hours before its recording: no quote a day earlier, and Kalshi wrote 0.0000
    # for the bid, the ask and the price of a day ago.
    young = kalshi_fixture("2026-09_market_settled_scalar_fairprice.json")
    assert (young["previous_yes_bid_dollars"], young["previous_yes_ask_dollars"]) == ("0.0000", "0.0000")
    # Settled more than a day before their recording: "no ask" a day ago is today's 1.0000.
    settled = kalshi_fixture("2026-08_markets_settled.json")["markets"]
    emptied = [m for m in settled if m["volume_24h_fp"] == "0.00" and m["status"] == "finalized"]
    assert emptied and {m["previous_yes_ask_dollars"] for m in emptied} == {"1.0000"}

    page = kalshi_client(
        routes({"/markets": {"markets": [young, *emptied], "cursor": ""}})
    ).get_markets_page()
    markets = {m.ticker: m for m in page.full_markets()}
    quotes = {q.ticker: dict(zip(QUOTE_VALUE_NAMES, q.checked_texts(), strict=True)) for q in page.quotes}
    assert markets[young["ticker"]].previous_yes_ask is None
    assert quotes[young["ticker"]]["previous_yes_ask"] is None
    assert markets[young["ticker"]].previous_yes_bid == D(0)  # no bid a day ago: 0 is right
    for m in emptied:
        assert markets[m["ticker"]].previous_yes_ask == D(1)
        assert quotes[m["ticker"]]["previous_yes_ask"] == "1.0000"


def test_it_turns_unset_times_into_none(kalshi_client, kalshi_fixture):
    legacy = kalshi_fixture("legacy_2026-01_event_single.json")["markets"][0]
    assert legacy["created_time"] == "0001-01-01T00:00:00Z"
    client = kalshi_client(routes({"/markets/KXELONMARS-99": {"market": legacy}}))

    market = client.get_market("KXELONMARS-99")

    assert market.created_time is None
    assert market.close_time == datetime(2099, 8, 1, 4, 59, tzinfo=UTC)


def test_it_parses_settled_markets(kalshi_client, kalshi_fixture):
    recorded = kalshi_fixture("2026-08_markets_settled.json")["markets"]
    client = kalshi_client(routes({"/markets": {"markets": recorded, "cursor": ""}}))

    markets = client.get_markets_page(status="settled").full_markets()

    assert len(markets) == 44
    assert sorted({m.status for m in markets}) == ["closed", "finalized"]
    finalized = [m for m in markets if m.status == "finalized"]
    assert {m.result for m in finalized} == {"yes", "no"}
    for m in finalized:
        assert m.settlement_value == (D(1) if m.result == "yes" else D(0))
        assert m.settlement_ts is not None and m.settlement_ts.tzinfo is not None
    mia = next(m for m in markets if m.ticker == "KXMLBGAME-26AUG081610LAAMIA-MIA")
    assert (mia.yes_bid, mia.yes_ask, mia.no_bid, mia.no_ask) == (D(0), D(1), D(0), D(1))  # empty book
    assert mia.last_price == D("0.9900")
    assert mia.volume == D("706298.16")
    closed = [m for m in markets if m.status == "closed"]
    assert [m.result for m in closed] == ["", ""] and all(m.settlement_value is None for m in closed)


def test_it_parses_the_historical_markets_page_as_markets(kalshi_client, kalshi_fixture):
    body = kalshi_fixture("2026-09_historical_markets_page.json")
    client = kalshi_client(routes({"/markets": body}))

    markets = client.get_markets_page().full_markets()

    assert [m.ticker for m in markets] == ["KXU3-26JUN-T4.8", "KXU3-26JUN-T4.7", "KXU3-26JUN-T4.6"]
    t48 = markets[0]
    # floor_strike is a JSON number; it must arrive as the exact decimal, never via float.
    assert str(t48.floor_strike) == "4.8"
    assert t48.cap_strike is None
    assert (t48.status, t48.result, t48.settlement_value) == ("finalized", "no", D("0.0000"))
    assert t48.volume == D("3366.94")


def test_it_parses_single_markets(kalshi_client, kalshi_fixture):
    current = kalshi_fixture("2026-10_market_single.json")
    august = kalshi_fixture("2026-08_market_single_nested_and_orderbook.json")
    legacy = kalshi_fixture("legacy_2026-01_market_single.json")
    scalar = kalshi_fixture("2026-09_market_settled_scalar_fairprice.json")
    client = kalshi_client(
        routes(
            {
                "/markets/KXNFLGAME-26OCT08TBDAL-DAL": current,
                "/markets/KXNCAAFGAME-26SEP19MSUND-ND": august["single"],
                f"/markets/{legacy['market']['ticker']}": legacy,
                f"/markets/{scalar['ticker']}": {"market": scalar},
            }
        )
    )

    dal = client.get_market("KXNFLGAME-26OCT08TBDAL-DAL")
    assert (dal.yes_bid, dal.yes_bid_size) == (D("0.8000"), D("16529.55"))

    nd = client.get_market("KXNCAAFGAME-26SEP19MSUND-ND")
    assert (nd.yes_bid, nd.yes_ask, nd.volume) == (D("0.8900"), D("0.9400"), D("2985.50"))
    nested = august["nested"]
    assert (
        nd.quote
        == kalshi_client(routes({"/markets": {"markets": [nested], "cursor": ""}}))
        .get_markets_page()
        .quotes[0]
        .values()[:10]
    )

    combo, raw = client.get_market_raw(legacy["market"]["ticker"])
    assert combo.mve_collection_ticker == "KXMVENFLSINGLEGAME-26JAN12HOUPIT"
    assert json.loads(raw) == legacy["market"]

    fair = client.get_market(scalar["ticker"])
    assert fair.market_type == "binary"
    assert fair.result == "scalar"
    assert fair.settlement_value == D("0.3800")
    assert str(fair.floor_strike) == "24.5"


def test_it_skips_a_malformed_market_and_keeps_the_page(kalshi_client, kalshi_fixture):
    markets = copy.deepcopy(kalshi_fixture("2026-10_markets_page.json")["markets"])
    markets[0]["yes_bid_dollars"] = "eighty cents"
    markets[1]["close_time"] = "next Tuesday"  # quote fine, metadata broken
    client = kalshi_client(routes({"/markets": {"markets": markets, "cursor": ""}}))

    page = client.get_markets_page()

    # Quotes are decoded for every market and validated when their values are read, so the
    # poller pays for Decimals only on markets that changed.
    dal, tb = page.quotes
    with pytest.raises(MalformedPayload, match="eighty cents"):
        dal.values()
    assert tb.values()[0] == D("0.1900")
    with pytest.raises(MalformedPayload, match="close_time"):
        page.market("KXNFLGAME-26OCT08TBDAL-TB")
    assert page.full_markets() == []
    assert [s.ticker for s in page.skipped] == ["KXNFLGAME-26OCT08TBDAL-DAL", "KXNFLGAME-26OCT08TBDAL-TB"]


def test_it_rejects_a_price_outside_zero_to_one(kalshi_client, kalshi_fixture):
    market = dict(kalshi_fixture("2026-10_markets_page.json")["markets"][0], yes_ask_dollars="1.0100")
    client = kalshi_client(routes({"/markets": {"markets": [market], "cursor": ""}}))

    page = client.get_markets_page()

    with pytest.raises(MalformedPayload, match="yes_ask_dollars=1.0100 is out of range"):
        page.quotes[0].values()
    assert page.full_markets() == []
    assert "outside [0, 1]" in page.skipped[0].reason


@pytest.mark.parametrize(
    "fixture",
    ["2026-10_markets_page.json", "2026-08_markets_settled.json", "legacy_2026-01_markets_page.json"],
)
@pytest.mark.parametrize("strip_dollars", [False, True])
def test_digests_is_quote_digest_and_state_digest(kalshi_client, kalshi_fixture, fixture, strip_dollars):
    markets = kalshi_fixture(fixture)["markets"]
    if strip_dollars:  # some quote strings missing: the legacy integers count too
        markets = [without_dollar_fields(m) for m in markets]
    client = kalshi_client(routes({"/markets": {"markets": markets, "cursor": ""}}))
    quotes = client.get_markets_page().quotes
    assert quotes
    for quote in quotes:
        assert quote.digests() == (quote.quote_digest(), quote.state_digest())


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("yes_bid_dollars", "0.5"),
        ("yes_bid_dollars", "1"),
        ("yes_bid_dollars", "1.0000"),
        ("yes_bid_dollars", "0"),
        ("yes_bid_dollars", "00.5"),
        ("yes_bid_dollars", "5E-1"),
        ("yes_bid_dollars", "+0.5"),
        ("yes_bid_dollars", " 0.5"),
        ("yes_bid_dollars", "0.5_0"),
        ("yes_bid_dollars", "\u0660.5"),
        ("yes_bid_dollars", "1.0001"),
        ("yes_bid_dollars", "-0"),
        ("yes_bid_dollars", "NaN"),
        ("yes_bid_dollars", "0."),
        ("yes_ask_dollars", "0.0000"),
        ("volume_fp", "123456789.25"),
        ("volume_fp", "1e3"),
        ("volume_fp", "-1.00"),
        ("volume_fp", "Infinity"),
        ("previous_yes_ask_dollars", "0.0000"),
        ("previous_yes_ask_dollars", "0"),
        ("previous_yes_ask_dollars", "0.0100"),
    ],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_checked_texts_agree_with_the_decimal_values(kalshi_client, kalshi_fixture, field, text, legacy):
    """Plainly written quotes skip Decimal in checked_texts(); whatever the text, the outcome is
    exactly that of the full check in values(): the same numbers, or the same refusal."""
    market = dict(kalshi_fixture("2026-10_markets_page.json")["markets"][0], **{field: text})
    if legacy:  # the Jan-2026 shape: integer cents next to the dollar strings
        market.update(yes_ask=0 if market["yes_ask_dollars"] == "0.0000" else 50)
    client = kalshi_client(routes({"/markets": {"markets": [market], "cursor": ""}}))
    quote = client.get_markets_page().quotes[0]

    try:
        values = quote.values()
    except MalformedPayload as exc:
        with pytest.raises(MalformedPayload, match=re.escape(str(exc))):
            quote.checked_texts()
        return
    texts = quote.checked_texts()
    assert [None if t is None else D(t) for t in texts] == list(values)
    assert all(t is None or D(t).is_finite() for t in texts)


# --------------------------------------------------------------------------------------------------
# Events and series
# --------------------------------------------------------------------------------------------------


def test_it_parses_events_pages(kalshi_client, kalshi_fixture):
    current = kalshi_fixture("2026-10_events_page.json")
    legacy = kalshi_fixture("legacy_2026-01_events_page.json")
    nfl = kalshi_fixture("2026-08_events_nested_nfl_preseason.json")
    bodies = {"current": current, "legacy": legacy, "nfl": {"events": nfl["events"], "cursor": ""}}
    client = kalshi_client(
        routes({"/events": lambda r: httpx.Response(200, json=bodies[r.url.params["series_ticker"]])})
    )

    page = client.get_events_page(series_ticker="current")
    assert page.cursor == current["cursor"]
    assert [e.event_ticker for e in page.events][0] == "KXNFLGAME-26OCT08TBDAL"
    first = page.events[0]
    assert (first.series_ticker, first.title, first.mutually_exclusive) == (
        "KXNFLGAME",
        "TB Buccaneers vs DAL Cowboys",
        True,
    )
    assert first.collateral_return_type == "MECNET"
    assert first.markets == []

    legacy_page = client.get_events_page(series_ticker="legacy")
    assert len(legacy_page.events) == 5 and legacy_page.skipped == []
    assert legacy_page.events[0].event_ticker == "KXELONMARS-99"

    nested = client.get_events_page(series_ticker="nfl", with_nested_markets=True)
    assert len(nested.events) == 32
    assert sum(len(e.markets) for e in nested.events) == 64
    cin = nested.events[0].markets[0]
    assert (cin.ticker, cin.yes_bid, cin.yes_ask, cin.volume) == (
        "KXNFLGAME-26AUG13DETCIN-CIN",
        D("0.7300"),
        D("0.7400"),
        D("20840.35"),
    )


def test_it_reads_a_single_event_in_both_layouts(kalshi_client, kalshi_fixture):
    nested = kalshi_fixture("2026-10_event_single_nested.json")
    top_level = kalshi_fixture("legacy_2026-01_event_single.json")
    assert nested["markets"] == [] and "markets" not in top_level["event"]
    client = kalshi_client(
        routes({"/events/KXNFLGAME-26OCT08TBDAL": nested, "/events/KXELONMARS-99": top_level})
    )

    current = client.get_event("KXNFLGAME-26OCT08TBDAL")
    assert [m.ticker for m in current.markets] == ["KXNFLGAME-26OCT08TBDAL-DAL", "KXNFLGAME-26OCT08TBDAL-TB"]
    assert current.last_updated_ts is None  # recorded as "0001-01-01T00:00:00Z"

    old = client.get_event("KXELONMARS-99")
    assert [m.ticker for m in old.markets] == ["KXELONMARS-99"]
    assert old.markets[0].yes_ask == D("0.0700")
    assert old.series_ticker == "KXELONMARS"


def test_it_parses_series_and_their_fee_fields(kalshi_client, kalshi_fixture):
    fees = kalshi_fixture("2026-08_series_fee_fields.json")["payloads"]
    table = {f"/series/{ticker}": body for ticker, body in fees.items()}
    table["/series/KXNFLGAME"] = kalshi_fixture("2026-10_series_single.json")
    table["/series/CO2"] = kalshi_fixture("legacy_2026-01_series_single.json")
    client = kalshi_client(routes(table))

    mlb = client.get_series("KXMLBGAME")
    assert (mlb.fee_type, mlb.fee_multiplier) == ("quadratic_with_maker_fees", D("0.5"))
    spread = client.get_series("KXMLBSPREAD")
    assert (spread.fee_type, spread.fee_multiplier) == ("quadratic", D("0.5"))
    assert client.get_series("KXWNBAGAME").fee_multiplier == D(1)
    nfl = client.get_series("KXNFLGAME")
    assert (nfl.fee_type, nfl.fee_multiplier, nfl.frequency) == ("quadratic_with_maker_fees", D(1), "custom")
    assert nfl.categories == ["Sports"] and nfl.tags == ["Football"]
    assert nfl.last_updated_ts == datetime(2026, 9, 30, 21, 38, 16, 589836, tzinfo=UTC)
    assert nfl.settlement_sources is not None and nfl.settlement_sources[0].url == "https://www.nfl.com/"
    co2 = client.get_series("CO2")
    assert (co2.title, co2.fee_type, co2.categories) == ("US CO2 totals", "quadratic", [])


def test_it_parses_series_lists(kalshi_client, kalshi_fixture):
    bodies = {
        "Sports": kalshi_fixture("2026-10_series_list_page.json"),
        "Climate and Weather": kalshi_fixture("legacy_2026-01_series_list.json"),
    }
    client = kalshi_client(
        routes({"/series": lambda r: httpx.Response(200, json=bodies[r.url.params["category"]])})
    )

    sports, skipped = client.get_series_list(category="Sports")
    assert skipped == []
    assert [(s.ticker, s.fee_type, s.fee_multiplier) for s in sports] == [
        ("KXWNBADRAFTTOP5", "quadratic", D(1)),
        ("KXNFLDRAFTOL", "quadratic", D(1)),
        ("KXUCL1HSPREAD", "quadratic", D(1)),
    ]
    climate, skipped = client.get_series_list(category="Climate and Weather")
    assert len(climate) == 241 and skipped == []
    assert climate[0].ticker == "CO2"


# --------------------------------------------------------------------------------------------------
# Order books, trades, exchange status
# --------------------------------------------------------------------------------------------------


def test_it_parses_current_order_books(kalshi_client, kalshi_fixture):
    august = kalshi_fixture("2026-08_market_single_nested_and_orderbook.json")
    client = kalshi_client(
        routes(
            {
                "/markets/KXNFLGAME-26OCT08TBDAL-DAL/orderbook": kalshi_fixture(
                    "2026-10_orderbook_depth3.json"
                ),
                "/markets/KXNCAAFGAME-26SEP19MSUND-ND/orderbook": august["orderbook"],
            }
        )
    )

    dal = client.get_orderbook("KXNFLGAME-26OCT08TBDAL-DAL", depth=3)
    assert [(lvl.price, lvl.count) for lvl in dal.yes] == [
        (D("0.7800"), D("45938.68")),
        (D("0.7900"), D("33328.87")),
        (D("0.8000"), D("16529.55")),
    ]
    assert (dal.best_yes_bid, dal.best_no_bid, dal.best_yes_ask) == (D("0.8000"), D("0.1900"), D("0.8100"))

    nd = client.get_orderbook("KXNCAAFGAME-26SEP19MSUND-ND")
    assert len(nd.yes) == 10 and len(nd.no) == 6
    assert nd.yes[-1] == OrderbookLevel(D("0.8900"), D("343.49"))  # fractional size at the best bid
    assert nd.best_yes_ask == D("0.9400")  # matches the market's yes_ask in the same recording


def test_it_parses_an_empty_legacy_book_with_null_sides(kalshi_client, kalshi_fixture):
    body = kalshi_fixture("legacy_2026-01_orderbook_empty.json")
    assert set(body["orderbook"].values()) == {None}
    client = kalshi_client(routes({"/markets/X/orderbook": body}))

    book = client.get_orderbook("X")

    assert (book.yes, book.no) == ([], [])
    assert (book.best_yes_bid, book.best_no_bid, book.best_yes_ask) == (None, None, None)


def test_it_parses_sub_cent_combo_books(kalshi_client, kalshi_fixture):
    recorded = kalshi_fixture("2026-08_combo_orderbooks.json")
    client = kalshi_client(routes({f"/markets/{item['ticker']}/orderbook": item for item in recorded}))

    books = {item["ticker"]: client.get_orderbook(item["ticker"]) for item in recorded}

    assert len(books) == 20
    first = books["KXMVESPORTSMULTIGAMEEXTENDED-S20269E879FDB0C2-92BDDDE5192"]
    assert first.yes == [] and first.no == [OrderbookLevel(D("0.8120"), D("369.00"))]
    assert first.best_yes_ask == D("0.1880")
    empty = books["KXMVESPORTSMULTIGAMEEXTENDED-S2026C9DF856B53E-FA285E34A57"]
    assert (empty.yes, empty.no, empty.best_yes_ask) == ([], [], None)
    two = books["KXMVESPORTSMULTIGAMEEXTENDED-S20262E66FB88E41-0646AEECAFB"]
    assert two.best_no_bid == D("0.5000") and two.no[0].price == D("0.4530")
    # Every level of every recorded book parsed into exact decimals.
    total_levels = sum(
        len(i["orderbook_fp"]["no_dollars"]) + len(i["orderbook_fp"]["yes_dollars"]) for i in recorded
    )
    assert sum(len(b.yes) + len(b.no) for b in books.values()) == total_levels


def test_it_parses_trade_pages(kalshi_client, kalshi_fixture):
    bodies = {
        "live": kalshi_fixture("2026-10_trades_page.json"),
        "all": kalshi_fixture("2026-09_trades_all_markets_page.json"),
        "historical": kalshi_fixture("2026-09_historical_trades_page.json"),
        "legacy": kalshi_fixture("legacy_2026-01_trades_page.json"),
    }
    client = kalshi_client(
        routes({"/markets/trades": lambda r: httpx.Response(200, json=bodies[r.url.params["ticker"]])})
    )

    live = client.get_trades_page(ticker="live")
    assert live.cursor == bodies["live"]["cursor"]
    first = live.trades[0]
    assert (first.ticker, first.yes_price, first.no_price, first.count) == (
        "KXNFLGAME-26OCT08TBDAL-DAL",
        D("0.8100"),
        D("0.1900"),
        D("1.00"),
    )
    assert (first.taker_outcome_side, first.taker_book_side) == ("yes", "bid")
    assert first.created_time == datetime(2026, 10, 6, 6, 38, 16, 556140, tzinfo=UTC)
    assert live.trades[1].count == D("14.18")

    everything = client.get_trades_page(ticker="all")
    assert len(everything.trades) == 5
    sub_cent = everything.trades[-1]
    assert (sub_cent.yes_price, sub_cent.no_price, sub_cent.count) == (D("0.0160"), D("0.9840"), D("1162.79"))

    historical = client.get_trades_page(ticker="historical")
    assert [t.count for t in historical.trades][:2] == [D("50.00"), D("700.60")]

    legacy = client.get_trades_page(ticker="legacy")
    assert len(legacy.trades) == 5
    assert (legacy.trades[0].yes_price, legacy.trades[0].no_price, legacy.trades[0].count) == (
        D("0.0600"),
        D("0.9400"),
        D(1),
    )
    stripped = {"trades": [without_dollar_fields(t) for t in bodies["legacy"]["trades"]], "cursor": ""}
    cents_only = kalshi_client(routes({"/markets/trades": stripped})).get_trades_page()
    assert [(t.yes_price, t.no_price) for t in cents_only.trades] == [(D("0.06"), D("0.94"))] * 5


def test_it_parses_exchange_status_current_and_legacy(kalshi_client, kalshi_fixture):
    current = kalshi_client(routes({"/exchange/status": kalshi_fixture("2026-10_exchange_status.json")}))
    legacy = kalshi_client(
        routes({"/exchange/status": kalshi_fixture("legacy_2026-01_exchange_status.json")})
    )

    now = current.get_exchange_status()
    assert (now.exchange_active, now.trading_active) == (True, True)
    assert [(s.exchange_index, s.description) for s in now.exchange_index_statuses] == [
        (0, "Default"),
        (1, "Combos"),
        (2, "Crypto & Commodities"),
    ]
    then = legacy.get_exchange_status()
    assert (then.trading_active, then.exchange_estimated_resume_time, then.exchange_index_statuses) == (
        True,
        None,
        [],
    )


# --------------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------------


def test_it_follows_cursors_until_an_empty_one(kalshi_client, kalshi_fixture):
    markets = kalshi_fixture("2026-08_markets_settled.json")["markets"]
    pages = {None: (markets[:20], "c1"), "c1": (markets[20:40], "c2"), "c2": (markets[40:], "")}
    seen: list[httpx.Request] = []
    client = kalshi_client(
        routes(
            {
                "/markets": lambda r: httpx.Response(
                    200,
                    json=dict(zip(("markets", "cursor"), pages[r.url.params.get("cursor")], strict=True)),
                )
            },
            seen,
        )
    )

    got = list(client.iter_markets_pages(status="open"))

    assert [len(p.quotes) for p in got] == [20, 20, 4]
    assert [r.url.params.get("cursor") for r in seen] == [None, "c1", "c2"]
    first = seen[0].url.params
    assert (first["limit"], first["status"], first["mve_filter"]) == ("1000", "open", "exclude")


def test_it_treats_a_missing_or_null_cursor_as_the_last_page(kalshi_client):
    bodies: list[dict[str, Any]] = [{"markets": []}, {"markets": [], "cursor": None}]
    for body in bodies:
        client = kalshi_client(routes({"/markets": body}))
        assert len(list(client.iter_markets_pages())) == 1


def test_it_stops_when_kalshi_repeats_a_cursor(kalshi_client, kalshi_fixture):
    seen: list[httpx.Request] = []
    body = dict(kalshi_fixture("2026-10_trades_page.json"))  # always the same non-empty cursor
    client = kalshi_client(routes({"/markets/trades": body}, seen))

    pages = list(client.iter_trades_pages(ticker="KXNFLGAME-26OCT08TBDAL-DAL"))

    assert len(pages) == 2
    assert [r.url.params.get("cursor") for r in seen] == [None, body["cursor"]]


def test_it_sends_filters_as_kalshi_expects(kalshi_client):
    seen: list[httpx.Request] = []
    client = kalshi_client(routes({"/markets": {"markets": []}, "/events": {"events": []}}, seen))

    client.get_markets_page(tickers=["A-1", "B-2"], mve_filter=None, limit=5)
    client.get_events_page(event_tickers=["E-1", "E-2"], with_nested_markets=True, status="settled")

    assert dict(seen[0].url.params) == {"limit": "5", "tickers": "A-1,B-2"}
    assert dict(seen[1].url.params) == {
        "limit": "200",
        "status": "settled",
        "tickers": "E-1,E-2",
        "with_nested_markets": "true",
    }


def test_it_refuses_object_statuses_and_bad_limits_before_sending(kalshi_client):
    client = kalshi_client(routes({}))
    with pytest.raises(ValueError, match="status must be one of unopened, open, paused, closed, settled"):
        client.get_markets_page(status="finalized")
    with pytest.raises(ValueError, match="limit"):
        client.get_markets_page(limit=1001)
    with pytest.raises(ValueError, match="status must be one of"):
        client.get_events_page(status="paused")
    assert client.requests_made == 0


# --------------------------------------------------------------------------------------------------
# Errors and retries
# --------------------------------------------------------------------------------------------------


def flaky(responses, seen=None):
    """A handler that answers with each of `responses` in turn (an exception is raised)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        response: httpx.Response = item
        return response

    return handler


def test_it_retries_a_429_then_succeeds(kalshi_client, kalshi_fixture):
    sleeps: list[float] = []
    too_many = httpx.Response(429, json={"error": "too many requests"})  # Kalshi's bare 429
    client = kalshi_client(
        flaky([too_many, too_many, httpx.Response(200, json=kalshi_fixture("2026-10_exchange_status.json"))]),
        sleep=sleeps.append,
        backoff_base=0.5,
    )

    status = client.get_exchange_status()

    assert status.trading_active is True
    assert client.requests_made == 3
    # Full jitter: each wait is somewhere in [0, base * 2**attempt].
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_it_gives_up_on_5xx_with_a_message_saying_what_to_do(kalshi_client):
    seen: list[httpx.Request] = []
    client = kalshi_client(
        flaky([httpx.Response(503, text="upstream connect error")] * 3, seen), max_retries=2
    )

    with pytest.raises(KalshiError) as caught:
        client.get_markets_page()

    error = caught.value
    message = str(error)
    assert "GET https://kalshi.test/trade-api/v2/markets?limit=1000&mve_filter=exclude" in message
    assert "after 3 attempt(s)" in message
    assert "HTTP 503 upstream connect error" in message
    assert "try again later" in message
    assert (error.status_code, error.attempts, error.url) == (503, 3, str(seen[0].url))
    assert len(seen) == 3


def test_it_advises_a_lower_rate_when_429s_never_stop(kalshi_client):
    client = kalshi_client(
        flaky([httpx.Response(429, json={"error": "too many requests"})] * 2), max_retries=1
    )

    with pytest.raises(KalshiError, match="HTTP 429 too many requests.*lower KALSHI_RATE_LIMIT"):
        client.get_exchange_status()


def test_it_retries_timeouts(kalshi_client, kalshi_fixture):
    def timeout(request_url="https://kalshi.test/"):
        return httpx.ReadTimeout("read timed out", request=httpx.Request("GET", request_url))

    ok = httpx.Response(200, json=kalshi_fixture("2026-10_series_single.json"))
    client = kalshi_client(flaky([timeout(), timeout(), ok]), timeout=2.5)
    assert client.get_series("KXNFLGAME").ticker == "KXNFLGAME"
    assert client.requests_made == 3

    stuck = kalshi_client(flaky([timeout()] * 2), timeout=2.5, max_retries=1)
    with pytest.raises(KalshiError, match=r"timed out after 2\.5s \(ReadTimeout\)\. Check KALSHI_API_BASE"):
        stuck.get_series("KXNFLGAME")


def test_it_names_kalshi_api_base_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed again: connecting is refused, for real.
    base = f"http://127.0.0.1:{port}/trade-api/v2"
    with (
        KalshiClient(base_url=base, max_retries=1, sleep=lambda s: None) as client,
        pytest.raises(KalshiError) as caught,
    ):
        client.get_markets_page()

    message = str(caught.value)
    assert "could not connect" in message
    assert f"Check KALSHI_API_BASE ({base})" in message
    assert caught.value.status_code is None and caught.value.attempts == 2


def test_it_surfaces_kalshis_invalid_status_filter_details(kalshi_client, kalshi_fixture):
    queries = kalshi_fixture("2026-08_markets_settled.json")["queries"]
    recorded = next(q["error"] for q in queries if q["status"] == "finalized")
    status_line, body = recorded.split("\n", 1)
    assert status_line.startswith("HTTP 400")
    client = kalshi_client(flaky([httpx.Response(400, content=body.encode())]))

    with pytest.raises(KalshiError) as caught:
        client.request("/markets", {"status": "finalized"})

    assert "HTTP 400 bad_request: bad request: invalid status filter" in str(caught.value)
    assert (caught.value.status_code, caught.value.attempts) == (400, 1)  # a 400 is not retried


def test_it_reports_a_body_that_is_not_json(kalshi_client):
    client = kalshi_client(flaky([httpx.Response(200, text="<html>Welcome to nginx!</html>")]))

    with pytest.raises(KalshiError, match=r"response we cannot read.*Is KALSHI_API_BASE .* Trade API v2\?"):
        client.get_markets_page()
    assert client.requests_made == 1  # someone else's server: asking again will not help


def test_it_retries_a_truncated_body_like_a_5xx(kalshi_client, kalshi_fixture):
    body = json.dumps(kalshi_fixture("2026-10_markets_page.json")).encode()
    sleeps: list[float] = []
    client = kalshi_client(
        flaky([httpx.Response(200, content=body[: len(body) // 2]), httpx.Response(200, content=body)]),
        sleep=sleeps.append,
    )

    page = client.get_markets_page()

    assert [q.ticker for q in page.quotes] == ["KXNFLGAME-26OCT08TBDAL-DAL", "KXNFLGAME-26OCT08TBDAL-TB"]
    assert client.requests_made == 2 and len(sleeps) == 1


def test_it_gives_up_on_bodies_that_keep_arriving_broken(kalshi_client, kalshi_fixture):
    body = json.dumps(kalshi_fixture("2026-10_markets_page.json")).encode()
    broken = [body[:100], body[:-1], b'{"markets": [{"ticker": "A",,}]}']
    client = kalshi_client(flaky([httpx.Response(200, content=b) for b in broken]), max_retries=2)

    with pytest.raises(KalshiError) as caught:
        client.get_markets_page()

    message = str(caught.value)
    assert "failed after 3 attempt(s): the response body was malformed JSON, cut short or garbled" in message
    assert "try again later" in message and "KALSHI_API_BASE" not in message
    assert (caught.value.status_code, caught.value.attempts) == (None, 3)


def test_it_does_not_retry_a_well_formed_body_of_the_wrong_shape(kalshi_client):
    client = kalshi_client(flaky([httpx.Response(200, json={"markets": "none"})]))

    with pytest.raises(KalshiError, match=r"response we cannot read.*Is KALSHI_API_BASE"):
        client.get_markets_page()
    assert client.requests_made == 1


def test_it_hints_at_the_base_url_on_a_404_listing(kalshi_client):
    client = kalshi_client(routes({}))

    with pytest.raises(KalshiError, match=r"HTTP 404 not_found: not found\. Is KALSHI_API_BASE right\?"):
        client.get_markets_page()


def test_it_does_not_blame_the_base_url_for_an_unknown_ticker(kalshi_client):
    client = kalshi_client(routes({}))

    for call in (
        lambda: client.get_market("NOPE"),
        lambda: client.get_event("NOPE"),
        lambda: client.get_series("NOPE"),
        lambda: client.get_orderbook("NOPE"),
    ):
        with pytest.raises(KalshiError) as caught:
            call()
        assert caught.value.status_code == 404
        assert "KALSHI_API_BASE" not in str(caught.value)


# --------------------------------------------------------------------------------------------------
# Throttles
# --------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_it_spaces_requests_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock, sleep=clock.sleep)

    stamps = []
    for _ in range(5):
        bucket.acquire()
        stamps.append(clock.now - 100.0)

    assert stamps == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_it_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(4, burst=3, clock=clock, sleep=clock.sleep)

    stamps = []
    for _ in range(6):
        bucket.acquire()
        stamps.append(clock.now - 100.0)
    assert stamps == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.5, 0.75])

    clock.now += 10  # idle: the bucket refills, but only up to the burst
    start = clock.now
    for _ in range(4):
        bucket.acquire()
    assert clock.now - start == pytest.approx(0.25)


def test_a_client_waits_for_its_throttle(kalshi_client, kalshi_fixture):
    clock = FakeClock()
    client = kalshi_client(
        routes({"/exchange/status": kalshi_fixture("2026-10_exchange_status.json")}),
        throttle=TokenBucket(2, burst=1, clock=clock, sleep=clock.sleep),
    )

    for _ in range(3):
        client.get_exchange_status()

    assert clock.now - 100.0 == pytest.approx(1.0)


def test_redis_bucket_shared_by_two_threads_never_exceeds_the_rate():
    rate, burst, per_thread = 20.0, 2.0, 15
    key = f"kalshi_insights:test_rate:{uuid.uuid4().hex}"
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        # Each thread has its own connection, as separate processes would.
        bucket = RedisTokenBucket(redis.Redis.from_url(redis_url()), rate=rate, burst=burst, key=key)
        for _ in range(per_thread):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    stamps.sort()
    total = len(stamps)
    assert total == 2 * per_thread
    # 30 tokens with 2 in the bucket at the start need at least 28 refills at 20/s.
    assert stamps[-1] - stamps[0] >= (total - burst) / rate * 0.95
    # And no window ever saw more than burst + rate × its length (one request of slack for the
    # gap between Redis granting a token and this thread taking its timestamp).
    for i in range(total):
        for j in range(i + 1, total):
            assert j - i + 1 <= burst + rate * (stamps[j] - stamps[i]) + 1
    redis.Redis.from_url(redis_url()).delete(key)


def test_shared_throttle_uses_redis_when_it_answers():
    assert isinstance(shared_throttle(rate=5, burst=1, redis_url=redis_url()), RedisTokenBucket)


def test_shared_throttle_falls_back_to_a_process_bucket_when_redis_is_down(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    throttle = shared_throttle(rate=5, burst=1, redis_url=f"redis://127.0.0.1:{port}/0")

    assert isinstance(throttle, TokenBucket)
    assert throttle is shared_throttle(rate=5, burst=1, redis_url=None)  # one bucket per process
    assert "REDIS_URL is unreachable" in caplog.text


def test_it_hints_at_the_base_url_on_a_404_trades_listing(kalshi_client):
    client = kalshi_client(routes({}))

    with pytest.raises(
        KalshiError, match=r"Is KALSHI_API_BASE right\? It is https://kalshi.test/trade-api/v2\."
    ):
        client.get_trades_page()


@pytest.mark.parametrize(
    ("fixture", "key", "field"),
    [
        ("2026-10_market_single.json", "market", "floor_strike"),
        ("2026-10_market_single.json", "market", "volume_fp"),
        ("2026-10_market_single.json", "market", "yes_bid_dollars"),
        ("2026-10_series_single.json", "series", "fee_multiplier"),
    ],
)
def test_it_refuses_non_finite_numbers(kalshi_client, kalshi_fixture, fixture, key, field):
    body = copy.deepcopy(kalshi_fixture(fixture))
    body[key][field] = "NaN"
    client = kalshi_client(routes({"/markets/X": body, "/series/X": body}))

    with pytest.raises(KalshiError, match=field.removesuffix("_dollars").removesuffix("_fp")):
        client.get_market("X") if key == "market" else client.get_series("X")
