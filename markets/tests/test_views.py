from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from markets import status
from markets.admin import EstimatedCountPaginator
from markets.models import Market, MarketSnapshot, MarketStatus, PollOutcome, PollRun, SnapshotSource
from markets.tests.factories import (
    EventFactory,
    MarketFactory,
    MarketSnapshotFactory,
    PollRunFactory,
    SeriesFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Categories and the worker check are cached in Redis; each test starts from nothing.
    cache.clear()
    yield
    cache.clear()


def search(pattern, text):
    match = re.search(pattern, text, re.S)
    assert match is not None, pattern
    return match.group(1) if match.groups() else match.group(0)


def tickers(response):
    """Market tickers of the table rows, in page order."""
    return re.findall(r'data-ticker="([^"]+)"', response.content.decode())


# --------------------------------------------------------------------------------------------------
# Index: page vs fragment
# --------------------------------------------------------------------------------------------------


def test_it_renders_the_full_index_page(client):
    market = MarketFactory.create(title="Will it rain in Denver?")
    PollRunFactory.create()

    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="filters"' in html
    assert 'id="market-table"' in html
    assert tickers(response) == [market.ticker]
    assert "Will it rain in Denver?" in html
    assert response["Vary"].count("HX-Request") == 1


def test_it_returns_only_the_table_fragment_for_htmx(client, settings):
    settings.KALSHI_POLL_INTERVAL = 15.0
    market = MarketFactory.create()

    response = client.get("/?q=&sort=movers", headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="filters"' not in html
    assert html.lstrip().startswith("<section") or '<section id="market-table"' in html
    # The fragment polls itself with the same query string, only while the tab is visible.
    assert 'hx-get="/?q=&amp;sort=movers"' in html
    assert "every 15s [document.visibilityState === 'visible']" in html
    assert tickers(response) == [market.ticker]


def test_it_returns_the_full_page_for_an_htmx_history_restore(client):
    response = client.get("/", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in response.content.decode()


def test_it_keeps_links_as_plain_hrefs_for_no_javascript(client):
    for i in range(60):
        MarketFactory.create(volume_24h=Decimal(i))

    html = client.get("/?sort=volume&q=KX").content.decode()

    # Every hx-get link repeats its URL in href, so the page works without JavaScript.
    for href, hx_get in re.findall(r'<a href="([^"]+)" hx-get="([^"]+)"', html):
        assert href == hx_get
    assert 'href="?sort=volume&amp;q=KX&amp;page=2"' in html


# --------------------------------------------------------------------------------------------------
# Index: filters, sorting, paging
# --------------------------------------------------------------------------------------------------


def test_it_searches_ticker_title_and_subtitle(client):
    a = MarketFactory.create(ticker="KXRAIN-26OCT07-DEN", title="Rain in Denver?")
    b = MarketFactory.create(
        ticker="KXSNOW-26OCT07-BOS", title="Snow in Boston?", yes_sub_title="Above 2 inches"
    )
    MarketFactory.create(ticker="KXSUN-26OCT07-MIA", title="Sun in Miami?")

    assert tickers(client.get("/?q=rain")) == [a.ticker]
    assert tickers(client.get("/?q=kxsnow")) == [b.ticker]
    assert tickers(client.get("/?q=2 inches")) == [b.ticker]
    assert tickers(client.get("/?q=nothing-like-this")) == []
    assert "No market matches these filters." in client.get("/?q=nothing-like-this").content.decode()


def test_it_filters_by_category_and_series(client):
    sports = MarketFactory.create(
        event=EventFactory.create(series=SeriesFactory.create(ticker="KXNFLGAME", category="Sports"))
    )
    weather = MarketFactory.create(
        event=EventFactory.create(
            series=SeriesFactory.create(ticker="KXHIGHNY", category="Climate and Weather")
        )
    )
    # An event not yet synced: no series link, but its ticker starts with the series ticker.
    unsynced = MarketFactory.create(
        event=EventFactory.create(ticker="KXHIGHNY-26OCT09", series=None, category="")
    )

    assert tickers(client.get("/?category=Sports")) == [sports.ticker]
    assert sorted(tickers(client.get("/?series=kxhighny"))) == sorted([weather.ticker, unsynced.ticker])
    # The category dropdown offers what is stored.
    html = client.get("/").content.decode()
    assert '<option value="Climate and Weather">' in html and '<option value="Sports">' in html


def test_it_filters_by_status(client):
    live = MarketFactory.create()
    settled = MarketFactory.create(status=MarketStatus.FINALIZED, result="yes")
    closed = MarketFactory.create(status=MarketStatus.DETERMINED)
    upcoming = MarketFactory.create(status=MarketStatus.INITIALIZED)

    assert tickers(client.get("/")) == [live.ticker]
    assert tickers(client.get("/?status=settled")) == [settled.ticker]
    assert tickers(client.get("/?status=closed")) == [closed.ticker]
    assert tickers(client.get("/?status=upcoming")) == [upcoming.ticker]
    assert len(tickers(client.get("/?status=all"))) == 4


def test_it_sorts_by_each_order(client):
    now = timezone.now()
    busy = MarketFactory.create(ticker="A-BUSY", volume_24h=Decimal("90000"), previous_price=Decimal("0.42"))
    mover = MarketFactory.create(ticker="B-MOVER", volume_24h=Decimal("10"), previous_price=Decimal("0.12"))
    soon = MarketFactory.create(
        ticker="C-SOON", volume_24h=Decimal("50"), close_time=now + timedelta(minutes=5), previous_price=None
    )
    wide = MarketFactory.create(
        ticker="D-WIDE", volume_24h=Decimal("20"), yes_bid=Decimal("0.10"), yes_ask=Decimal("0.60")
    )
    fresh = MarketFactory.create(ticker="E-NEW", volume_24h=None, open_time=now - timedelta(minutes=1))
    # An empty book (no bid, no ask) must not count as the widest spread.
    empty = MarketFactory.create(
        ticker="F-EMPTY", volume_24h=Decimal("1"), yes_bid=Decimal("0"), yes_ask=Decimal("1")
    )

    assert tickers(client.get("/?sort=volume")) == [
        busy.ticker, soon.ticker, wide.ticker, mover.ticker, empty.ticker, fresh.ticker
    ]  # fmt: skip
    assert tickers(client.get("/?sort=movers"))[0] == mover.ticker
    assert tickers(client.get("/?sort=movers"))[-1] == soon.ticker  # no previous price: last
    assert tickers(client.get("/?sort=closing"))[0] == soon.ticker
    assert tickers(client.get("/?sort=spread"))[0] == wide.ticker
    assert tickers(client.get("/?sort=spread"))[-1] == empty.ticker
    assert tickers(client.get("/?sort=newest"))[0] == fresh.ticker


def test_it_pages_and_clamps_past_the_end(client):
    for i in range(120):
        MarketFactory.create(ticker=f"KXPAGE-{i:03d}", volume_24h=Decimal(1000 - i))

    first, second, third = (tickers(client.get(f"/?page={n}")) for n in (1, 2, 3))

    assert (len(first), len(second), len(third)) == (50, 50, 20)
    assert first[0] == "KXPAGE-000" and third[-1] == "KXPAGE-119"
    assert not set(first) & set(second)
    assert tickers(client.get("/?page=999")) == third
    assert "Page 3 of 3 · 120 markets" in client.get("/?page=3").content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=fastest", "sort=&#x27;fastest&#x27;: Select a valid choice."),
        ("status=bogus", "status=&#x27;bogus&#x27;: Select a valid choice."),
        ("page=0", "page=&#x27;0&#x27;: Ensure this value is greater than or equal to 1."),
        ("page=two", "page=&#x27;two&#x27;: Enter a whole number."),
        ("series=KX%3BDROP", "series=&#x27;KX;DROP&#x27;: Use letters, digits"),
        ("q=%00", "q=&#x27;\\x00&#x27;: Null characters are not allowed."),
        ("q=" + "x" * 201, "Ensure this value has at most 200 characters"),
    ],
)
def test_it_answers_bad_query_parameters_with_400_and_a_message(client, query, message):
    response = client.get(f"/?{query}")

    assert response.status_code == 400
    assert message in response.content.decode()


def test_it_escapes_market_titles(client):
    MarketFactory.create(title='<script>alert("x")</script>', yes_sub_title="<b>bold</b>")

    html = client.get("/").content.decode()

    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_it_shows_an_empty_book_as_dashes_not_a_100_cent_spread(client):
    market = MarketFactory.create(yes_bid=Decimal("0"), yes_ask=Decimal("1"), last_price=Decimal("0.37"))

    html = client.get("/").content.decode()
    row = search(rf'<tr id="row-{market.ticker}".*?</tr>', html)

    assert '<td class="num bid">—</td>' in row
    assert '<td class="num ask">—</td>' in row
    assert '<td class="num spread">—</td>' in row
    assert "100¢" not in row
    assert "37¢" in row


def test_it_shows_prices_in_cents_with_sub_cent_precision(client):
    market = MarketFactory.create(
        yes_bid=Decimal("0.4150"),
        yes_ask=Decimal("0.4200"),
        last_price=Decimal("0.0025"),
        previous_price=None,
    )
    row = search(rf'<tr id="row-{market.ticker}".*?</tr>', client.get("/").content.decode())
    assert "41.5¢" in row and "42¢" in row and "0.25¢" in row and "0.5¢" in row


def test_it_shares_the_rendered_table_until_a_poll_stores_a_page(client, settings, django_assert_num_queries):
    settings.KALSHI_PAGE_CACHE_SECONDS = 60
    market = MarketFactory.create(yes_bid=Decimal("0.41"))
    run = PollRunFactory.create()
    assert "41¢" in client.get("/", headers=HTMX).content.decode()

    Market.objects.filter(pk=market.pk).update(yes_bid=Decimal("0.37"))
    # A hit costs one query (the newest poll cycle) and shows what was rendered.
    with django_assert_num_queries(1):
        cached = client.get("/", headers=HTMX).content.decode()
    assert "41¢" in cached and "37¢" not in cached

    # The poller stores another page: the next request renders afresh.
    PollRun.objects.filter(pk=run.pk).update(pages=2)
    assert "37¢" in client.get("/", headers=HTMX).content.decode()
    assert "37¢" in client.get("/").content.decode()  # the full page embeds the same fragment


def test_it_renders_every_time_with_the_page_cache_off(client, settings):
    settings.KALSHI_PAGE_CACHE_SECONDS = 0
    market = MarketFactory.create(yes_bid=Decimal("0.41"))
    client.get("/")
    Market.objects.filter(pk=market.pk).update(yes_bid=Decimal("0.37"))
    assert "37¢" in client.get("/").content.decode()


# --------------------------------------------------------------------------------------------------
# Freshness
# --------------------------------------------------------------------------------------------------


def test_it_says_when_no_poll_has_completed(client):
    assert "No poll cycle has completed yet." in client.get("/").content.decode()


def test_it_shows_fresh_data_without_a_warning(client, settings):
    settings.KALSHI_POLL_INTERVAL = 15.0
    PollRunFactory.create(started_at=timezone.now() - timedelta(seconds=12))

    html = client.get("/", headers=HTMX).content.decode()

    assert "Data as of" in html and "Stale" not in html


def test_it_warns_when_the_data_is_stale(client, settings):
    settings.KALSHI_POLL_INTERVAL = 15.0
    PollRunFactory.create(started_at=timezone.now() - timedelta(minutes=5))
    # A failed cycle since then does not make the data fresh.
    PollRunFactory.create(started_at=timezone.now() - timedelta(seconds=5), outcome=PollOutcome.FAILED)

    html = client.get("/").content.decode()

    assert 'class="freshness stale"' in html
    assert "no successful poll for more than 45s" in html


def test_it_says_why_the_last_cycle_failed(client):
    # The first thing a user sees when Kalshi is unreachable: the reason, on the page they opened.
    PollRunFactory.create(
        started_at=timezone.now() - timedelta(seconds=20),
        outcome=PollOutcome.FAILED,
        errors=1,
        error_messages=["GET https://bad.example/markets: could not connect. Check KALSHI_API_BASE <x>"],
    )

    html = client.get("/", headers=HTMX).content.decode()

    assert "No poll cycle has completed yet." in html
    assert "The last poll cycle failed" in html
    assert "could not connect. Check KALSHI_API_BASE &lt;x&gt;" in html


def test_a_failure_before_the_last_success_is_not_shown(client):
    PollRunFactory.create(
        started_at=timezone.now() - timedelta(seconds=30), outcome=PollOutcome.FAILED, error_messages=["old"]
    )
    PollRunFactory.create(started_at=timezone.now() - timedelta(seconds=10))

    html = client.get("/", headers=HTMX).content.decode()

    assert "failed" not in html.split('class="freshness', 1)[1].split("</p>", 1)[0]


# --------------------------------------------------------------------------------------------------
# Market page
# --------------------------------------------------------------------------------------------------


def test_it_renders_the_market_page_and_its_fragment(client):
    market = MarketFactory.create(
        title="Dallas wins",
        rules_primary="If Dallas wins,\nYes.",
        rules_secondary="<img src=x onerror=alert(1)>",
    )
    MarketSnapshotFactory.create(market=market, yes_bid=Decimal("0.4000"))

    page = client.get(f"/markets/{market.ticker}/")
    fragment = client.get(f"/markets/{market.ticker}/?range=1d", headers=HTMX)

    html = page.content.decode()
    assert page.status_code == 200
    assert "<h1>Dallas wins" in html
    assert "If Dallas wins,<br>Yes." in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert 'id="price-chart"' in html and "plotly-4.1.1.min.js" in html
    assert f'data-src="/markets/{market.ticker}/chart/?range=1w"' in html  # default range
    frag = fragment.content.decode()
    assert "<html" not in frag and 'id="market-live"' in frag
    assert f'data-src="/markets/{market.ticker}/chart/?range=1d"' in frag
    assert 'aria-current="true">1 d</a>' in frag
    assert "40¢" in frag  # the recent snapshot


def test_it_answers_404_for_an_unknown_ticker(client):
    for url in ("/markets/KXNOPE-1/", "/markets/KXNOPE-1/chart/", "/events/KXNOPE/"):
        response = client.get(url)
        assert response.status_code == 404, url
    assert "KXNOPE-1" in client.get("/markets/KXNOPE-1/").content.decode()
    assert orjson.loads(client.get("/markets/KXNOPE-1/chart/").content) == {
        "error": "No market with ticker 'KXNOPE-1' is stored."
    }


def test_it_answers_400_for_a_bad_chart_range(client):
    market = MarketFactory.create()

    page = client.get(f"/markets/{market.ticker}/?range=2y")
    chart = client.get(f"/markets/{market.ticker}/chart/?range=2y")

    assert page.status_code == chart.status_code == 400
    assert "range=&#x27;2y&#x27;: Select a valid choice." in page.content.decode()
    assert "range='2y': Select a valid choice." in orjson.loads(chart.content)["error"]


def test_it_serves_the_chart_figure_for_each_range(client):
    market = MarketFactory.create()
    now = timezone.now()
    MarketSnapshot.objects.bulk_create(
        MarketSnapshot(
            market=market,
            captured_at=now - timedelta(minutes=5 * i),
            source=SnapshotSource.POLL if i < 1000 else SnapshotSource.BACKFILL,
            yes_bid=Decimal("0.40"),
            yes_ask=Decimal("0.45"),
            last_price=Decimal("0.42"),
            volume=Decimal(100_000 - i),
        )
        for i in range(3000)  # ~10 days at 5 minutes
    )

    def figure(range_name):
        response = client.get(f"/markets/{market.ticker}/chart/?range={range_name}")
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        return orjson.loads(response.content)

    day, everything = figure("1d"), figure("all")

    names = [t["name"] for t in everything["data"]]
    assert names[:5] == [
        "Lowest bid in bucket",
        "Bid–ask range in bucket",
        "Yes bid",
        "Yes ask",
        "Last price",
    ]
    assert "Last price (backfilled)" in names and names[-1] == "Volume traded"
    assert all(len(t["x"]) <= 2002 for t in everything["data"])  # ≤ 2,000 buckets + carried quotes
    bars = {t["name"]: t for t in day["data"]}["Volume traded"]
    assert 280 <= len(bars["x"]) <= 290  # one day of 5-minute snapshots
    assert day["layout"]["uirevision"] == f"{market.ticker}:1d"
    assert {t["name"]: t for t in day["data"]}["Yes ask"]["y"][-1] == 45.0


# --------------------------------------------------------------------------------------------------
# Event page
# --------------------------------------------------------------------------------------------------


def test_it_shows_the_implied_distribution_of_an_event(client):
    event = EventFactory.create(title="High temperature <NYC>", mutually_exclusive=True)
    quotes = [
        ("0.08", "0.10", None, Decimal(80)),
        ("0.55", "0.57", Decimal(80), Decimal(85)),
        ("0", "0.30", Decimal(85), None),
    ]
    for i, (bid, ask, floor, cap) in enumerate(quotes):
        MarketFactory.create(
            event=event,
            ticker=f"{event.ticker}-B{i}",
            yes_bid=Decimal(bid),
            yes_ask=Decimal(ask),
            last_price=Decimal("0.33"),
            floor_strike=floor,
            cap_strike=cap,
            yes_sub_title="",
        )

    response = client.get(f"/events/{event.ticker}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "High temperature &lt;NYC&gt;" in html
    # Ordered by strike: below 80, 80–85, above 85.
    assert re.findall(r'<tr id="row-([^"]+)"', html) == [f"{event.ticker}-B{i}" for i in range(3)]
    assert "&lt; 80" in html and "80–85" in html and "&gt; 85" in html
    # mids 9% + 56%, and the last trade (33%) where the bid side is empty: 98%.
    assert '<span class="value" id="sum-implied">98.0%</span>' in html
    assert "(last)" in html
    figure = orjson.loads(search(r'id="event-chart-data" type="application/json">(.*?)</script>', html))
    assert figure["data"][0]["y"] == [9.0, 56.0, 33.0]
    fragment = client.get(f"/events/{event.ticker}/", headers=HTMX).content.decode()
    assert "<html" not in fragment and 'id="event-live"' in fragment


def test_it_says_when_outcomes_are_not_exclusive(client):
    event = EventFactory.create(mutually_exclusive=False)
    MarketFactory.create(event=event)
    assert "not</strong> mutually exclusive" in client.get(f"/events/{event.ticker}/").content.decode()


def test_it_rejects_parameters_on_pages_that_take_none(client):
    event = EventFactory.create()
    assert client.get(f"/events/{event.ticker}/?sort=x").status_code == 400
    assert client.get("/status/?verbose=1").status_code == 400


# --------------------------------------------------------------------------------------------------
# Status page
# --------------------------------------------------------------------------------------------------


def test_it_shows_poll_cycles_gaps_and_liveness(client, settings, monkeypatch):
    settings.KALSHI_POLL_INTERVAL = 15.0
    now = timezone.now()
    monkeypatch.setattr(
        status, "_ask_workers", lambda timeout: (["poller@box", "worker@box"], ["poller@box"])
    )
    PollRunFactory.create(started_at=now - timedelta(hours=3))
    PollRunFactory.create(
        started_at=now - timedelta(hours=1), snapshots_written=1234, unchanged_skipped=56789
    )
    PollRunFactory.create(
        started_at=now - timedelta(seconds=20),
        outcome=PollOutcome.PARTIAL,
        errors=1,
        error_messages=["KXBAD-1: yes_bid_dollars <script>"],
    )

    response = client.get("/status/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "1,234" in html and "56,789" in html
    assert "KXBAD-1: yes_bid_dollars &lt;script&gt;" in html
    assert len(re.findall(r'<tr class="outcome-', html)) == 3
    # Two gaps longer than 45 s between successful starts.
    gaps = search(r'<table class="striped gaps">.*?</table>', html)
    assert gaps.count("<tr>") == 3  # header + 2 gaps
    assert "2h 00m" in gaps and "59m" in gaps
    assert re.search(r'id="health-scheduler">\s*<span class="label">Scheduler</span>\s*<strong>alive', html)
    assert "2 workers answered: poller@box, worker@box" in html
    fragment = client.get("/status/", headers=HTMX).content.decode()
    assert "<html" not in fragment and 'id="status-live"' in fragment


def test_it_reports_an_ongoing_gap_and_a_silent_scheduler(client, settings, monkeypatch):
    settings.KALSHI_POLL_INTERVAL = 15.0
    monkeypatch.setattr(status, "_ask_workers", lambda timeout: ([], []))
    PollRunFactory.create(started_at=timezone.now() - timedelta(minutes=10))

    html = client.get("/status/").content.decode()

    assert "<strong>ongoing</strong>" in html
    assert re.search(r"<span class=\"label\">Scheduler</span>\s*<strong>silent", html)
    assert "no Celery worker answered" in html


def test_it_does_not_hang_when_the_broker_does_not_answer(monkeypatch):
    monkeypatch.setattr(status, "_ask_workers", lambda timeout: time.sleep(3))

    started = time.monotonic()
    state = status.worker_state(timeout=0.2, use_cache=False)

    assert time.monotonic() - started < 2.9  # the stuck call takes 3 s
    assert state.error == "The broker did not answer within 1.9 s."
    assert not state.poller_alive
    time.sleep(1.5)  # let the helper thread finish before the next test uses it


def test_it_reports_a_broker_error_as_a_status(monkeypatch):
    def refuse(timeout):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(status, "_ask_workers", refuse)

    state = status.worker_state(use_cache=False)

    assert state.error == "Could not reach the broker: [Errno 111] Connection refused"


def test_it_caches_the_worker_check(monkeypatch):
    calls = []

    def ask(timeout):
        calls.append(timeout)
        return ["a@b"], []

    monkeypatch.setattr(status, "_ask_workers", ask)

    status.worker_state()
    status.worker_state()

    assert calls == [0.5]


def test_it_names_the_celery_queue_consumers_on_a_real_broker():
    # No worker listens on this test broker's queues: the broadcast returns nobody, quickly.
    started = time.monotonic()
    state = status.worker_state(timeout=0.5, use_cache=False)
    assert time.monotonic() - started < 2.5
    assert state.error == "" and state.answered == [] and not state.poller_alive
    assert reverse("markets:status") == "/status/"


# --------------------------------------------------------------------------------------------------
# Admin on a big snapshot table
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def snapshots_over_two_months():
    big = MarketFactory.create(ticker="KXBIG-1")
    other = MarketFactory.create(ticker="KXOTHER-1")
    start = datetime(2026, 8, 30, tzinfo=UTC)
    MarketSnapshot.objects.bulk_create(
        MarketSnapshot(
            market=big if i % 3 else other,
            captured_at=start + timedelta(hours=6 * i),
            source=SnapshotSource.BACKFILL if i < 20 else SnapshotSource.POLL,
            yes_bid=Decimal("0.40"),
            yes_ask=Decimal("0.42"),
        )
        for i in range(150)  # 2026-08-30 .. 2026-10-06
    )
    return big, other


@pytest.mark.postgres
def test_it_lists_snapshots_in_the_admin_without_scanning_the_table(admin_client, snapshots_over_two_months):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/markets/marketsnapshot/?source__exact=poll")

    assert response.status_code == 200
    html = response.content.decode()
    assert "130 market snapshots" in html
    sql = [q["sql"].upper() for q in queries.captured_queries]
    counts = [q for q in sql if "COUNT(" in q]
    assert counts and all("LIMIT" in q for q in counts)  # bounded counts only
    assert not [q for q in sql if "DISTINCT" in q or "DATE_TRUNC" in q or "MIN(" in q]
    # The drill-down offers the months that hold snapshots (of any source: probing a source
    # has no index to use), and no others.
    assert all(f"captured_at__month={m}" in html for m in (8, 9, 10))
    assert "captured_at__month=11" not in html and "captured_at__month=7" not in html


def test_it_limits_the_drill_down_to_the_searched_market(admin_client, snapshots_over_two_months):
    big, other = snapshots_over_two_months
    MarketSnapshot.objects.create(
        market=MarketFactory.create(ticker="KXLATE-1"), captured_at=datetime(2026, 12, 1, tzinfo=UTC)
    )

    everything = admin_client.get("/admin/markets/marketsnapshot/?captured_at__year=2026").content.decode()
    one = admin_client.get(
        "/admin/markets/marketsnapshot/?captured_at__year=2026&q=KXOTHER-1"
    ).content.decode()

    assert "captured_at__month=12" in everything
    assert "captured_at__month=12" not in one and "captured_at__month=9" in one


def test_it_drills_down_to_days_that_have_snapshots(admin_client, snapshots_over_two_months):
    html = admin_client.get(
        "/admin/markets/marketsnapshot/?captured_at__year=2026&captured_at__month=8"
    ).content
    days = sorted(set(re.findall(r"captured_at__day=(\d+)", html.decode())))
    assert days == ["30", "31"]
    day = admin_client.get(
        "/admin/markets/marketsnapshot/?captured_at__year=2026&captured_at__month=8&captured_at__day=31"
    )
    assert "4 market snapshots" in day.content.decode()


def test_it_searches_snapshots_by_exact_ticker(admin_client, snapshots_over_two_months):
    big, other = snapshots_over_two_months

    found = admin_client.get("/admin/markets/marketsnapshot/?q=KXOTHER-1").content.decode()
    missing = admin_client.get("/admin/markets/marketsnapshot/?q=KXNOPE").content.decode()

    assert "50 market snapshots" in found
    assert "0 market snapshots" in missing


def test_it_shows_a_snapshot_read_only(admin_client, snapshots_over_two_months):
    snapshot = MarketSnapshot.objects.order_by("id").first()
    assert snapshot is not None

    response = admin_client.get(f"/admin/markets/marketsnapshot/{snapshot.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "KXBIG-1" in html or "KXOTHER-1" in html
    assert 'name="_save"' not in html


@pytest.mark.postgres
def test_it_estimates_counts_past_the_limit(snapshots_over_two_months, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "COUNT_LIMIT", 10)
    queryset = MarketSnapshot.objects.filter(source="poll").order_by("-id")

    count = EstimatedCountPaginator(queryset, 100).count

    assert count >= 11  # not the exact 130: the planner's estimate, at least past the limit
    assert (
        EstimatedCountPaginator(
            MarketSnapshot.objects.filter(market__ticker="KXOTHER-1").order_by("-id"), 100
        ).count
        >= 11
    )
    assert (
        EstimatedCountPaginator(MarketSnapshot.objects.filter(source="websocket").order_by("-id"), 100).count
        == 0
    )


@pytest.mark.celery_worker
def test_it_sees_a_real_poller_worker_on_the_broker(client, settings):
    name = f"poller-test-{os.getpid()}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "kalshi_insights", "worker", "-Q", "polling", "-c", "1",
         "--pool", "solo", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        env={**os.environ, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        state = status.worker_state(timeout=0.5, use_cache=False)
        while not state.poller_alive and time.monotonic() < deadline:
            time.sleep(0.5)
            state = status.worker_state(timeout=0.5, use_cache=False)
        assert [p for p in state.pollers if p.startswith(name)], state

        html = client.get("/status/").content.decode()
        workers = search(r'<article [^>]*id="health-workers">.*?</article>', html)
        assert re.search(r"<strong>alive", workers), workers
        assert name in html
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
