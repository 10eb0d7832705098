"""Backtest pages through Django's test client on runs computed from recorded Kalshi data."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from backtests import runs
from backtests.models import BacktestRun, RunStatus

pytestmark = pytest.mark.django_db

LAD = "KXMLBGAME-26AUG072140LADAZ-LAD"


@pytest.fixture
def finished_run(recorded):
    run = runs.create_run(strategy="hold_to_settlement", series_tickers=["KXMLBGAME"], oos_fraction=0.3)
    return runs.execute_run(run)


def test_it_lists_runs_with_their_headline_metrics(client, finished_run):
    response = client.get(reverse("backtests:index"))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="/backtests/{finished_run.pk}/"' in body
    assert finished_run.metrics["net_pnl"] in body
    assert (
        client.get(reverse("backtests:index"), {"status": "failed"}).context["page"].object_list.count() == 0
    )


def test_it_shows_charts_metrics_and_trades_of_a_finished_run(client, finished_run):
    response = client.get(finished_run.get_absolute_url())
    assert response.status_code == 200
    body = response.content.decode()
    assert "hx-trigger" not in body  # finished: nothing polls
    for figure in ("equity-figure", "drawdown-figure", "price-figure"):
        assert f'id="{figure}"' in body
    price = response.context["price_figure"]
    assert price["data"][2]["name"] == "Entry" and price["data"][2]["x"]
    assert "In sample" in body and "Out of sample" in body
    assert "annualised over 365 days" in body
    assert LAD in body
    other = client.get(finished_run.get_absolute_url(), {"market": "KXMLBGAME-26AUG072145TBSEA-TB"})
    assert other.context["price_ticker"] == "KXMLBGAME-26AUG072145TBSEA-TB"


def test_it_polls_while_a_run_is_queued_and_returns_the_fragment_to_htmx(client, recorded):
    run = runs.create_run(strategy="momentum", tickers=[LAD])
    page = client.get(run.get_absolute_url())
    assert 'hx-trigger="every 1s"' in page.content.decode()
    fragment = client.get(run.get_absolute_url(), headers={"HX-Request": "true"})
    assert fragment.templates[0].name == "backtests/_run.html"
    assert "<html" not in fragment.content.decode()
    runs.execute_run(run)
    done = client.get(run.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done
    assert 'data-status="succeeded"' in done


def test_it_shows_a_failed_run_with_its_reason(client, recorded):
    run = runs.execute_run(runs.create_run(strategy="momentum", series_tickers=["NOPE"]))
    assert run.status == RunStatus.FAILED
    body = client.get(run.get_absolute_url()).content.decode()
    assert "The run failed." in body and "No markets match series NOPE" in body


def test_it_shows_a_sweep_with_its_heatmap(client, recorded):
    run = runs.execute_run(
        runs.create_run(
            strategy="mean_reversion",
            series_tickers=["KXMLBGAME", "KXWNBAGAME"],
            grid={"window": [2, 3], "entry_z": [0.5, 1.0]},
            params={"exit_z": 0.1},
            oos_fraction=0.3,
        )
    )
    response = client.get(run.get_absolute_url())
    heatmap = response.context["heatmap_figure"]
    assert [d["name"] for d in heatmap["data"]] == ["In sample", "Out of sample"]
    assert len(heatmap["data"][0]["z"]) == 2
    assert 'id="sweep"' in response.content.decode()


def test_it_404s_for_an_unknown_run(client):
    assert client.get(reverse("backtests:detail", args=[999999])).status_code == 404


def test_it_requires_a_staff_login_to_launch_a_run(client):
    response = client.get(reverse("backtests:new"))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("visitor"))
    assert client.get(reverse("backtests:new")).status_code == 302


def test_it_launches_a_run_from_the_form(client, recorded, django_capture_on_commit_callbacks):
    user = User.objects.create_user("trader", password="pw", is_staff=True)
    client.force_login(user)
    assert "mean_reversion" in client.get(reverse("backtests:new")).content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("backtests:new"),
            {
                "strategy": "momentum",
                "params": "lookback=3; exit_lookback=2",
                "tickers": LAD,
                "contracts": "5",
                "capital": "500",
                "oos_fraction": "0",
                "rank_metric": "sharpe",
            },
        )
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert (run.params["lookback"], run.created_by, run.status) == (3, user, RunStatus.QUEUED)
    # delay_on_commit registered exactly one on-commit callback (sending the task).
    assert len(callbacks) == 1


def test_it_shows_form_errors_without_creating_a_run(client, recorded):
    client.force_login(User.objects.create_user("trader", password="pw", is_staff=True))
    response = client.post(
        reverse("backtests:new"),
        {
            "strategy": "momentum",
            "params": "windw=3",
            "contracts": "5",
            "capital": "500",
            "oos_fraction": "0",
            "rank_metric": "sharpe",
        },
    )
    assert response.status_code == 200
    assert "unknown parameter(s) for momentum: windw" in response.content.decode()
    response = client.post(
        reverse("backtests:new"),
        {
            "strategy": "momentum",
            "params": "no equals sign",
            "contracts": "5",
            "capital": "500",
            "oos_fraction": "0",
            "rank_metric": "sharpe",
        },
    )
    assert "name=value pairs" in response.content.decode()
    assert not BacktestRun.objects.exists()


def test_it_embeds_figures_as_json(client, finished_run):
    body = client.get(finished_run.get_absolute_url()).content.decode()
    start = body.index(">", body.index('<script id="equity-figure"')) + 1
    figure = json.loads(body[start : body.index("</script>", start)])
    assert figure["data"][0]["y"][0] == 1000.0


def test_it_shows_runs_and_trades_in_the_admin(client, finished_run):
    client.force_login(User.objects.create_superuser("admin", password="pw"))
    assert client.get("/admin/backtests/backtestrun/").status_code == 200
    page = client.get(f"/admin/backtests/backtestrun/{finished_run.pk}/change/")
    assert page.status_code == 200
    assert f"?run__id__exact={finished_run.pk}" in page.content.decode()
    trades = client.get(f"/admin/backtests/backtesttrade/?run__id__exact={finished_run.pk}")
    assert trades.status_code == 200
    assert LAD in trades.content.decode()
