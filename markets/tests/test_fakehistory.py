"""The fake exchange's history: the cutoff, the archive and candlesticks in Kalshi's recorded shapes,
cut consistently from one path per market that meets the recorded quote and the live moves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from conftest import load_kalshi_fixture
from markets.fakeexchange import FakeExchange, RunningExchange, serve
from markets.fakehistory import Anchor, MarketPath, period_bounds
from markets.kalshi import KalshiClient, KalshiError

D = Decimal
# A fixed clock: 2026-11-26 15:20:34 UTC (New York on standard time: days end at 05:00 UTC).
NOW = 1_795_706_434
LIVE = "KXNFLGAME-26OCT08TBDAL-DAL"  # recorded 2026-10-06, active
SETTLED = "KXMLBGAME-26AUG081610LAAMIA-MIA"  # recorded 2026-08-08, finalized "yes" at 0.99
ARCHIVED = "KXU3-26JUN-T4.8"  # settled before the cutoff: only under /historical
COMBO = "KXMVENFLSINGLEGAME-S202513E70FA7695-688BECB3826"  # never quoted, never traded


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def fake(clock: Clock) -> Iterator[RunningExchange]:
    with serve(FakeExchange(seed=3, wall_clock=clock)) as running:
        yield running


@pytest.fixture
def http(fake: RunningExchange) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url) as client:
        yield client


def candles(
    http: httpx.Client, ticker: str, period: int, start: int = 0, end: int = 4_000_000_000
) -> list[dict[str, Any]]:
    body = http.get(
        "/markets/candlesticks",
        params={"market_tickers": ticker, "start_ts": start, "end_ts": end, "period_interval": period},
    ).json()
    return body["markets"][0]["candlesticks"] if body["markets"] else []


def test_recorded_times_move_by_whole_days_to_the_exchanges_clock(clock):
    shifted = FakeExchange(wall_clock=clock)
    as_recorded = FakeExchange(wall_clock=clock, shift_recordings=False)

    recorded = load_kalshi_fixture("2026-10_market_single.json")["market"]
    market = shifted.markets[LIVE].render()
    assert (
        as_recorded.markets[LIVE].render()["close_time"] == recorded["close_time"] == "2026-10-11T00:15:00Z"
    )
    # Recorded 2026-10-06 12:00; the exchange starts 2026-11-26 15:20: 51 whole days later.
    assert market["close_time"] == "2026-12-01T00:15:00Z"
    assert market["created_time"] == "2026-11-19T04:01:07.17746Z"  # precision and time of day kept
    assert market["yes_bid_dollars"] == recorded["yes_bid_dollars"]
    # Each recording reads as made within the day before the start: settled games settled in the
    # last few days, and the archive and the cutoff stay in the order Kalshi had them.
    settled = [m for m in shifted.markets.values() if m.status == "finalized"]
    assert all(NOW - 5 * 86_400 < m.settled_ts < NOW for m in settled if m.settled_ts)
    cutoff = datetime.fromisoformat(shifted.cutoff["market_settled_ts"]).timestamp()
    assert all((m.settled_ts or 0) < cutoff for m in shifted.archived.values())
    assert all(m.settled_ts > cutoff for m in settled if m.settled_ts)
    assert shifted.cutoff.keys() == load_kalshi_fixture("2026-09_historical_cutoff.json").keys()
    trades = [t for t in shifted.trades if t["ticker"] == LIVE]
    assert trades and all(t["created_time"] < "2026-11-26T15:20" for t in trades)


def test_candles_come_in_kalshis_recorded_shapes(fake, http):
    recorded_live = load_kalshi_fixture("2026-08_candlesticks_1m_mlb.json")["markets"]
    traded_shape = next(
        c for m in recorded_live.values() for c in m["candlesticks"] if "close_dollars" in c["price"]
    )
    historical_shape = load_kalshi_fixture("2026-09_historical_candlesticks_hourly.json")["candlesticks"][0]

    hourly = candles(http, SETTLED, 60)
    traded = [c for c in hourly if "close_dollars" in c["price"] and "previous_dollars" in c["price"]]
    assert traded
    assert traded[0].keys() == traded_shape.keys()
    assert traded[0]["price"].keys() == traded_shape["price"].keys()
    assert traded[0]["yes_bid"].keys() == traded_shape["yes_bid"].keys()
    # Nothing traded: the price keys are omitted (only the previous trade, if there was one).
    thin = candles(http, "KXNCAAFGAME-26JAN19MIAIND-IND", 60)  # 18 contracts in three weeks
    quiet = [c for c in thin if c["volume_fp"] == "0.00"]
    assert quiet and all(set(c["price"]) <= {"previous_dollars"} for c in quiet)
    assert "previous_dollars" not in thin[0]["price"]  # nothing traded before its first period
    assert any(c["price"].keys() == {"previous_dollars"} for c in quiet)
    assert hourly[0]["price"].get("previous_dollars") is None  # no trade before the first period

    single = http.get(
        f"/series/KXMLBGAME/markets/{SETTLED}/candlesticks",
        params={"start_ts": 0, "end_ts": NOW, "period_interval": 60},
    ).json()
    assert single == {"candlesticks": hourly, "ticker": SETTLED}

    archived = http.get(
        f"/historical/markets/{ARCHIVED}/candlesticks",
        params={"start_ts": 0, "end_ts": NOW, "period_interval": 60},
    ).json()
    assert archived["ticker"] == ARCHIVED
    first = archived["candlesticks"][0]
    assert first.keys() == historical_shape.keys()
    assert first["price"].keys() == historical_shape["price"].keys()
    assert first["yes_ask"].keys() == historical_shape["yes_ask"].keys()
    untraded = [c for c in archived["candlesticks"] if c["volume"] == "0.00"]
    assert untraded and all(c["price"]["close"] is None and c["price"]["mean"] is None for c in untraded)

    with KalshiClient(base_url=fake.base_url) as client:
        parsed = client.get_market_candlesticks(
            "KXMLBGAME", SETTLED, start_ts=0, end_ts=NOW, period_interval=60
        )
        assert parsed.skipped == [] and len(parsed.candles) == len(hourly)
        old = client.get_historical_market_candlesticks(
            ARCHIVED, start_ts=0, end_ts=NOW, period_interval=1440
        )
        assert old.skipped == [] and old.candles


def test_periods_agree_with_each_other(http):
    for ticker in (SETTLED, LIVE):
        minutes = candles(http, ticker, 1, NOW - 2 * 86_400)
        hours = candles(http, ticker, 60, NOW - 3 * 86_400)
        days = candles(http, ticker, 1440)
        assert all(c["end_period_ts"] <= NOW for c in minutes + hours + days)

        by_hour = defaultdict(list)
        for c in minutes:
            by_hour[-(-c["end_period_ts"] // 3600) * 3600].append(c)
        hour_of = {c["end_period_ts"]: c for c in hours}
        checked = 0
        for end, group in by_hour.items():
            if len(group) < 60 or end not in hour_of:
                continue  # the hour of the open or close, or outside the hourly window
            hour = hour_of[end]
            checked += 1
            assert sum(D(c["volume_fp"]) for c in group) == D(hour["volume_fp"])
            for side in ("yes_bid", "yes_ask"):
                assert hour[side]["open_dollars"] == group[0][side]["open_dollars"]
                assert hour[side]["close_dollars"] == group[-1][side]["close_dollars"]
                assert D(hour[side]["high_dollars"]) == max(D(c[side]["high_dollars"]) for c in group)
                assert D(hour[side]["low_dollars"]) == min(D(c[side]["low_dollars"]) for c in group)
            traded = [c for c in group if "close_dollars" in c["price"]]
            if traded:
                assert hour["price"]["open_dollars"] == traded[0]["price"]["open_dollars"]
                assert hour["price"]["close_dollars"] == traded[-1]["price"]["close_dollars"]
            else:
                assert "close_dollars" not in hour["price"]
            assert hour["open_interest_fp"] == group[-1]["open_interest_fp"]
            assert hour["price"].get("previous_dollars") == group[0]["price"].get("previous_dollars")
        assert checked >= 24, ticker

        # Days end at midnight New York time (05:00 UTC in November) and hold their hours.
        assert all(datetime.fromtimestamp(c["end_period_ts"], UTC).hour == 5 for c in days)
        every_hour = candles(http, ticker, 60)
        for day in days:
            inside = [
                h
                for h in every_hour
                if day["end_period_ts"] - 86_400 < h["end_period_ts"] <= day["end_period_ts"]
            ]
            assert sum(D(h["volume_fp"]) for h in inside) == D(day["volume_fp"])
            assert day["yes_bid"]["close_dollars"] == inside[-1]["yes_bid"]["close_dollars"]


def test_history_meets_the_recorded_market(fake, http):
    recorded = {m["ticker"]: m for m in load_kalshi_fixture("2026-08_markets_settled.json")["markets"]}[
        SETTLED
    ]
    hours = candles(http, SETTLED, 60)
    # Every contract traded is in a candle, the last trade is the recorded last price, and the
    # book closes around it; nothing after the close.
    assert sum(D(c["volume_fp"]) for c in hours) == D(recorded["volume_fp"])
    last_traded = [c for c in hours if "close_dollars" in c["price"]][-1]
    assert last_traded["price"]["close_dollars"] == recorded["last_price_dollars"] == "0.9900"
    assert (hours[-1]["yes_bid"]["close_dollars"], hours[-1]["yes_ask"]["close_dollars"]) == (
        "0.9800",
        "0.9900",
    )
    close = fake.exchange.markets[SETTLED].close_ts
    assert hours[-1]["end_period_ts"] == -(-close // 3600) * 3600
    # The recorded quote a day before the recording (0.59 / 0.60) is on the path.
    day_before = (fake.exchange.markets[SETTLED].recorded_ts - 86_400) // 3600 * 3600
    at = next(c for c in hours if c["end_period_ts"] == day_before)
    assert (at["yes_bid"]["close_dollars"], at["yes_ask"]["close_dollars"]) == ("0.5900", "0.6000")
    # 24-hour volume as recorded (counted from the hour of the quote a day before).
    last_day = sum(D(c["volume_fp"]) for c in candles(http, SETTLED, 1, day_before + 1))
    assert (
        last_day
        == D(recorded["volume_24h_fp"])
        == sum(D(c["volume_fp"]) for c in hours if c["end_period_ts"] > day_before)
    )

    live = http.get(f"/markets/{LIVE}").json()["market"]
    hours = candles(http, LIVE, 60)
    assert sum(D(c["volume_fp"]) for c in hours) == D(live["volume_fp"])
    assert hours[-1]["yes_bid"]["close_dollars"] == live["yes_bid_dollars"]
    assert hours[-1]["yes_ask"]["close_dollars"] == live["yes_ask_dollars"]
    assert hours[-1]["open_interest_fp"] == live["open_interest_fp"]
    assert [c for c in hours if "close_dollars" in c["price"]][-1]["price"]["close_dollars"] == live[
        "last_price_dollars"
    ]
    grid = {D(p) for p in ("0.0000", "1.0000")} | {D(n) / 100 for n in range(1, 100)}
    for c in hours:
        for side in ("yes_bid", "yes_ask"):
            assert all(D(v) in grid for v in c[side].values())
        assert D(c["yes_bid"]["close_dollars"]) < D(c["yes_ask"]["close_dollars"])

    # A market that never traded or quoted: candles with an empty book and no trade, never a price.
    for c in candles(http, COMBO, 60):
        assert c["price"] == {} and c["volume_fp"] == "0.00"
        assert (c["yes_bid"]["close_dollars"], c["yes_ask"]["close_dollars"]) == ("0.0000", "1.0000")


def test_live_moves_become_candles_once_their_period_ends(fake, http, clock):
    start_hour = NOW // 3600 * 3600
    assert candles(http, LIVE, 60, start_hour + 1) == []  # the current hour has not ended
    before = http.get(f"/markets/{LIVE}").json()["market"]

    clock.now = NOW + 60
    httpx.post(f"{fake.control_url}/advance", json={"tickers": [LIVE]})
    clock.now = NOW + 120
    fake.exchange.advance(tickers=[LIVE])
    after = http.get(f"/markets/{LIVE}").json()["market"]
    trades = [t for t in fake.exchange.trades if t["ticker"] == LIVE][-2:]
    assert candles(http, LIVE, 60, start_hour + 1) == []

    clock.now = start_hour + 3600 + 30
    [hour] = candles(http, LIVE, 60, start_hour + 1)
    assert hour["end_period_ts"] == start_hour + 3600
    assert hour["yes_bid"]["open_dollars"] == before["yes_bid_dollars"]
    assert hour["yes_bid"]["close_dollars"] == after["yes_bid_dollars"]
    assert hour["yes_ask"]["close_dollars"] == after["yes_ask_dollars"]
    assert (
        D(hour["volume_fp"])
        == D(after["volume_fp"]) - D(before["volume_fp"])
        == sum(D(t["count_fp"]) for t in trades)
    )
    assert hour["price"]["open_dollars"] == trades[0]["yes_price_dollars"]
    assert hour["price"]["close_dollars"] == trades[1]["yes_price_dollars"] == after["last_price_dollars"]
    assert hour["price"]["previous_dollars"] == before["last_price_dollars"]
    assert hour["open_interest_fp"] == after["open_interest_fp"]
    minutes = candles(http, LIVE, 1, start_hour + 60)
    assert [c["volume_fp"] != "0.00" for c in minutes].count(True) == 2
    # The day that holds the start merges the path before it with the moves after it.
    clock.now = NOW + 86_400
    day = next(c for c in candles(http, LIVE, 1440) if c["end_period_ts"] > start_hour)
    hours = [
        c
        for c in candles(http, LIVE, 60)
        if day["end_period_ts"] - 86_400 < c["end_period_ts"] <= day["end_period_ts"]
    ]
    assert D(day["volume_fp"]) == sum(D(c["volume_fp"]) for c in hours)
    assert day["yes_bid"]["close_dollars"] == after["yes_bid_dollars"]


def test_the_archive_is_served_only_under_historical(fake, http):
    cutoff = http.get("/historical/cutoff").json()
    with KalshiClient(base_url=fake.base_url) as client:
        parsed = client.get_historical_cutoff()
        assert parsed.market_settled_ts == datetime.fromisoformat(cutoff["market_settled_ts"])
        pages = list(client.iter_historical_markets_pages(series_ticker="KXU3", limit=2))
        assert [len(p.quotes) for p in pages] == [2, 1]
        archived = client.get_historical_market_raw(ARCHIVED)[0]
        assert (archived.status, archived.result, archived.settlement_value) == ("finalized", "no", D(0))
        assert archived.settlement_ts is not None and archived.settlement_ts < parsed.market_settled_ts
        tape = client.get_historical_trades_page(ticker=ARCHIVED)
        assert len(tape.trades) == 3 and all(t.created_time < parsed.trades_created_ts for t in tape.trades)
        assert client.get_historical_trades_page(ticker=LIVE).trades == []
        with pytest.raises(KalshiError) as caught:
            client.get_market(ARCHIVED)
        assert caught.value.status_code == 404
        with pytest.raises(KalshiError) as caught:
            client.get_historical_market_raw(LIVE)
        assert caught.value.status_code == 404
    by_ticker = http.get("/historical/markets", params={"tickers": f"{ARCHIVED},{LIVE}"}).json()
    assert [m["ticker"] for m in by_ticker["markets"]] == [ARCHIVED]
    recorded = load_kalshi_fixture("2026-09_historical_markets_page.json")["markets"][0]
    assert by_ticker["markets"][0].keys() == recorded.keys()
    assert by_ticker["markets"][0]["volume_fp"] == recorded["volume_fp"]
    assert ARCHIVED not in {
        m["ticker"] for m in http.get("/markets", params={"limit": 1000}).json()["markets"]
    }
    # Candles live on the side of the cutoff the market is on.
    window = {"start_ts": 0, "end_ts": NOW, "period_interval": 60}
    assert http.get(f"/series/KXU3/markets/{ARCHIVED}/candlesticks", params=window).status_code == 404
    assert http.get(f"/historical/markets/{LIVE}/candlesticks", params=window).status_code == 404
    assert http.get(f"/series/KXMLBGAME/markets/{LIVE}/candlesticks", params=window).status_code == 404
    batch = http.get("/markets/candlesticks", params={**window, "market_tickers": f"{ARCHIVED},{LIVE},NOPE"})
    assert [m["market_ticker"] for m in batch.json()["markets"]] == [LIVE]


def test_candle_requests_follow_kalshis_rules(http, fake):
    window = {"start_ts": NOW - 86_400, "end_ts": NOW, "period_interval": 60}
    for bad in (
        {**window, "period_interval": 5},
        {**window, "start_ts": "yesterday"},
        {"start_ts": 0, "period_interval": 60},
        {**window, "end_ts": NOW - 2 * 86_400},
    ):
        response = http.get(f"/series/KXNFLGAME/markets/{LIVE}/candlesticks", params=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "bad_request"
    too_many = ",".join(f"T{i}" for i in range(101))
    assert http.get("/markets/candlesticks", params={**window, "market_tickers": too_many}).status_code == 400
    assert http.get("/markets/candlesticks", params=window).status_code == 400
    # At most 10,000 candles per batch response, across its markets.
    live = [m.ticker for m in fake.exchange.markets.values() if m.status == "active"][:4]
    minutes = {"start_ts": NOW - 3 * 86_400, "end_ts": NOW, "period_interval": 1}
    body = http.get("/markets/candlesticks", params={**minutes, "market_tickers": ",".join(live)}).json()
    assert sum(len(m["candlesticks"]) for m in body["markets"]) == 10_000
    # Candles end in [start_ts, end_ts], inclusive.
    hour = NOW // 3600 * 3600
    exact = candles(http, LIVE, 60, hour - 7200, hour - 3600)
    assert [c["end_period_ts"] for c in exact] == [hour - 7200, hour - 3600]


def test_history_is_reproducible_for_a_seed(clock):
    def hourly(seed: int) -> list[tuple[int, int, int]]:
        exchange = FakeExchange(seed=seed, wall_clock=clock, extra_markets=20)
        clone = next(t for t in exchange.markets if "-F0" in t)
        return [
            (c.bid_close, c.volume, c.trade_close)
            for ticker in (LIVE, clone)
            for c in exchange.candles(exchange.markets[ticker], 60, 0, NOW)
        ]

    assert hourly(1) == hourly(1)
    assert hourly(1) != hourly(2)


def test_a_days_candles_follow_new_yorks_clock():
    new_york = ZoneInfo("America/New_York")
    # New York falls back from EDT to EST on 2026-11-01, so that day has 25 hours.
    first = int(datetime(2026, 10, 31, tzinfo=new_york).timestamp())
    last = int(datetime(2026, 11, 3, tzinfo=new_york).timestamp())
    days = period_bounds(1440, first + 1, last)
    assert [(e - s) // 3600 for s, e in days] == [24, 25, 24]
    assert [datetime.fromtimestamp(e, new_york).hour for _, e in days] == [0, 0, 0]
    grid = tuple(range(10_000, 1_000_000, 10_000))
    path = MarketPath(
        key=1,
        grid=grid,
        open_ts=first,
        end_ts=last,
        anchors=[Anchor(last // 3600, 40, 41)],
        volume_knots=[(first, 0), (last, 50_000)],
        open_interest=(1, 2),
        last_price=410_000,
    )
    candles = path.candles(days)
    assert sum(c.volume for c in candles) == 50_000  # everything traded falls in some day
    assert (candles[-1].bid_close, candles[-1].ask_close, candles[-1].open_interest) == (
        400_000,
        410_000,
        25_000,
    )
    assert [c.trade_close for c in candles if c.trades][-1] == 410_000


def test_listings_filter_by_close_and_settlement_times_on_the_exchanges_clock(fake, http):
    def tickers(**params: Any) -> set[str]:
        return {m["ticker"] for m in http.get("/markets", params={**params, "limit": 1000}).json()["markets"]}

    exchange = fake.exchange
    two_days = NOW - 2 * 86_400
    settled = tickers(status="settled", min_settled_ts=two_days)
    assert settled == {
        t for t, m in exchange.markets.items() if m.status == "finalized" and (m.settled_ts or 0) >= two_days
    }
    assert SETTLED in settled and 0 < len(settled) < len(tickers(status="settled"))
    closed = tickers(status="closed", min_close_ts=0)
    assert closed == {t for t, m in exchange.markets.items() if m.status == "closed"}
    assert tickers(status="closed", min_close_ts=NOW) == set()
    assert tickers(tickers=f"{SETTLED},{LIVE},{ARCHIVED}") == {SETTLED, LIVE}
