"""The calibration and movers pages: full pages, htmx fragments, 400s for bad filters, escaping."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine

from markets.tests import insight_data
from markets.tests.insight_data import CLOSE, market

pytestmark = pytest.mark.django_db

CALIBRATION = "/insights/calibration/"
MOVERS = "/insights/movers/"
HTMX = {"HX-Request": "true"}


def _figure(html: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script {element_id}"
    return json.loads(match.group(1))


@pytest.fixture
def calibration_set():
    insight_data.calibration_set()


def test_it_shows_the_reliability_diagram_with_counts_and_brier(client, calibration_set):
    response = client.get(CALIBRATION, {"horizon": "1h", "series": "KXCAL"})

    assert response.status_code == 200
    html = response.content.decode()
    assert '<h3 id="calibration-brier">0.204286</h3>' in html
    assert '<h3 id="calibration-count">14</h3>' in html
    assert '<td>70.0%–80.0%</td><td class="num">10</td><td class="num">7</td>' in html
    assert "39.7%–89.2%" in html  # the Wilson interval of 7/10
    assert "1 closed early" in html and "1 with an empty book" in html
    figure = _figure(html, "calibration-figure")
    assert figure["data"][2]["y"] == [0.25, 0.7]
    assert 'data-figure="calibration-figure"' in html
    # Assets come from the project, not a CDN.
    assert "/static/vendor/plotly-4.1.1.min.js" in html and "/static/js/charts.js" in html
    assert "https://" not in re.sub(r'href="https://kalshi\.com[^"]*"', "", html)


def test_it_uses_sensible_defaults_without_parameters(client, calibration_set):
    response = client.get(CALIBRATION)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<option value="1d" selected>' in html
    assert 'name="bins" min="2" max="50" value="10"' in html
    # A day before close no quote had been stored yet.
    assert '<h3 id="calibration-count">0</h3>' in html
    assert "has a usable quote 1d before its close" in html
    # The filter inputs suggest the series with settled markets and the categories.
    assert '<option value="KXCAL">' in html and '<option value="Sports">' in html


def test_it_returns_only_the_results_fragment_to_htmx(client, calibration_set):
    response = client.get(CALIBRATION, {"horizon": "1h", "category": "Sports"}, headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="calibration-results">')
    assert "<form" not in html and "<html" not in html
    assert '<h3 id="calibration-count">1</h3>' in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"horizon": "2d"}, "Select a valid choice. 2d is not one of the available choices."),
        ({"bins": "1"}, "Ensure this value is greater than or equal to 2."),
        ({"bins": "500"}, "Ensure this value is less than or equal to 50."),
        ({"bins": "ten"}, "Enter a whole number."),
        ({"closed_after": "2026-13-01"}, "Enter a valid date."),
        ({"closed_after": "2026-06-02", "closed_before": "2026-06-01"}, "Must not be earlier than"),
        ({"max_quote_age": "forever"}, "Select a valid choice."),
        ({"series": "KX\x00"}, "Null characters are not allowed."),
        ({"series": "X" * 101}, "Ensure this value has at most 100 characters"),
    ],
)
def test_it_answers_bad_filters_with_400_and_says_what_to_fix(client, params, message):
    response = client.get(CALIBRATION, params)

    assert response.status_code == 400
    html = response.content.decode()
    assert "Check the filters." in html
    assert message in html.replace("&#x27;", "'")
    assert "<form" in html  # the whole page, with the form to correct it

    fragment = client.get(CALIBRATION, params, headers=HTMX)
    assert fragment.status_code == 400
    assert fragment.content.decode().lstrip().startswith('<section id="calibration-results">')
    assert message in fragment.content.decode().replace("&#x27;", "'")


def test_it_lets_htmx_swap_a_400(client):
    html = client.get(CALIBRATION).content.decode()

    config = re.search(r"<meta name=\"htmx-config\" content='(.*?)'>", html)
    assert config
    handling = json.loads(config.group(1))["responseHandling"]
    assert {"code": "400", "swap": True} in handling


def test_it_escapes_what_the_user_typed(client, calibration_set):
    evil = '"><script>alert(1)</script>'
    response = client.get(CALIBRATION, {"series": evil, "category": "<b>x</b>"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html


def test_it_escapes_market_titles_on_the_movers_page(client):
    now = CLOSE - timedelta(days=1)
    m = market(
        "KXMOV-XSS-1",
        status="active",
        quotes=[
            (now - timedelta(hours=2), "0.49", "0.51", "1"),
            (now - timedelta(minutes=5), "0.59", "0.61", "9"),
        ],
    )
    m.title = "<img src=x onerror=alert(1)>"
    m.save()

    with time_machine.travel(now, tick=False):
        response = client.get(MOVERS)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_it_refuses_other_methods(client):
    assert client.post(CALIBRATION).status_code == 405
    assert client.post(MOVERS).status_code == 405


def test_it_shows_one_hour_movers(client):
    now = CLOSE - timedelta(days=1)
    then, recent = now - timedelta(hours=2), now - timedelta(minutes=10)
    market(
        "KXMOV-UP-1", status="active", quotes=[(then, "0.49", "0.51", "100"), (recent, "0.59", "0.61", "150")]
    )
    market(
        "KXMOV-DOWN-1",
        status="active",
        quotes=[(then, "0.39", "0.41", "10"), (recent, "0.29", "0.31", "210")],
    )

    with time_machine.travel(now, tick=False):
        response = client.get(MOVERS, {"window": "1h"})

    assert response.status_code == 200
    html = response.content.decode()
    gainers = html[html.index('id="movers-gainers"') : html.index('id="movers-losers"')]
    assert "KXMOV-UP-1" in gainers and "+10.0¢" in gainers and "50.0%" in gainers and "60.0%" in gainers
    assert '<a href="/markets/KXMOV-UP-1/">KXMOV-UP-1</a>' in gainers
    losers = html[html.index('id="movers-losers"') : html.index('id="movers-volume"')]
    assert "KXMOV-DOWN-1" in losers and "-10.0¢" in losers
    volume = html[html.index('id="movers-volume"') :]
    assert volume.index("KXMOV-DOWN-1") < volume.index("KXMOV-UP-1")
    assert "200.00" in volume
    assert _figure(html, "movers-figure")["data"][0]["x"] == [-10.0, 10.0]
    assert "2 markets compared" in html


def test_it_shows_24_hour_movers_from_kalshis_fields_and_empty_lists(client):
    D = insight_data.D
    market(
        "KX24-UP-1",
        status="active",
        close_time=CLOSE + timedelta(days=30),
        yes_bid=D("0.50"),
        yes_ask=D("0.52"),
        previous_yes_bid=D("0.30"),
        previous_yes_ask=D("0.32"),
        volume_24h=D("10"),
    )

    response = client.get(MOVERS, {"window": "24h"}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="movers-results">')
    assert "KX24-UP-1" in html and "+20.0¢" in html
    assert "None: no open market's mid moved this way" in html
    assert "previous_yes_bid" in html


@pytest.mark.parametrize(
    "params",
    [{"window": "2h"}, {"limit": "0"}, {"limit": "101"}, {"max_spread": "0.5"}, {"series": "\x00"}],
)
def test_it_answers_bad_mover_filters_with_400(client, params):
    response = client.get(MOVERS, params)

    assert response.status_code == 400
    assert "Check the filters." in response.content.decode()


def test_the_navigation_links_to_the_insights_pages(client):
    html = client.get(CALIBRATION).content.decode()

    assert 'href="/insights/calibration/"' in html and 'href="/insights/movers/"' in html
