"""The OpenAPI schema: valid, served, drawn by an offline Swagger UI, and honoured by every endpoint.

The fuzzing test loads the schema from the running WSGI app, so endpoints added under /api/v1/
later are fuzzed without changing this file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from markets.models import Event, Market, PollRun, Series
from markets.tests import api_data

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/v1/markets/",
    "/api/v1/markets/{ticker}/",
    "/api/v1/markets/{ticker}/snapshots/",
    "/api/v1/events/",
    "/api/v1/events/{event_ticker}/",
    "/api/v1/series/",
    "/api/v1/series/{series_ticker}/",
    "/api/v1/poll-runs/",
    "/api/v1/poll-runs/{id}/",
}
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_it_generates_a_valid_schema_without_warnings(tmp_path: Path):
    out = tmp_path / "schema.yaml"
    # --fail-on-warn turns any drf-spectacular warning (an unresolvable field, a guessed type) into
    # an error; --validate checks the result against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert set(schema["paths"]) >= ENDPOINTS
    market = schema["components"]["schemas"]["Market"]["properties"]
    assert market["yes_bid"] == market["yes_bid"] | {"type": "string", "format": "decimal"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]


def test_it_serves_the_schema_as_yaml_and_json(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert set(yaml.safe_load(response.content)["paths"]) >= ENDPOINTS
    as_json = client.get("/api/schema/", {"format": "json"})
    assert as_json.status_code == 200
    assert set(json.loads(as_json.content)["paths"]) >= ENDPOINTS


def test_it_serves_swagger_ui_from_the_project_not_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file"
    assert "/api/schema/" in html


@pytest.mark.browser
def test_it_draws_the_api_in_swagger_ui_offline(browser, live_server, kalshi_client, kalshi_fixture):
    api_data.load(kalshi_client, kalshi_fixture)
    outside: list[str] = []
    page = browser.new_page()

    def guard(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        page.route("**/*", guard)
        page.goto(f"{live_server.url}/api/docs/")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = {
            el.get_attribute("data-path") or el.inner_text()
            for el in page.query_selector_all(".opblock-summary-path")
        }
        assert {p.replace("\u200b", "") for p in paths} >= ENDPOINTS

        # "Try it out" on the market detail runs a real request through the UI.
        page.click("#operations-markets-markets_retrieve .opblock-summary")
        page.click("#operations-markets-markets_retrieve .try-out__btn")
        page.fill("#operations-markets-markets_retrieve input[placeholder='ticker']", api_data.DAL)
        page.click("#operations-markets-markets_retrieve .execute")
        body = page.wait_for_selector(
            "#operations-markets-markets_retrieve .live-responses-table .response-col_description pre",
            timeout=20_000,
        )
        assert body is not None
        assert '"yes_bid": "0.8050"' in body.inner_text()
    finally:
        page.close()
    assert outside == []


@pytest.fixture
def wsgi_app():
    """The project's WSGI app, called in-process inside the test's transaction.

    Like Django's test client, it must not close the database connection after each request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_it_conforms_to_its_schema_under_1000_generated_requests(wsgi_app, kalshi_client, kalshi_fixture):
    data = api_data.load(kalshi_client, kalshi_fixture)
    # Half the detail requests use real keys, so 200 responses are checked, not only 404s.
    real_keys: dict[str, list[Any]] = {
        "ticker": [data.dal.ticker, data.scalar.ticker, *Market.objects.values_list("ticker", flat=True)[:5]],
        "event_ticker": list(Event.objects.values_list("ticker", flat=True)[:5]),
        "series_ticker": list(Series.objects.values_list("ticker", flat=True)),
        "id": list(PollRun.objects.values_list("id", flat=True)),
    }
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= ENDPOINTS

    requests: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    per_operation = MIN_REQUESTS // len(operations) + 40

    def fuzz(operation: Any) -> None:
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            n = requests[label]
            for name, keys in real_keys.items():
                if name in (case.path_parameters or {}) and n % 2 == 0 and keys:
                    case.path_parameters[name] = keys[n // 2 % len(keys)]
            response = case.call_and_validate(checks=CHECKS)
            requests[label] += 1
            statuses[response.status_code] += 1

        exercise()

    for operation in operations:
        fuzz(operation)

    total = sum(requests.values())
    print(f"schemathesis: {total} requests; statuses {dict(sorted(statuses.items()))}; {dict(requests)}")
    assert total >= MIN_REQUESTS
    assert all(count >= 50 for count in requests.values()), requests
    assert not any(code >= 500 for code in statuses)
    # Real keys and data: a good share of the answers are full 200 bodies checked against the schema.
    assert statuses[200] >= 250
