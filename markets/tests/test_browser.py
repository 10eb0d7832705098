"""The pages in real headless Chromium: live refresh, charts, range buttons, screenshots.

The app runs in pytest-django's live server; the only thing faked is Kalshi's network edge (an
httpx.MockTransport serving the real recordings, with one quote moved between polls).
Screenshots of every page at desktop and phone widths land in test-artifacts/ for review.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from markets import ingest
from markets.models import Market, MarketSnapshot, SnapshotSource
from markets.tests.factories import EventFactory, MarketFactory, PollRunFactory, SeriesFactory

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
DALLAS = "KXNFLGAME-26OCT08TBDAL-DAL"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class Session:
    """A page that records every request URL, console error and page error."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, path

    def check(self) -> None:
        assert self.errors == []
        outside = [u for u in self.requests if not u.startswith((self.base_url, "data:", "about:"))]
        assert outside == [], "requests left localhost"

    def fragment_requests(self, path: str = "/") -> int:
        return sum(1 for u in self.requests if u.startswith(self.base_url + path) and "/static/" not in u)


@pytest.fixture
def session(browser, live_server) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP)
    s = Session(context.new_page(), live_server.url)
    yield s
    context.close()
    s.check()


def shoot(session: Session, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    session.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --------------------------------------------------------------------------------------------------
# Data: the real recordings through the real ingest path
# --------------------------------------------------------------------------------------------------


class Exchange:
    """Kalshi's network edge for run_poll_cycle: recorded pages, whose quotes a test can move."""

    def __init__(self, kalshi_fixture: Any) -> None:
        self.fixture = kalshi_fixture
        nfl = kalshi_fixture("2026-08_events_nested_nfl_preseason.json")["events"]
        self.markets = kalshi_fixture("2026-10_markets_page.json")["markets"] + [
            m for e in nfl[:4] for m in e["markets"]
        ]
        # Keep the recorded games in the future so "closes in" reads like a live table.
        for m in self.markets:
            m["close_time"] = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def move(self, ticker: str, **fields: str) -> None:
        self.markets = copy.deepcopy(self.markets)
        market = next(m for m in self.markets if m["ticker"] == ticker)
        market.update(fields)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/markets"):
            return httpx.Response(200, json={"markets": self.markets, "cursor": ""})
        if path.endswith("/events"):
            return httpx.Response(200, json=self.fixture("2026-10_events_page.json"))
        if path.endswith("/series"):
            return httpx.Response(200, json=self.fixture("2026-10_series_list_page.json"))
        if "/series/" in path:
            return httpx.Response(200, json=self.fixture("2026-10_series_single.json"))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})


@pytest.fixture
def exchange(kalshi_fixture) -> Exchange:
    return Exchange(kalshi_fixture)


def history(market: Market, *, days: int = 10, step: timedelta = timedelta(minutes=5)) -> None:
    """A seeded random walk up to the market's current quote: backfilled, then polled for the
    last two days, ending just before the snapshot the poll stored."""
    rng = random.Random(3)
    now = timezone.now() - timedelta(seconds=30)
    count = int(timedelta(days=days) / step)
    end_mid = int((market.yes_bid or Decimal("0.5")) * 100)
    volume = (market.volume or Decimal(count * 20)) - count * 20
    walk = [0.0]
    for _ in range(count - 1):
        walk.append(walk[-1] + rng.gauss(0, 0.6))
    rows = []
    for i in range(count):
        at = now - (count - 1 - i) * step
        # Pin the walk's end to today's quote so the history meets the live data.
        mid = max(2, min(97, round(end_mid - 15 * (1 - i / count) + walk[i] - walk[-1] * i / count)))
        volume += Decimal(rng.randrange(0, 4000)) / 100
        rows.append(
            MarketSnapshot(
                market=market,
                captured_at=at,
                source=SnapshotSource.BACKFILL if at < now - timedelta(days=2) else SnapshotSource.POLL,
                yes_bid=Decimal(mid - 1) / 100,
                yes_ask=Decimal(mid + rng.choice((0, 1, 1, 2))) / 100,
                last_price=Decimal(mid) / 100,
                volume=volume,
            )
        )
    MarketSnapshot.objects.bulk_create(rows, batch_size=2000)


def ladder_event() -> None:
    """A temperature event with seven strike ranges, to show the implied distribution."""
    series = SeriesFactory.create(
        ticker="KXHIGHNY", title="NYC high temperature", category="Climate and Weather"
    )
    event = EventFactory.create(
        series=series, ticker="KXHIGHNY-26OCT07", title="Highest temperature in NYC on Oct 7?"
    )
    for i, p in enumerate([3, 9, 22, 31, 21, 10, 4]):
        floor = Decimal(60 + 2 * i) if i else None
        cap = Decimal(61 + 2 * i) if i < 6 else None
        label = (
            f"{floor}° to {cap}°" if floor and cap else f"{cap}° or below" if cap else f"{floor}° or above"
        )
        MarketFactory.create(
            event=event,
            ticker=f"KXHIGHNY-26OCT07-B{60 + 2 * i}",
            title=event.title,
            yes_sub_title=label,
            floor_strike=floor,
            cap_strike=cap,
            yes_bid=Decimal(max(p - 1, 0)) / 100,
            yes_ask=Decimal(p + 1) / 100,
            last_price=Decimal(p) / 100,
        )


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def bid_cell(session: Session, ticker: str) -> Any:
    return session.page.locator(f'tr[data-ticker="{ticker}"] td.bid')


def test_it_refreshes_the_table_by_itself_when_a_new_poll_lands(session, exchange, kalshi_client, settings):
    settings.KALSHI_POLL_INTERVAL = 1.0
    client = kalshi_client(exchange)
    ingest.run_poll_cycle(client=client)
    session.goto("/")
    assert bid_cell(session, DALLAS).inner_text() == "80¢"
    session.page.evaluate("window.__notReloaded = true")

    # The exchange moves the quote by half a cent; the next poll stores it.
    exchange.move(DALLAS, yes_bid_dollars="0.8050", yes_bid_size_fp="12.00")
    run = ingest.run_poll_cycle(client=client)
    assert run.snapshots_written == 1

    session.page.wait_for_function(
        f"document.querySelector('tr[data-ticker=\"{DALLAS}\"] td.bid').innerText === '80.5¢'", timeout=15_000
    )
    assert session.page.evaluate("window.__notReloaded") is True
    assert session.page.url == session.base_url + "/"


def test_it_keeps_filters_and_sort_in_the_url_across_refreshes(session, exchange, kalshi_client, settings):
    settings.KALSHI_POLL_INTERVAL = 1.0
    ingest.run_poll_cycle(client=kalshi_client(exchange))
    session.goto("/")
    rows = session.page.locator("tr[data-ticker]")
    assert rows.count() == len(exchange.markets)

    session.page.fill('input[name="q"]', "Dallas")
    session.page.wait_for_url(re.compile(r"q=Dallas"))
    session.page.wait_for_function("document.querySelectorAll('tr[data-ticker]').length === 1")
    session.page.click("text=Widest spread")
    session.page.wait_for_url(re.compile(r"q=Dallas.*sort=spread|sort=spread.*q=Dallas"))

    # Several refreshes later the table still honours the search.
    before = session.fragment_requests()
    session.page.wait_for_timeout(2_500)
    assert session.fragment_requests() >= before + 2
    assert rows.count() == 1 and rows.first.get_attribute("data-ticker") == DALLAS
    assert session.page.locator('.sort-links strong[aria-current="true"]').inner_text() == "Widest spread"

    # The URL is shareable: opening it elsewhere shows the same table.
    shared = session.page.url
    session.goto(shared.removeprefix(session.base_url))
    assert rows.count() == 1


def test_it_stops_polling_while_the_tab_is_hidden(session, exchange, kalshi_client, settings):
    settings.KALSHI_POLL_INTERVAL = 1.0
    ingest.run_poll_cycle(client=kalshi_client(exchange))
    session.goto("/")
    session.page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    session.page.wait_for_timeout(500)  # let a request already in flight finish
    hidden_from = session.fragment_requests()
    session.page.wait_for_timeout(3_000)
    assert session.fragment_requests() == hidden_from

    session.page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    session.page.wait_for_timeout(800)
    assert session.fragment_requests() > hidden_from


def chart_state(session: Session) -> dict[str, Any]:
    state: dict[str, Any] = session.page.evaluate(
        """() => {
            const gd = document.getElementById('price-chart');
            return {
                drawn: Number(gd.dataset.drawn || 0),
                traces: gd.data.map(t => t.name),
                points: gd.data.find(t => t.name === 'Yes bid').x.length,
                bars: gd.data.find(t => t.name === 'Volume traded').x.length,
                xrange: gd.layout.xaxis.range || null,
                svg: gd.querySelectorAll('.main-svg').length,
            };
        }"""
    )
    return state


def test_it_draws_the_chart_and_a_range_button_changes_it(session, exchange, kalshi_client):
    ingest.run_poll_cycle(client=kalshi_client(exchange))
    history(Market.objects.get(ticker=DALLAS))
    session.goto(f"/markets/{DALLAS}/")
    session.page.wait_for_function("Number(document.getElementById('price-chart').dataset.drawn) >= 1")

    week = chart_state(session)
    assert week["svg"] > 0
    assert week["traces"][:5] == [
        "Lowest bid in bucket",
        "Bid–ask range in bucket",
        "Yes bid",
        "Yes ask",
        "Last price",
    ]
    assert "Last price (backfilled)" in week["traces"]
    assert week["bars"] > 1000  # a week of 5-minute snapshots
    session.page.evaluate("window.__notReloaded = true")

    session.page.click('.range-buttons >> text="1 d"')
    session.page.wait_for_url(re.compile(r"\?range=1d$"))
    session.page.wait_for_function(
        f"Number(document.getElementById('price-chart').dataset.drawn) > {week['drawn']}"
    )

    day = chart_state(session)
    assert 250 < day["bars"] < 320  # one day of 5-minute snapshots
    assert day["xrange"][0] > week["xrange"][0]
    assert "Last price (backfilled)" not in day["traces"]  # the last day was polled
    assert session.page.evaluate("window.__notReloaded") is True
    assert session.page.locator('.range-buttons [aria-current="true"]').inner_text() == "1 d"


def test_it_takes_screenshots_of_every_page(browser, live_server, exchange, kalshi_client):
    ingest.run_poll_cycle(client=kalshi_client(exchange))
    history(Market.objects.get(ticker=DALLAS))
    ladder_event()
    now = timezone.now()
    for minutes in (90, 60, 2):  # a gap in polling, for the status page
        PollRunFactory.create(started_at=now - timedelta(minutes=minutes))

    pages = {
        "index": "/",
        "market": f"/markets/{DALLAS}/",
        "event": "/events/KXHIGHNY-26OCT07/",
        "status": "/status/",
    }
    for device, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        session = Session(context.new_page(), live_server.url)
        for name, path in pages.items():
            session.goto(path)
            if name in ("market", "event"):
                chart = "price-chart" if name == "market" else "event-chart"
                session.page.wait_for_function(
                    f"Number(document.getElementById('{chart}').dataset.drawn) >= 1"
                )
            shoot(session, f"{name}-{device}")
        context.close()
        session.check()
    assert sorted(p.name for p in ARTIFACTS.glob("*-*.png")) >= sorted(
        f"{n}-{d}.png" for n in pages for d in ("desktop", "phone")
    )
