"""Contract tests for the JSON API on data ingested from the real Kalshi recordings."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.serializers import ModelSerializer

from markets.api import serializers as api_serializers
from markets.api.pagination import counts
from markets.models import Event, Market, MarketSnapshot, PollRun, Series
from markets.tests import api_data

pytestmark = pytest.mark.django_db

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
PRICE = re.compile(r"^(0|1)\.\d{4,6}$")
COUNT = re.compile(r"^\d+\.\d\d$")
PRICE_KEYS = {"yes_bid", "yes_ask", "no_bid", "no_ask", "last_price", "previous_price", "settlement_value"}
COUNT_KEYS = {"yes_bid_size", "yes_ask_size", "volume", "volume_24h", "open_interest"}


@pytest.fixture
def data(kalshi_client, kalshi_fixture) -> api_data.ApiData:
    return api_data.load(kalshi_client, kalshi_fixture)


def get(client, url: str, expect: int = 200, **params: Any) -> Any:
    response = client.get(url, params)
    assert response.status_code == expect, response.content[:500]
    assert response["Content-Type"] == "application/json"
    return response.json()


def walk(value: Any) -> Any:
    """Every scalar in a JSON document."""
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
    else:
        yield value


def assert_market_types(market: dict[str, Any]) -> None:
    for key in PRICE_KEYS & market.keys():
        assert market[key] is None or PRICE.match(market[key]), (key, market[key])
    for key in COUNT_KEYS & market.keys():
        assert market[key] is None or COUNT.match(market[key]), (key, market[key])
    for key in ("open_time", "close_time", "expiration_time", "updated_time", "quote_captured_at"):
        assert market[key] is None or ISO_Z.match(market[key]), (key, market[key])


# --------------------------------------------------------------------------------------------------
# Markets list
# --------------------------------------------------------------------------------------------------


def test_it_lists_markets_with_their_latest_quote_as_strings(client, data):
    body = get(client, "/api/v1/markets/")

    assert body["count"] == 47 == Market.objects.count()
    assert body["next"] is None and body["previous"] is None
    tickers = [m["ticker"] for m in body["results"]]
    assert tickers == sorted(tickers)
    assert not any(isinstance(v, float) for v in walk(body))
    for market in body["results"]:
        assert_market_types(market)
    dal = next(m for m in body["results"] if m["ticker"] == api_data.DAL)
    assert dal == dal | {
        "event_ticker": "KXNFLGAME-26OCT08TBDAL",
        "series_ticker": "KXNFLGAME",
        "market_type": "binary",
        "title": "Dallas wins",
        "status": "active",
        "result": "",
        "yes_bid": "0.8050",
        "yes_ask": "0.8100",
        "no_bid": "0.1900",
        "no_ask": "0.2000",
        "last_price": "0.8100",
        "previous_price": "0.8400",
        "yes_bid_size": "16529.55",
        "yes_ask_size": "375864.43",
        "volume": "271926.68",
        "volume_24h": "202329.86",
        "open_interest": "242310.93",
        "settlement_value": None,
        "close_time": "2026-10-11T00:15:00Z",
        "open_time": "2026-09-29T04:05:00Z",
        "updated_time": "2026-09-29T04:05:00.889551Z",
        "quote_captured_at": "2026-10-06T07:05:00Z",
    }


def test_it_shows_settled_markets_with_settlement_value_and_result(client, data):
    body = get(client, "/api/v1/markets/", tickers=data.scalar.ticker)

    (market,) = body["results"]
    assert market["status"] == "finalized"
    assert market["result"] == "scalar"
    assert market["settlement_value"] == "0.3800"
    assert market["series_ticker"] is None  # its event has not been read from Kalshi


def test_it_paginates_with_bounded_page_sizes(client, data):
    first = get(client, "/api/v1/markets/", page_size=20)
    assert len(first["results"]) == 20 and first["count"] == 47
    assert first["next"].endswith("page=2&page_size=20")
    third = get(client, first["next"].replace("page=2", "page=3"))
    assert len(third["results"]) == 7
    assert third["next"] is None
    seen = {m["ticker"] for m in first["results"]} | {m["ticker"] for m in third["results"]}
    assert len(seen) == 27

    last = get(client, "/api/v1/markets/", page_size=20, page="last")
    assert last["results"] == third["results"]


def test_it_reuses_a_lists_count_for_api_count_cache_seconds(client, data, settings):
    settings.API_COUNT_CACHE_SECONDS = 60
    counts.clear()
    assert get(client, "/api/v1/markets/", page_size=20)["count"] == 47
    Market.objects.filter(ticker=api_data.DAL).delete()
    # Same rows counted (another page, another order): the count is reused...
    later = get(client, "/api/v1/markets/", page_size=20, page=2, ordering="-volume")
    assert later["count"] == 47 and len(later["results"]) == 20
    # ...a different filter counts afresh, and so does everything once the entries expire.
    assert get(client, "/api/v1/markets/", search=api_data.DAL)["count"] == 0
    counts.clear()
    assert get(client, "/api/v1/markets/", page_size=20)["count"] == 46
    settings.API_COUNT_CACHE_SECONDS = 0
    Market.objects.filter(ticker__in=Market.objects.values("ticker")[:1]).delete()
    assert get(client, "/api/v1/markets/", page_size=20)["count"] == 45


@pytest.mark.parametrize("size", ["0", "1001", "abc", "-5", "1.5", "9" * 5000])
def test_it_rejects_a_page_size_out_of_range(client, data, size):
    body = get(client, "/api/v1/markets/", 400, page_size=size)
    assert body["code"] == "invalid"
    assert "1 to 1000" in body["errors"]["page_size"][0]
    assert body["detail"].startswith("Invalid request: page_size: Must be a whole number from 1 to 1000")


def test_it_gives_a_404_for_a_page_past_the_end_and_a_400_for_a_bad_page(client, data):
    body = get(client, "/api/v1/markets/", 404, page=9)
    assert body == {
        "detail": "Page 9 is past the last page (1); follow the `next` links or ask for page 1.",
        "code": "not_found",
    }
    assert "page" in get(client, "/api/v1/markets/", 400, page="two")["errors"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", {"active"}),
        ("active", {"active"}),
        ("settled", {"finalized"}),
        ("finalized", {"finalized"}),
        ("closed", {"closed"}),
        ("open,closed", {"active", "closed"}),
        ("unopened", set()),
    ],
)
def test_it_filters_by_kalshi_filter_names_and_market_statuses(client, data, status, expected):
    results = get(client, "/api/v1/markets/", status=status)["results"]
    assert {m["status"] for m in results} == expected
    assert len(results) == Market.objects.filter(status__in=expected).count()


def test_it_treats_closed_as_kalshis_filter_past_close_not_yet_settled(client, data):
    Market.objects.filter(ticker=api_data.DAL).update(status="determined")
    statuses = {m["status"] for m in get(client, "/api/v1/markets/", status="closed")["results"]}
    assert statuses == {"closed", "determined"}
    assert [m["ticker"] for m in get(client, "/api/v1/markets/", status="determined")["results"]] == [
        api_data.DAL
    ]


def test_it_rejects_an_unknown_status(client, data):
    body = get(client, "/api/v1/markets/", 400, status="open,bogus")
    message = body["errors"]["status"][0]
    assert "'bogus'" in message and "unopened, open, paused, closed, settled" in message


def test_it_filters_by_series_event_category_and_tickers(client, data):
    series = {m["ticker"] for m in get(client, "/api/v1/markets/", series="KXNFLGAME")["results"]}
    nfl = {api_data.DAL, "KXNFLGAME-26OCT08TBDAL-TB"}
    # The August games' events were never synced (no series link): matched by their ticker prefix.
    unsynced = set(Market.objects.filter(event__series__isnull=True, ticker__startswith="KXNFLGAME-"))
    assert unsynced and series == nfl | {m.ticker for m in unsynced}
    by_event = get(client, "/api/v1/markets/", event="KXNFLGAME-26OCT08TBDAL")["results"]
    assert {m["ticker"] for m in by_event} == nfl
    assert {m["ticker"] for m in get(client, "/api/v1/markets/", category="sports")["results"]} == nfl
    assert get(client, "/api/v1/markets/", series="NOPE")["count"] == 0
    picked = get(client, "/api/v1/markets/", tickers=f"{api_data.DAL},{data.scalar.ticker},NOPE")
    assert {m["ticker"] for m in picked["results"]} == {api_data.DAL, data.scalar.ticker}


def test_it_filters_by_close_time_range(client, data):
    after = get(client, "/api/v1/markets/", close_time_after="2026-10-01")["results"]
    assert {m["ticker"] for m in after} == {api_data.DAL, "KXNFLGAME-26OCT08TBDAL-TB"}
    exact = get(
        client,
        "/api/v1/markets/",
        close_time_after="2026-10-11T00:15:00Z",
        close_time_before="2026-10-11T00:15:00Z",
    )["results"]
    assert len(exact) == 2
    # Unix seconds and explicit offsets mean the same instant.
    unix = get(client, "/api/v1/markets/", close_time_before="1791677700", close_time_after="1791677700")
    offset = get(client, "/api/v1/markets/", close_time_before="2026-10-10T20:15:00-04:00")
    assert unix["count"] == 2
    assert offset["count"] == Market.objects.filter(close_time__lte="2026-10-11T00:15:00Z").count()


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"close_time_after": "yesterday"}, "close_time_after", "is not a date-time"),
        ({"close_time_after": "2026-13-01"}, "close_time_after", "is not a valid date"),
        ({"close_time_after": "2026-10-06T07:00:00 02:00"}, "close_time_after", "%2B"),
        ({"close_time_after": "%d %s"}, "close_time_after", "'%d %s' is not a date-time"),
        ({"status": "%s"}, "status", "Unknown value(s) '%s'"),
        ({"close_time_after": "99999999999999"}, "close_time_after", "is not a date-time"),
        (
            {"close_time_after": "2026-10-02", "close_time_before": "2026-10-01"},
            "close_time_before",
            "earlier",
        ),
        ({"ordering": "volume,color"}, "ordering", "Cannot order by 'color'"),
        ({"ordering": "event__series__fee_type"}, "ordering", "Choose from ticker, open_time"),
        ({"result": "maybe"}, "result", "valid choice"),
        ({"search": "a\x00b"}, "search", "Null characters"),
        ({"series": "a\x00b"}, "series", "Null characters"),
    ],
)
def test_it_rejects_bad_query_parameters_with_a_message(client, data, params, field, fragment):
    body = get(client, "/api/v1/markets/", 400, **params)
    assert body["code"] == "invalid"
    assert fragment in " ".join(body["errors"][field])
    assert field in body["detail"]


def test_it_searches_ticker_and_title(client, data):
    found = get(client, "/api/v1/markets/", search="dallas wins")["results"]
    assert api_data.DAL in {m["ticker"] for m in found}
    event_titles = dict(Event.objects.values_list("ticker", "title"))
    for m in found:
        text = " ".join(
            [m["ticker"], m["title"], m["yes_sub_title"], event_titles[m["event_ticker"]]]
        ).lower()
        assert "dallas" in text and "wins" in text
    assert len(found) < Market.objects.count()
    assert get(client, "/api/v1/markets/", search="kxnflgame-26oct08")["count"] == 2


def test_it_orders_on_whitelisted_fields_with_missing_values_last(client, data):
    Market.objects.filter(ticker="KXNFLGAME-26OCT08TBDAL-TB").update(volume=None)
    results = get(client, "/api/v1/markets/", ordering="-volume", page_size=1000)["results"]
    volumes = [Decimal(m["volume"]) for m in results if m["volume"] is not None]
    assert volumes == sorted(volumes, reverse=True)
    assert results[-1]["ticker"] == "KXNFLGAME-26OCT08TBDAL-TB"
    largest = Market.objects.exclude(volume=None).order_by("-volume").values_list("volume", flat=True)[0]
    assert results[0]["volume"] == str(largest)

    by_close = get(client, "/api/v1/markets/", ordering="close_time,-ticker")["results"]
    keys = [(m["close_time"], m["ticker"]) for m in by_close]
    assert keys == sorted(keys, key=lambda k: (k[0], [-ord(c) for c in k[1]]))


# --------------------------------------------------------------------------------------------------
# Market detail
# --------------------------------------------------------------------------------------------------


def test_it_shows_one_market_with_metadata_settlement_and_fees(client, data, django_assert_num_queries):
    # One query: the view loads only the columns it shows, and none it shows may be left out.
    with django_assert_num_queries(1):
        body = get(client, f"/api/v1/markets/{api_data.DAL}/")

    assert_market_types(body)
    assert not any(isinstance(v, float) for v in walk(body))
    assert body == body | {
        "ticker": api_data.DAL,
        "yes_bid": "0.8050",
        "previous_yes_bid": "0.8300",
        "previous_yes_ask": "0.8400",
        "notional_value": "1.0000",
        "fee_type": "quadratic_with_maker_fees",
        "fee_multiplier": "1",
        "strike_type": "structured",
        "floor_strike": None,
        "custom_strike": {"football_team": "62b97b7c-5503-461c-b328-fd8543219b22"},
        "price_level_structure": "linear_cent",
        "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
        "can_close_early": True,
        "settlement_timer_seconds": 60,
        "created_time": "2026-09-29T04:01:07.177460Z",
        "event": {
            "ticker": "KXNFLGAME-26OCT08TBDAL",
            "title": Event.objects.get(ticker="KXNFLGAME-26OCT08TBDAL").title,
            "sub_title": Event.objects.get(ticker="KXNFLGAME-26OCT08TBDAL").sub_title,
            "category": "Sports",
        },
        "series": {
            "ticker": "KXNFLGAME",
            "title": "NFL Game",
            "category": "Sports",
            "fee_type": "quadratic_with_maker_fees",
            "fee_multiplier": "1",
        },
    }
    assert body["rules_primary"].startswith("If Dallas wins")
    assert set(api_serializers.MarketSerializer.Meta.fields) < body.keys()


def test_it_shows_a_scalar_settlement_and_strikes(client, data):
    body = get(client, f"/api/v1/markets/{data.scalar.ticker}/")
    assert (body["result"], body["settlement_value"], body["floor_strike"]) == ("scalar", "0.3800", "24.5")
    assert body["series"] is None and body["fee_type"] == "" and body["fee_multiplier"] is None
    assert ISO_Z.match(body["settlement_ts"])


def test_it_applies_an_events_fee_override(client, data):
    Event.objects.filter(ticker="KXNFLGAME-26OCT08TBDAL").update(
        fee_type_override="flat", fee_multiplier_override=Decimal("0.5")
    )
    body = get(client, f"/api/v1/markets/{api_data.DAL}/")
    assert (body["fee_type"], body["fee_multiplier"]) == ("flat", "0.5")
    assert body["series"]["fee_type"] == "quadratic_with_maker_fees"


def test_it_gives_a_json_404_for_an_unknown_ticker(client, data):
    assert get(client, "/api/v1/markets/NOPE-1/", 404) == {
        "detail": "No market with ticker 'NOPE-1'.",
        "code": "not_found",
    }
    assert get(client, "/api/v1/markets/A%00B/", 404)["code"] == "not_found"


def test_it_finds_tickers_with_dots_and_ignores_list_filters_on_detail(client, data):
    Market.objects.filter(pk=data.dal.pk).update(ticker="KXHIGHNY-24JAN01-B45.5")
    assert get(client, "/api/v1/markets/KXHIGHNY-24JAN01-B45.5/", status="settled")["ticker"] == (
        "KXHIGHNY-24JAN01-B45.5"
    )


# --------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------

SNAPSHOTS = f"/api/v1/markets/{api_data.DAL}/snapshots/"


def test_it_lists_snapshots_oldest_first_from_all_sources(client, data):
    body = get(client, SNAPSHOTS)
    rows = body["results"]

    assert len(rows) == api_data.BACKFILL_ROWS + 2 == MarketSnapshot.objects.filter(market=data.dal).count()
    assert body["next"] is None
    assert [r["captured_at"] for r in rows] == sorted(r["captured_at"] for r in rows)
    assert rows[0] == {
        "captured_at": "2026-10-05T00:00:00Z",
        "source": "backfill",
        "sequence": None,
        "yes_bid": "0.412345",  # sub-cent digits are kept
        "yes_ask": "0.7100",
        "no_bid": "0.2900",
        "no_ask": "0.3000",
        "last_price": "0.7000",
        "yes_bid_size": None,
        "yes_ask_size": None,
        "volume": "1000.25",
        "volume_24h": None,
        "open_interest": "500.50",
    }
    assert rows[1]["last_price"] is None  # nothing traded that hour
    assert [r["yes_bid"] for r in rows[-2:]] == ["0.8000", "0.8050"]
    assert {r["source"] for r in rows[-2:]} == {"poll"}


def test_it_pages_snapshots_with_cursors(client, data):
    page = get(client, SNAPSHOTS, page_size=7)
    collected = list(page["results"])
    pages = 1
    while page["next"]:
        page = get(client, page["next"])
        collected.extend(page["results"])
        pages += 1
    assert pages == 5
    assert collected == get(client, SNAPSHOTS)["results"]

    back = get(client, page["previous"])
    assert back["results"] == collected[-11:-4]


def test_it_lists_newest_snapshots_first_on_request(client, data):
    rows = get(client, SNAPSHOTS, ordering="-captured_at", page_size=3)["results"]
    assert [r["captured_at"] for r in rows] == [
        "2026-10-06T07:05:00Z",
        "2026-10-06T07:00:00Z",
        "2026-10-06T05:00:00Z",
    ]


def test_it_filters_snapshots_by_time_and_source(client, data):
    rows = get(client, SNAPSHOTS, start="2026-10-05T10:00:00Z", end="2026-10-05T12:00:00Z")["results"]
    assert [r["captured_at"] for r in rows] == [f"2026-10-05T{h}:00:00Z" for h in ("10", "11", "12")]
    assert len(get(client, SNAPSHOTS, source="poll")["results"]) == 2
    assert len(get(client, SNAPSHOTS, source="backfill", start="2026-10-06")["results"]) == 6
    assert get(client, SNAPSHOTS, source="websocket")["results"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "soon"}, "start"),
        ({"end": "2026-02-30"}, "end"),
        ({"start": "2026-10-06", "end": "2026-10-05"}, "end"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"page_size": "10001"}, "page_size"),
        ({"ordering": "yes_bid"}, "ordering"),
        ({"cursor": "not base64!"}, "cursor"),
        ({"cursor": "cD1ub3QtYS1kYXRl"}, "cursor"),  # decodes to "p=not-a-date"
        ({"format": "xml"}, "format"),
    ],
)
def test_it_rejects_bad_snapshot_parameters(client, data, params, field):
    body = get(client, SNAPSHOTS, 400, **params)
    assert field in body["errors"], body


def test_it_gives_a_404_for_snapshots_of_an_unknown_market(client, data):
    assert get(client, "/api/v1/markets/NOPE/snapshots/", 404)["detail"] == "No market with ticker 'NOPE'."
    response = client.get("/api/v1/markets/NOPE/snapshots/", {"format": "csv"})
    assert (response.status_code, response["Content-Type"]) == (404, "application/json")


def test_it_streams_snapshots_as_csv(client, data):
    response = client.get(SNAPSHOTS, {"format": "csv", "start": "2026-10-05T20:00:00Z", "source": "backfill"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{api_data.DAL}_snapshots_20261005T200000Z_backfill.csv"'
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == api_serializers.MarketSnapshotSerializer.Meta.fields
    assert len(rows) == 1 + 10
    assert rows[1] == [
        "2026-10-05T20:00:00Z",
        "backfill",
        "",
        "0.7200",
        "0.7300",
        "0.2700",
        "0.2800",
        "0.7200",
        "",
        "",
        "1020.25",
        "",
        "500.50",
    ]
    assert rows[2][7] == ""  # no last price, not "None"


def test_it_streams_csv_for_an_accept_header_and_the_whole_history(client, data):
    response = client.get(SNAPSHOTS, headers={"Accept": "text/csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{api_data.DAL}_snapshots.csv"'
    body = b"".join(response.streaming_content).decode()
    assert body.count("\n") == 1 + api_data.BACKFILL_ROWS + 2


# --------------------------------------------------------------------------------------------------
# Events, series, poll runs
# --------------------------------------------------------------------------------------------------


def test_it_lists_events_with_market_counts(client, data):
    body = get(client, "/api/v1/events/", series="KXNFLGAME")
    assert [e["ticker"] for e in body["results"]] == [
        "KXNFLGAME-26OCT08TBDAL",
        "KXNFLGAME-26OCT11CINMIA",
        "KXNFLGAME-26OCT11PHIJAC",
    ]
    tbdal = body["results"][0]
    assert tbdal["market_count"] == 2
    assert (tbdal["series_ticker"], tbdal["category"], tbdal["fee_type"], tbdal["fee_multiplier"]) == (
        "KXNFLGAME",
        "Sports",
        "quadratic_with_maker_fees",
        "1",
    )
    assert ISO_Z.match(tbdal["synced_at"])
    most = get(client, "/api/v1/events/", ordering="-market_count", page_size=1)["results"][0]
    assert most["market_count"] == 2
    assert get(client, "/api/v1/events/")["count"] == Event.objects.count()


def test_it_shows_an_event_with_its_markets(client, data):
    body = get(client, "/api/v1/events/KXNFLGAME-26OCT08TBDAL/")
    assert [m["ticker"] for m in body["markets"]] == [
        "KXNFLGAME-26OCT08TBDAL-DAL",
        "KXNFLGAME-26OCT08TBDAL-TB",
    ]
    assert body["markets"][0]["yes_bid"] == "0.8050"
    assert body["series"]["fee_type"] == "quadratic_with_maker_fees"
    assert get(client, "/api/v1/events/NOPE/", 404)["detail"] == "No event with ticker 'NOPE'."


def test_it_lists_series_with_fee_fields(client, data):
    body = get(client, "/api/v1/series/")
    assert body["count"] == Series.objects.count()
    nfl = get(client, "/api/v1/series/KXNFLGAME/")
    assert nfl == nfl | {
        "ticker": "KXNFLGAME",
        "title": "NFL Game",
        "category": "Sports",
        "categories": ["Sports"],
        "tags": ["Football"],
        "fee_type": "quadratic_with_maker_fees",
        "fee_multiplier": "1",
        "contract_terms_url": "https://assets.kalshi.com/contract_terms/FOOTBALLGAMEWIN.pdf",
        "last_updated_ts": "2026-09-30T21:38:16.589836Z",
    }
    assert all(set(s) == {"name", "url"} for s in nfl["settlement_sources"])
    assert [s["ticker"] for s in get(client, "/api/v1/series/", category="Sports")["results"]] == [
        "KXNFLGAME"
    ]
    assert get(client, "/api/v1/series/NOPE/", 404)["code"] == "not_found"


def test_it_lists_poll_runs_newest_first(client, data):
    body = get(client, "/api/v1/poll-runs/")
    runs = body["results"]
    assert body["count"] == 2 == PollRun.objects.count()
    assert [r["started_at"] for r in runs] == ["2026-10-06T07:05:00Z", "2026-10-06T07:00:00Z"]
    assert runs[1] == runs[1] | {
        "outcome": "ok",
        "pages": 2,
        "markets_seen": 46,
        "markets_created": 46,
        "snapshots_written": 46,
        "errors": 0,
        "error_messages": [],
    }
    assert runs[0]["snapshots_written"] == 1
    assert get(client, f"/api/v1/poll-runs/{runs[0]['id']}/")["id"] == runs[0]["id"]
    assert get(client, "/api/v1/poll-runs/", outcome="failed")["count"] == 0
    assert get(client, "/api/v1/poll-runs/", started_after="2026-10-06T07:01:00Z")["count"] == 1
    assert get(client, "/api/v1/poll-runs/abc/", 404)["code"] == "not_found"
    assert get(client, "/api/v1/poll-runs/99999999999999999999/", 404)["code"] == "not_found"


# --------------------------------------------------------------------------------------------------
# Authentication, throttling, the fast serializer path
# --------------------------------------------------------------------------------------------------


def test_it_requires_authentication_to_write(client, data):
    response = client.post("/api/v1/markets/", {"ticker": "X"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"

    user = User.objects.create_user("researcher")
    token = Token.objects.create(user=user)
    response = client.post(
        "/api/v1/markets/",
        {},
        content_type="application/json",
        headers={"Authorization": f"Token {token.key}"},
    )
    assert response.status_code == 405  # authenticated, and the markets API is read-only
    assert response.json()["code"] == "method_not_allowed"


def test_it_throttles_anonymous_clients_with_a_json_429(client, data, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/minute", "user": None},
    }
    # Counts live in Redis and outlast a test run: start from a clean slate.
    address = "203.0.113.7"
    cache.delete(f"throttle_anon_{address}")
    codes = [client.get("/api/v1/series/", REMOTE_ADDR=address).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/api/v1/series/", REMOTE_ADDR=address)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "throttled"
    assert "Expected available in" in response.json()["detail"]
    assert 0 < int(response["Retry-After"]) <= 60
    cache.delete(f"throttle_anon_{address}")


@pytest.mark.parametrize(
    ("serializer_class", "queryset"),
    [
        (api_serializers.MarketSerializer, lambda: Market.objects.with_event()),
        (api_serializers.MarketDetailSerializer, lambda: Market.objects.with_event()),
        (api_serializers.MarketSnapshotSerializer, lambda: MarketSnapshot.objects.all()),
        (api_serializers.EventSerializer, lambda: Event.objects.with_series().with_market_count()),
        (api_serializers.EventDetailSerializer, lambda: Event.objects.with_series().with_market_count()),
        (api_serializers.SeriesSerializer, lambda: Series.objects.all()),
        (api_serializers.PollRunSerializer, lambda: PollRun.objects.all()),
        (api_serializers.EventSummarySerializer, lambda: Event.objects.all()),
        (api_serializers.SeriesSummarySerializer, lambda: Series.objects.all()),
    ],
)
def test_it_serializes_exactly_as_drfs_generic_path(data, serializer_class, queryset):
    objects = list(queryset())
    assert objects
    for obj in objects:
        serializer = serializer_class(obj)
        assert serializer.data == ModelSerializer.to_representation(serializer, obj)


@pytest.mark.parametrize(
    ("serializer_class", "queryset"),
    [
        (api_serializers.MarketSerializer, lambda: Market.objects.with_event()),
        (api_serializers.MarketSnapshotSerializer, lambda: MarketSnapshot.objects.all()),
    ],
)
def test_it_serializes_rows_exactly_as_model_instances(data, serializer_class, queryset):
    columns = serializer_class.columns()
    rows = {row["pk"]: row for row in queryset().values("pk", *columns)}
    assert len(rows) > 2
    for obj in queryset():
        assert serializer_class().to_representation(rows[obj.pk]) == serializer_class(obj).data
    # A page of rows is formatted a column at a time (FastListSerializer): same output, same order.
    objects = list(queryset().order_by("pk"))
    page = list(queryset().order_by("pk").values(*columns))
    assert serializer_class(page, many=True).data == [serializer_class(obj).data for obj in objects]
    tuples = list(queryset().order_by("pk").values_list(*columns))
    assert serializer_class(tuples, many=True).data == [serializer_class(obj).data for obj in objects]


def test_it_answers_unknown_api_urls_with_a_json_404(client):
    response = client.get("/api/v1/backtests/-5/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "/api/docs/" in response.json()["detail"]
    assert client.get("/api/v2/markets/").json()["code"] == "not_found"
