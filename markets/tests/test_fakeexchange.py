"""The fake exchange over real HTTP: Kalshi's shapes and rules, consistent books, seeded moves,
injected faults and the control API."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from conftest import load_kalshi_fixture
from markets.fakeexchange import FakeExchange, RunningExchange, price_grid, serve
from markets.kalshi import KalshiClient, KalshiError

D = Decimal
PRICE = re.compile(r"^[01]\.\d{4}(\d\d)?$")
COUNT = re.compile(r"^\d+\.\d{2}$")


@pytest.fixture
def fake() -> Iterator[RunningExchange]:
    with serve(seed=7) as running:
        yield running


@pytest.fixture
def http(fake: RunningExchange) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.root_url) as client:
        yield client


def all_markets(http: httpx.Client, **params: str) -> list[dict[str, Any]]:
    markets, cursor = [], ""
    while True:
        body = http.get("/trade-api/v2/markets", params={**params, "limit": "7", "cursor": cursor}).json()
        markets += body["markets"]
        cursor = body["cursor"]
        if not cursor:
            return markets


def assert_consistent(market: dict[str, Any]) -> None:
    for key in (
        "yes_bid_dollars",
        "yes_ask_dollars",
        "no_bid_dollars",
        "no_ask_dollars",
        "last_price_dollars",
    ):
        assert PRICE.match(market[key]), (market["ticker"], key, market[key])
    for key in ("yes_bid_size_fp", "yes_ask_size_fp", "volume_fp", "volume_24h_fp", "open_interest_fp"):
        assert COUNT.match(market[key]), (market["ticker"], key, market[key])
    yes_bid, yes_ask = D(market["yes_bid_dollars"]), D(market["yes_ask_dollars"])
    assert yes_bid < yes_ask, market["ticker"]
    assert D(market["no_bid_dollars"]) == 1 - yes_ask
    assert D(market["no_ask_dollars"]) == 1 - yes_bid
    grid = {D(p) / 1_000_000 for p in price_grid(market["price_ranges"])}
    assert yes_bid == 0 or yes_bid in grid
    assert yes_ask == 1 or yes_ask in grid


def test_it_serves_every_recorded_market_once_in_todays_shape(http, kalshi_fixture):
    markets = all_markets(http)

    tickers = [m["ticker"] for m in markets]
    assert len(tickers) == len(set(tickers))
    # Recorded in several files each: served once.
    for ticker in ("KXNFLGAME-26OCT08TBDAL-DAL", "KXNCAAFGAME-26SEP19MSUND-ND", "KXELONMARS-99"):
        assert tickers.count(ticker) == 1
    settled = kalshi_fixture("2026-08_markets_settled.json")["markets"]
    assert {m["ticker"] for m in settled} <= set(tickers)
    # Archived markets are only under /historical on Kalshi.
    assert "KXU3-26JUN-T4.8" not in tickers
    for market in markets:
        assert_consistent(market)
        assert "yes_bid" not in market and "volume" not in market and "liquidity" not in market
    dal = next(m for m in markets if m["ticker"] == "KXNFLGAME-26OCT08TBDAL-DAL")
    assert (dal["yes_bid_dollars"], dal["yes_bid_size_fp"], dal["volume_fp"]) == (
        "0.8000",
        "16529.55",
        "271926.68",
    )
    # A Jan-2026 market: integer cents rewritten as strings, "0 = no ask" as today's "1.0000".
    elon = next(m for m in markets if m["ticker"] == "KXELONMARS-99")
    assert (elon["yes_ask_dollars"], elon["volume_fp"], elon["open_interest_fp"]) == (
        "0.0700",
        "35001.00",
        "13679.00",
    )
    combo = next(m for m in markets if m["ticker"] == "KXMVENFLSINGLEGAME-S202513E70FA7695-688BECB3826")
    assert (combo["yes_bid_dollars"], combo["yes_ask_dollars"], combo["no_bid_dollars"]) == (
        "0.0000",
        "1.0000",
        "0.0000",
    )


def test_it_maps_status_filters_to_object_statuses(http, kalshi_fixture):
    expected = {
        "open": {"active"},
        "settled": {"finalized"},
        "closed": {"closed"},
        "unopened": set(),
        "paused": set(),
    }
    for name, statuses in expected.items():
        assert {m["status"] for m in all_markets(http, status=name)} == statuses, name

    for object_status in ("finalized", "active", "initialized", "bogus"):
        response = http.get("/trade-api/v2/markets", params={"status": object_status})
        assert response.status_code == 400
        # Byte for byte what Kalshi answered to status=finalized.
        recorded = next(
            q for q in kalshi_fixture("2026-08_markets_settled.json")["queries"] if q["status"] == "finalized"
        )
        assert response.text == recorded["error"].split("\n", 1)[1]


def test_it_pages_with_cursors_and_limits(http):
    every = all_markets(http)
    first = http.get("/trade-api/v2/markets", params={"limit": "1000"}).json()
    assert first["cursor"] == "" and len(first["markets"]) == len(every)

    assert http.get("/trade-api/v2/markets").json()["cursor"] != ""  # default limit 100 < markets
    for bad in ({"limit": "1001"}, {"limit": "0"}, {"limit": "ten"}, {"cursor": "not-a-cursor"}):
        response = http.get("/trade-api/v2/markets", params=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "bad_request"


def test_it_filters_markets_like_kalshi(http):
    combos = all_markets(http, mve_filter="only")
    plain = all_markets(http, mve_filter="exclude")
    assert combos and all(m.get("mve_collection_ticker") for m in combos)
    assert plain and not any(m.get("mve_collection_ticker") for m in plain)
    assert len(combos) + len(plain) == len(all_markets(http))

    event = all_markets(http, event_ticker="KXNFLGAME-26OCT08TBDAL")
    assert [m["ticker"] for m in event] == ["KXNFLGAME-26OCT08TBDAL-DAL", "KXNFLGAME-26OCT08TBDAL-TB"]
    picked = all_markets(http, tickers="KXELONMARS-99,KXNFLGAME-26OCT08TBDAL-TB,NOPE")
    assert sorted(m["ticker"] for m in picked) == ["KXELONMARS-99", "KXNFLGAME-26OCT08TBDAL-TB"]
    mlb = all_markets(http, series_ticker="KXMLBGAME", status="settled")
    assert mlb and all(m["ticker"].startswith("KXMLBGAME-") for m in mlb)
    assert http.get("/trade-api/v2/markets", params={"mve_filter": "maybe"}).status_code == 400


def test_events_and_series_match_the_markets(http):
    markets = all_markets(http)
    events: dict[str, dict[str, Any]] = {}
    for ticker in {m["event_ticker"] for m in markets}:
        response = http.get(f"/trade-api/v2/events/{ticker}", params={"with_nested_markets": "true"})
        assert response.status_code == 200, ticker
        body = response.json()
        assert body["markets"] == []  # nested layout: the deprecated top-level list is empty
        events[ticker] = body["event"]
    for market in markets:
        nested = {m["ticker"]: m for m in events[market["event_ticker"]]["markets"]}
        assert nested[market["ticker"]] == market
    for event in events.values():
        series = http.get(f"/trade-api/v2/series/{event['series_ticker']}")
        assert series.status_code == 200, event["series_ticker"]
    flat = http.get("/trade-api/v2/events/KXELONMARS-99").json()
    assert "markets" not in flat["event"] and [m["ticker"] for m in flat["markets"]] == ["KXELONMARS-99"]


def test_it_lists_events_with_filters_and_without_combos(fake):
    with KalshiClient(base_url=fake.base_url) as client:
        pages = list(client.iter_events_pages(with_nested_markets=True))
        events = [e for p in pages for e in p.events]
        assert events and not any(m.mve_collection_ticker for e in events for m in e.markets)
        open_nfl = [
            e for p in client.iter_events_pages(series_ticker="KXNFLGAME", status="open") for e in p.events
        ]
        assert "KXNFLGAME-26OCT08TBDAL" in {e.event_ticker for e in open_nfl}
        assert all(e.series_ticker == "KXNFLGAME" and e.markets == [] for e in open_nfl)
        picked = client.get_events_page(event_tickers=["KXELONMARS-99", "KXNFLGAME-26OCT08TBDAL"])
        assert sorted(e.event_ticker for e in picked.events) == ["KXELONMARS-99", "KXNFLGAME-26OCT08TBDAL"]
        series, _ = client.get_series_list(category="Sports")
        assert "KXNFLGAME" in {s.ticker for s in series}
        assert client.get_series("KXMLBGAME").fee_multiplier == D("0.5")
    with httpx.Client() as http:
        assert http.get(f"{fake.base_url}/events", params={"status": "paused"}).status_code == 400
        assert http.get(f"{fake.base_url}/events", params={"limit": "201"}).status_code == 400


def test_quotes_move_on_the_grid_and_volume_never_falls(fake, http):
    before = {m["ticker"]: m for m in all_markets(http)}
    history = [before]
    for _ in range(15):
        moved = http.post("/_fake/advance", json={}).json()["moved"]
        now = {m["ticker"]: m for m in all_markets(http)}
        changed = {t for t in now if now[t] != history[-1][t]}
        assert changed == set(moved)
        for ticker, market in now.items():
            assert_consistent(market)
            previous = history[-1][ticker]
            assert D(market["volume_fp"]) >= D(previous["volume_fp"])
            assert D(market["volume_24h_fp"]) >= D(previous["volume_24h_fp"])
            if market["status"] != "active":
                assert market == previous  # closed and settled markets never move
            else:
                grid = {D(p) / 1_000_000 for p in price_grid(market["price_ranges"])}
                assert D(market["last_price_dollars"]) in grid | {D(0)}
            # Metadata is not a trade: updated_time stays put (API.md §9.3).
            assert market["updated_time"] == previous["updated_time"]
        history.append(now)
    moved_at_all = {t for t in before if history[-1][t] != before[t]}
    assert len(moved_at_all) > len(before) // 3


def test_sub_cent_grids_move_in_sub_cent_steps(http):
    combo = "KXMVENFLSINGLEGAME-S202513E70FA7695-688BECB3826"  # deci_cent: step 0.0010
    seen = set()
    for _ in range(5):
        http.post("/_fake/advance", json={"tickers": [combo]})
        market = http.get(f"/trade-api/v2/markets/{combo}").json()["market"]
        assert_consistent(market)
        seen.add(D(market["yes_bid_dollars"]) * 1000 % 10)
    assert seen != {D(0)}, "a 0.001 grid should produce prices off the cent grid"


def test_moves_are_deterministic_for_a_seed():
    def run(seed: int) -> list[list[str]]:
        exchange = FakeExchange(seed=seed, extra_markets=50)
        return [exchange.advance() for _ in range(5)] + [
            [m.render()["yes_bid_dollars"] for m in exchange.markets.values()]
        ]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_the_order_book_matches_the_quote(fake, http):
    http.post("/_fake/advance", json={"ticks": 3})
    with KalshiClient(base_url=fake.base_url) as client:
        for market in all_markets(http, status="open"):
            book = client.get_orderbook(market["ticker"])
            if market["yes_bid_dollars"] == "0.0000":
                assert book.yes == []
            else:
                assert book.yes[-1].price == D(market["yes_bid_dollars"])
                assert book.yes[-1].count == D(market["yes_bid_size_fp"])
            if market["yes_ask_dollars"] == "1.0000":
                assert book.no == []
            else:
                assert book.best_yes_ask == D(market["yes_ask_dollars"])
                assert book.no[-1].count == D(market["yes_ask_size_fp"])
            for side in (book.yes, book.no):
                assert [lvl.price for lvl in side] == sorted(
                    {lvl.price for lvl in side}
                )  # ascending, best last
        assert len(client.get_orderbook("KXNFLGAME-26OCT08TBDAL-DAL", depth=3).yes) == 3
    assert (
        http.get(
            "/trade-api/v2/markets/KXNFLGAME-26OCT08TBDAL-DAL/orderbook", params={"depth": "101"}
        ).status_code
        == 400
    )


def test_trades_follow_the_moves(fake, http):
    ticker = "KXNFLGAME-26OCT08TBDAL-TB"
    recorded = http.get(
        "/trade-api/v2/markets/trades", params={"ticker": "KXNFLGAME-26OCT08TBDAL-DAL"}
    ).json()
    assert [t["trade_id"] for t in recorded["trades"]] == [
        t["trade_id"] for t in load_kalshi_fixture("2026-10_trades_page.json")["trades"]
    ]
    before = http.get(f"/trade-api/v2/markets/{ticker}").json()["market"]

    http.post("/_fake/advance", json={"tickers": [ticker]})

    after = http.get(f"/trade-api/v2/markets/{ticker}").json()["market"]
    trades = http.get("/trade-api/v2/markets/trades", params={"ticker": ticker}).json()["trades"]
    newest = trades[0]
    # A forced move always trades: at the old ask (taker bought YES) or the old bid (sold).
    assert newest["yes_price_dollars"] == after["last_price_dollars"]
    assert newest["yes_price_dollars"] in (before["yes_ask_dollars"], before["yes_bid_dollars"])
    assert D(newest["yes_price_dollars"]) + D(newest["no_price_dollars"]) == 1
    assert D(after["volume_fp"]) - D(before["volume_fp"]) == D(newest["count_fp"])
    with KalshiClient(base_url=fake.base_url) as client:
        pages = list(client.iter_trades_pages(limit=2))
        assert sum(len(p.trades) for p in pages) == len(fake.exchange.trades)
        times = [t.created_time for p in pages for t in p.trades]
        assert times == sorted(times, reverse=True)


def test_it_answers_unknown_things_with_kalshis_404(fake, http):
    for path in (
        "/trade-api/v2/markets/NOPE",
        "/trade-api/v2/events/NOPE",
        "/trade-api/v2/series/NOPE",
        "/markets",
        "/",
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": {"code": "not_found", "message": "not found"}}
    with (
        KalshiClient(base_url=fake.root_url, max_retries=0) as wrong_base,
        pytest.raises(KalshiError) as caught,
    ):
        wrong_base.get_markets_page()
    assert f"Is KALSHI_API_BASE right? It is {fake.root_url}." in str(caught.value)


def test_it_injects_queued_faults_in_order(fake, http):
    http.post(
        "/_fake/faults", json={"next": ["429", "503", "malformed", {"kind": "500", "path": "/exchange"}]}
    )

    limited = http.get("/trade-api/v2/markets")
    assert (limited.status_code, limited.text) == (429, '{"error": "too many requests"}')
    assert "retry-after" not in limited.headers
    unavailable = http.get("/trade-api/v2/markets")
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["code"] == "service_unavailable"
    truncated = http.get("/trade-api/v2/markets")
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    assert http.get("/trade-api/v2/markets").status_code == 200  # the /exchange fault waits for its path
    assert http.get("/trade-api/v2/exchange/status").status_code == 500
    assert http.get("/trade-api/v2/exchange/status").status_code == 200

    state = http.get("/_fake/state").json()
    assert state["faults"]["served"] == {"429": 1, "503": 1, "malformed": 1, "500": 1}
    assert state["requests"]["total"] == 6


def test_it_can_drop_a_connection_and_slow_a_response(fake, http):
    http.post("/_fake/faults", json={"next": ["disconnect", {"kind": "slow", "seconds": 0.5}]})

    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/trade-api/v2/exchange/status")
    started = time.monotonic()
    assert http.get("/trade-api/v2/exchange/status").status_code == 200
    assert time.monotonic() - started >= 0.5


def test_random_fault_rates_are_seeded():
    def statuses(seed: int) -> list[int]:
        exchange = FakeExchange(seed=seed)
        exchange.set_faults(rate_429=0.3, rate_5xx=0.2, malformed_rate=0.1)
        return [exchange.handle("GET", "/trade-api/v2/exchange/status").status for _ in range(200)]

    first = statuses(1)
    assert first == statuses(1)
    assert first != statuses(2)
    assert 30 <= first.count(429) <= 90
    assert 15 <= sum(1 for s in first if s >= 500) <= 70


def test_the_client_rides_out_injected_faults(fake):
    fake.exchange.set_faults(rate_429=0.3, rate_5xx=0.2)
    with KalshiClient(base_url=fake.base_url, sleep=lambda s: None, max_retries=10) as client:
        pages = list(client.iter_markets_pages(limit=10, mve_filter=None))
        retried = client.requests_made - len(pages)
    assert sum(len(p.quotes) for p in pages) == len(fake.exchange.markets)
    assert retried == sum(fake.exchange.faults_served.values()) > 0


def test_the_control_api_rejects_bad_requests(http):
    for path, body in (
        ("/_fake/faults", {"rate_429": 2}),
        ("/_fake/faults", {"next": ["teapot"]}),
        ("/_fake/faults", {"colour": "red"}),
        ("/_fake/advance", {"ticks": 0}),
        ("/_fake/advance", {"fraction": 1.5}),
        ("/_fake/advance", {"tickers": "KXELONMARS-99"}),
    ):
        response = http.post(path, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["details"]
    assert http.post("/_fake/advance", json={"tickers": ["NOPE"]}).status_code == 404
    assert http.post("/_fake/advance", content=b"{not json").status_code == 400
    assert http.get("/_fake/advance").status_code == 405
    state = http.get("/_fake/state", params={"ticker": "KXELONMARS-99"}).json()
    assert state["market"]["ticker"] == "KXELONMARS-99"
    assert state["requests"] == {}  # control calls are not API requests


def test_synthetic_markets_are_consistent_clones():
    with serve(seed=5, extra_markets=250) as fake, httpx.Client(base_url=fake.root_url) as http:
        markets = all_markets(http)
        assert len(markets) == len(FakeExchange().markets) + 250
        clones = [m for m in markets if "-F0" in m["event_ticker"]]
        assert len(clones) == 250
        assert len({m["ticker"] for m in clones}) == 250
        for market in clones:
            assert_consistent(market)
            assert market["status"] == "active"
            event = http.get(f"/trade-api/v2/events/{market['event_ticker']}").json()
            assert market["ticker"] in {m["ticker"] for m in event["markets"]}
            assert http.get(f"/trade-api/v2/series/{event['event']['series_ticker']}").status_code == 200
        assert len({m["yes_bid_dollars"] for m in clones}) > 20  # a varied table, not one quote copied


def test_every_recorded_price_grid_is_usable(kalshi_fixture):
    for entry in kalshi_fixture("2026-08_price_grids.json")["grids"]:
        grid = price_grid(entry["price_ranges"])
        assert grid[0] > 0 and grid[-1] < 1_000_000
    assert price_grid([{"start": "0.0000", "end": "1.0000", "step": "0.0010"}])[:2] == (1_000, 2_000)


def test_the_command_explains_a_busy_port_and_bad_rates():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"Port {port} on 127.0.0.1 is already in use"):
            call_command("fakeexchange", port=port)
    with pytest.raises(CommandError, match="argument --fault-429: 1.5 is not a rate between 0 and 1"):
        call_command("fakeexchange", "--fault-429", "1.5")
