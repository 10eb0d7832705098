"""/api/v1/backtests/: public reads, authenticated creation, 400s that explain."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from backtests import runs
from backtests.models import BacktestRun, RunStatus

pytestmark = pytest.mark.django_db

LAD = "KXMLBGAME-26AUG072140LADAZ-LAD"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def finished(recorded):
    return runs.execute_run(runs.create_run(strategy="hold_to_settlement", tickers=[LAD]))


def test_it_lists_and_details_runs_publicly(api, finished):
    listed = api.get("/api/v1/backtests/").json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == finished.pk
    assert listed["results"][0]["metrics"]["net_pnl"] == "-6.39"
    assert "equity_curve" not in listed["results"][0]
    detail = api.get(f"/api/v1/backtests/{finished.pk}/").json()
    assert detail["status"] == "succeeded"
    assert detail["equity_curve"][-1][1] == "993.61"
    assert api.get("/api/v1/backtests/?status=running").json()["count"] == 0


def test_it_serves_trades_with_exact_decimal_strings(api, finished):
    trades = api.get(f"/api/v1/backtests/{finished.pk}/trades/").json()["results"]
    assert trades == [
        {
            "id": trades[0]["id"],
            "ticker": LAD,
            "side": "yes",
            "contracts": "10.00",
            "entry_time": trades[0]["entry_time"],
            "entry_price": "0.6300",
            "exit_time": trades[0]["exit_time"],
            "exit_price": "0.0000",
            "exit_reason": "settlement",
            "fees": "0.09",
            "pnl": "-6.39000000",
        }
    ]


def test_it_404s_and_400s_with_messages(api):
    assert api.get("/api/v1/backtests/12345/").status_code == 404
    assert api.get("/api/v1/backtests/12345/trades/").status_code == 404
    bad = api.get("/api/v1/backtests/?status=lost")
    body = bad.json()
    assert bad.status_code == 400
    assert "must be one of" in str(body["errors"]["status"])
    assert body["detail"].startswith("Invalid request: status:")


def test_it_requires_authentication_to_create(api, recorded):
    response = api.post("/api/v1/backtests/", {"strategy": "momentum"}, format="json")
    assert response.status_code in (401, 403)
    assert not BacktestRun.objects.exists()


def test_it_creates_a_run_with_a_token_and_returns_its_id(api, recorded, django_capture_on_commit_callbacks):
    user = User.objects.create_user("quant")
    token = Token.objects.create(user=user)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/v1/backtests/",
            {
                "strategy": "mean_reversion",
                "params": {"window": 5},
                "tickers": [LAD],
                "contracts": "2.5",
                "grid": {"entry_z": [1, 2]},
                "oos_fraction": 0.25,
                "rank_metric": "net_pnl",
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    run = BacktestRun.objects.get(pk=response.json()["id"])
    assert response.json() == {"id": run.pk, "status": "queued", "url": f"/backtests/{run.pk}/"}
    assert (run.contracts, run.grid, run.created_by) == (Decimal("2.5"), {"entry_z": [1.0, 2.0]}, user)
    assert len(callbacks) == 1
    assert run.status == RunStatus.QUEUED


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"strategy": "nope"}, "is not a valid choice"),
        ({"strategy": "momentum", "params": {"windw": 3}}, "unknown parameter(s) for momentum: windw"),
        ({"strategy": "momentum", "tickers": ["KXNOPE"]}, "no market with ticker KXNOPE has been collected"),
        (
            {"strategy": "momentum", "start": "2026-08-02T00:00Z", "end": "2026-08-01T00:00Z"},
            "end must be after start",
        ),
        ({"strategy": "momentum", "contracts": "-1"}, "greater than or equal to 0.01"),
    ],
)
def test_it_rejects_bad_input_with_a_message(api, recorded, payload, message):
    api.force_authenticate(User.objects.create_user("quant"))
    response = api.post("/api/v1/backtests/", payload, format="json")
    assert response.status_code == 400
    assert message in str(response.json())


def test_it_rejects_a_nul_character_in_a_filter(api):
    response = api.get("/api/v1/backtests/", {"strategy": "mean\x00reversion"})
    assert response.status_code == 400
    assert "Null characters are not allowed" in str(response.json()["errors"]["strategy"])
