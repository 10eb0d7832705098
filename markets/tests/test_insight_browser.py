"""The insights pages in real Chromium: the charts draw, and the filter form swaps them in by htmx."""

from __future__ import annotations

import pytest

from markets.tests import insight_data


@pytest.fixture
def page(browser, live_server):
    """A page whose requests may only go to the live server; anything else is recorded and refused."""
    page = browser.new_page()
    page.outside = []
    page.errors = []

    def guard(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            page.outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


def _plotted(page, selector: str):
    """What Plotly drew: trace types, the observed points and the error bars, read from the live chart."""
    return page.evaluate(
        """selector => {
            const el = document.querySelector(selector);
            return {
                types: el.data.map(t => t.type),
                x: el.data[2].x,
                y: el.data[2].y,
                errorPlus: el.data[2].error_y.array,
                diagonal: [el.data[1].x, el.data[1].y],
                points: el.querySelectorAll('.scatterlayer .point').length,
                errorBars: el.querySelectorAll('.errorbar').length,
                bars: el.querySelectorAll('.barlayer .point').length,
            };
        }""",
        selector,
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_draws_the_reliability_diagram_and_redraws_it_after_a_filter_change(live_server, page):
    insight_data.calibration_set()

    page.goto(f"{live_server.url}/insights/calibration/?horizon=1h&series=KXCAL")
    page.wait_for_function(
        "Number(document.getElementById('calibration-chart')?.dataset.drawn) >= 1", timeout=20_000
    )

    drawn = _plotted(page, "#calibration-chart")
    assert drawn["types"] == ["bar", "scatter", "scatter"]
    assert drawn["x"] == [0.2, 0.7] and drawn["y"] == [0.25, 0.7]
    assert drawn["diagonal"] == [[0, 1], [0, 1]]
    assert drawn["points"] >= 2 and drawn["errorBars"] == 2 and drawn["bars"] >= 2
    assert page.locator("#calibration-brier").inner_text() == "0.204286"

    # The filter form swaps the results in place (no navigation) and the new chart is drawn.
    page.evaluate("window.sameDocument = true")
    page.fill("input[name=series]", "")
    page.fill("input[name=category]", "Sports")
    page.click("#calibration-form button[type=submit]")
    page.wait_for_function("document.querySelector('#calibration-count').textContent === '1'", timeout=20_000)
    page.wait_for_function(
        "Number(document.getElementById('calibration-chart')?.dataset.drawn) >= 1", timeout=20_000
    )
    assert _plotted(page, "#calibration-chart")["x"] == [0.7]
    assert "category=Sports" in page.url  # hx-push-url: the filtered view can be bookmarked
    assert page.evaluate("window.sameDocument") is True  # swapped in, not reloaded

    # A bad value: htmx swaps in the 400 that says what to fix.
    page.fill("input[name=bins]", "99")
    page.evaluate("document.querySelector('input[name=bins]').removeAttribute('max')")
    page.click("#calibration-form button[type=submit]")
    alert = page.wait_for_selector("#calibration-results [role=alert]", timeout=20_000)
    assert "less than or equal to 50" in alert.inner_text()

    assert page.errors == []
    assert page.outside == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_draws_the_movers_chart(live_server, page):
    from datetime import timedelta

    D = insight_data.D
    insight_data.market(
        "KX24-UP-1",
        status="active",
        close_time=insight_data.CLOSE + timedelta(days=3650),
        yes_bid=D("0.50"),
        yes_ask=D("0.52"),
        previous_yes_bid=D("0.30"),
        previous_yes_ask=D("0.32"),
        volume_24h=D("10"),
    )

    page.goto(f"{live_server.url}/insights/movers/?window=24h")
    page.wait_for_function(
        "Number(document.getElementById('movers-chart')?.dataset.drawn) >= 1", timeout=20_000
    )

    bars = page.evaluate("document.querySelector('#movers-chart').data[0]")
    assert bars["y"] == ["KX24-UP-1"] and bars["x"] == [20]
    assert page.errors == [] and page.outside == []
