"""GET /api/v1/insights/calibration/ and /movers/: the contract, on data whose answers are known."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
import yaml

from markets.tests import insight_data
from markets.tests.insight_data import CLOSE, D, market

pytestmark = pytest.mark.django_db

CALIBRATION = "/api/v1/insights/calibration/"
MOVERS = "/api/v1/insights/movers/"


@pytest.fixture
def calibration_set():
    insight_data.calibration_set()


def test_it_returns_calibration_with_decimal_strings(client, calibration_set):
    response = client.get(CALIBRATION, {"horizon": "1h", "series": "KXCAL"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["horizon"] == "1h"
    assert body["horizon_seconds"] == 3600
    assert (body["markets"], body["yes"]) == (14, 8)
    assert body["brier_score"] == "0.204286"
    assert body["base_rate"] == "0.571429"
    assert body["expected_calibration_error"] == "0.014286"
    assert body["confidence"] == 0.95
    assert body["interval"] == "wilson"
    assert len(body["bins"]) == 10
    assert body["bins"][7] == {
        "index": 7,
        "lower": "0.700000",
        "upper": "0.800000",
        "count": 10,
        "yes": 7,
        "mean_predicted": "0.700000",
        "observed": "0.700000",
        "ci_low": "0.396778",
        "ci_high": "0.892209",
    }
    assert body["bins"][0]["observed"] is None and body["bins"][0]["count"] == 0
    assert body["excluded"] == {
        "closed_early": 1,
        "no_quote": 1,
        "stale_quote": 0,
        "empty_book": 1,
        "total": 3,
    }
    assert body["scalar"] == {
        "count": 1,
        "mean_settlement_value": "0.3800",
        "with_quote": 1,
        "mean_mid": "0.4000",
    }
    assert body["series"] == "KXCAL" and body["category"] is None
    assert body["closed_after"] is None and body["max_quote_age_seconds"] is None
    assert body["early_close_grace_seconds"] == 6 * 3600


def test_it_takes_close_time_bounds_and_a_quote_age(client, calibration_set):
    body = client.get(
        CALIBRATION,
        {"horizon": "1h", "closed_after": "2026-06-01T12:00:00Z", "closed_before": "1780316400", "bins": "4"},
    ).json()

    assert body["closed_after"] == "2026-06-01T12:00:00Z"
    assert body["closed_before"] == "2026-06-01T12:20:00Z"
    assert body["markets"] == 14
    assert [b["count"] for b in body["bins"]] == [4, 0, 10, 0]
    # The quotes taken 2 h before close are exactly 1 h old at the horizon: old enough, not too old.
    aged = client.get(CALIBRATION, {"horizon": "1h", "max_quote_age": "1h"}).json()
    assert aged["markets"] == 15 and aged["excluded"]["stale_quote"] == 0
    assert aged["max_quote_age_seconds"] == 3600


def test_it_returns_an_empty_calibration_without_data(client):
    body = client.get(CALIBRATION).json()

    assert body["markets"] == 0
    assert body["brier_score"] is None
    assert body["scalar"]["mean_settlement_value"] is None
    assert all(b["count"] == 0 for b in body["bins"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"horizon": "2d"}, "horizon"),
        ({"bins": "1"}, "bins"),
        ({"bins": "51"}, "bins"),
        ({"bins": "x"}, "bins"),
        ({"closed_after": "yesterday"}, "closed_after"),
        ({"closed_after": "2026-06-02", "closed_before": "2026-06-01"}, "closed_before"),
        ({"max_quote_age": "2y"}, "max_quote_age"),
        ({"series": "A\x00"}, "series"),
        ({"format": "xml"}, "format"),
    ],
)
def test_it_rejects_bad_calibration_parameters_in_the_api_error_shape(client, params, field):
    response = client.get(CALIBRATION, params)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["detail"].startswith("Invalid request: ")
    assert field in body["errors"]


def test_it_returns_one_hour_movers(client):
    now = CLOSE - timedelta(days=1)
    then, recent = now - timedelta(hours=2), now - timedelta(minutes=10)
    market(
        "KXMOV-UP-1", status="active", quotes=[(then, "0.49", "0.51", "100"), (recent, "0.59", "0.61", "150")]
    )
    market(
        "KXMOV-DOWN-1",
        status="active",
        quotes=[(then, "0.395", "0.405", "10"), (recent, "0.29", "0.31", "210")],
    )

    with time_machine.travel(now, tick=False):
        body = client.get(MOVERS).json()

    assert body["window"] == "1h" and body["window_seconds"] == 3600
    assert body["as_of"] == "2026-05-31T12:00:00Z"
    assert body["max_spread"] == "0.1000"
    assert body["compared"] == 2
    assert body["gainers"] == [
        {
            "ticker": "KXMOV-UP-1",
            "title": "Title of KXMOV-UP-1",
            "subtitle": "Yes of KXMOV-UP-1",
            "event_ticker": "KXMOV-UP",
            "close_time": "2026-06-01T12:00:00Z",
            "price_before": "0.5000",
            "price_now": "0.6000",
            "change": "0.1000",
            "volume": "50.00",
        }
    ]
    assert body["losers"][0]["change"] == "-0.1000"
    assert [m["ticker"] for m in body["volume_leaders"]] == ["KXMOV-DOWN-1", "KXMOV-UP-1"]


def test_it_returns_24_hour_movers_from_kalshis_fields(client):
    market(
        "KX24-UP-1",
        status="active",
        close_time=CLOSE + timedelta(days=30),
        yes_bid=D("0.505"),
        yes_ask=D("0.52"),
        previous_yes_bid=D("0.30"),
        previous_yes_ask=D("0.32"),
        volume_24h=D("10"),
    )

    body = client.get(MOVERS, {"window": "24h", "max_spread": "1", "limit": "5"}).json()

    assert body["window"] == "24h"
    assert body["gainers"][0]["price_now"] == "0.5125"  # sub-cent mids keep their digits
    assert body["gainers"][0]["change"] == "0.2025"
    assert body["volume_leaders"][0]["volume"] == "10.00"
    assert body["max_spread"] == "1.0000"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "1w"}, "window"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"max_spread": "1.5"}, "max_spread"),
        ({"max_spread": "-0.1"}, "max_spread"),
        ({"max_spread": "cheap"}, "max_spread"),
        ({"category": "\x00"}, "category"),
    ],
)
def test_it_rejects_bad_mover_parameters_in_the_api_error_shape(client, params, field):
    response = client.get(MOVERS, params)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]


def test_it_refuses_writes(client):
    assert client.post(CALIBRATION).status_code in (403, 405)
    assert client.delete(MOVERS).status_code in (403, 405)


def test_it_documents_the_endpoints_and_their_parameters(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)

    calibration = schema["paths"]["/api/v1/insights/calibration/"]["get"]
    names = {p["name"]: p for p in calibration["parameters"]}
    assert set(names) >= {
        "horizon",
        "bins",
        "series",
        "category",
        "closed_after",
        "closed_before",
        "max_quote_age",
    }
    assert names["horizon"]["schema"]["enum"] == ["1h", "6h", "1d", "3d", "1w"]
    assert names["bins"]["schema"]["minimum"] == 2 and names["bins"]["schema"]["maximum"] == 50
    assert set(calibration["responses"]) >= {"200", "400", "429"}
    assert calibration["tags"] == ["insights"]
    movers = schema["paths"]["/api/v1/insights/movers/"]["get"]
    assert {p["name"] for p in movers["parameters"]} >= {
        "window",
        "series",
        "category",
        "max_spread",
        "limit",
    }
    bin_schema = schema["components"]["schemas"]["CalibrationBin"]["properties"]
    assert bin_schema["observed"]["type"] == "string" and bin_schema["observed"]["nullable"] is True


def test_an_unknown_insights_url_is_a_json_404(client):
    response = client.get("/api/v1/insights/nothing/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
