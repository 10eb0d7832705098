"""The launch form in real Chromium: the run's progress updates live (HTMX) until the results appear."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from backtests.models import BacktestRun, RunStatus

LAD = "KXMLBGAME-26AUG072140LADAZ-LAD"


@pytest.mark.browser
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_it_shows_a_launched_runs_progress_live_until_its_charts_appear(
    recorded, live_server, browser, start_celery_worker
):
    User.objects.create_user("trader", password="correct horse", is_staff=True)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/backtests/new/")
    # Not logged in: the admin login page, then back to the form.
    page.fill("#id_username", "trader")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url("**/backtests/new/")
    page.select_option("#id_strategy", "hold_to_settlement")
    page.fill("#id_tickers", LAD)
    page.click("#backtest-form button[type=submit]")
    page.wait_for_url("**/backtests/*/")
    # No worker yet: the run is queued and the page says so while it polls.
    assert page.locator("section#run").get_attribute("data-status") == "queued"
    assert page.locator("section#run progress").count() == 1
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    start_celery_worker()
    page.wait_for_selector('section#run[data-status="succeeded"]', timeout=90_000)
    page.wait_for_function(
        "Number(document.getElementById('equity-chart')?.dataset.drawn) >= 1", timeout=10_000
    )
    page.wait_for_function(
        "Number(document.getElementById('price-chart')?.dataset.drawn) >= 1", timeout=10_000
    )
    assert navigations == []  # the results arrived by HTMX swaps, not a reload
    assert page.locator("#trades tbody tr").count() == 1
    assert "-6.39" in page.locator("#metrics").inner_text()
    assert page.locator("section#run[hx-trigger]").count() == 0  # polling stopped
    assert BacktestRun.objects.get().status == RunStatus.SUCCEEDED
    assert errors == []
