"""A database filled from the real Kalshi recordings through the real ingest path, for the API tests.

Two poll cycles over 46 recorded markets (44 settled MLB markets, 2 live NFL ones), the second
moving one quote by half a cent; the events and series the poller fills in from the recordings; a
scalar (fair-price) settlement; and 30 hourly backfilled snapshots with a 6-decimal price.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import httpx
import time_machine

from markets import ingest
from markets.kalshi import parse_market
from markets.models import Market, PollOutcome, SnapshotSource

LIVE = "2026-10_markets_page.json"
SETTLED = "2026-08_markets_settled.json"
SCALAR = "2026-09_market_settled_scalar_fairprice.json"
DAL = "KXNFLGAME-26OCT08TBDAL-DAL"
BACKFILL_START = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)
BACKFILL_ROWS = 30


@dataclass
class ApiData:
    dal: Market
    scalar: Market
    first_poll_at: datetime
    second_poll_at: datetime


def _handler(kalshi_fixture: Any, pages: list[list[dict[str, Any]]]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/markets"):
            index = int(request.url.params.get("cursor") or 0)
            cursor = str(index + 1) if index + 1 < len(pages) else ""
            return httpx.Response(200, json={"markets": pages[index], "cursor": cursor})
        if path.endswith("/events"):
            return httpx.Response(200, json=kalshi_fixture("2026-10_events_page.json"))
        if path.endswith("/series"):
            return httpx.Response(200, json=kalshi_fixture("2026-10_series_list_page.json"))
        if "/series/" in path:
            return httpx.Response(200, json=kalshi_fixture("2026-10_series_single.json"))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})

    return handler


def load(kalshi_client: Any, kalshi_fixture: Any) -> ApiData:
    settled = kalshi_fixture(SETTLED)["markets"]
    live = kalshi_fixture(LIVE)["markets"]
    pages = [settled[:20], settled[20:] + live]
    client = kalshi_client(_handler(kalshi_fixture, pages))

    first = datetime(2026, 10, 6, 7, 0, tzinfo=UTC)
    second = first + timedelta(minutes=5)
    # A lock name of its own: a poller running elsewhere on the same Redis must not make
    # these cycles skip.
    with mock.patch.object(ingest, "POLL_LOCK_NAME", f"api-test-data-{uuid.uuid4()}"):
        with time_machine.travel(first, tick=False):
            assert ingest.run_poll_cycle(client=client).outcome == PollOutcome.OK
        moved = copy.deepcopy(live)
        moved[0]["yes_bid_dollars"] = "0.8050"  # a sub-cent move
        pages[1] = settled[20:] + moved
        with time_machine.travel(second, tick=False):
            assert ingest.run_poll_cycle(client=client).outcome == PollOutcome.OK

    raw = json.dumps(kalshi_fixture(SCALAR)).encode()
    ingest.record_markets([(parse_market(raw), raw)])

    dal = Market.objects.get(ticker=DAL)
    rows = []
    for hour in range(BACKFILL_ROWS):
        bid = Decimal("0.70") + Decimal(hour) / 1000
        rows.append(
            ingest.SnapshotRow(
                market_id=dal.id,
                captured_at=BACKFILL_START + timedelta(hours=hour),
                source=SnapshotSource.BACKFILL,
                quote=(
                    Decimal("0.412345") if hour == 0 else bid,
                    bid + Decimal("0.01"),
                    Decimal("1") - bid - Decimal("0.01"),
                    Decimal("1") - bid,
                    None if hour % 2 else bid,  # no trade in odd hours: no last price
                    None,
                    None,
                    Decimal("1000.25") + hour,
                    None,
                    Decimal("500.50"),
                ),
            )
        )
    ingest.write_snapshots(rows)
    return ApiData(
        dal=Market.objects.get(ticker=DAL),
        scalar=Market.objects.get(ticker=kalshi_fixture(SCALAR)["ticker"]),
        first_poll_at=first,
        second_poll_at=second,
    )
