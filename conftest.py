"""Fixtures shared by every app's tests: real Kalshi recordings and a client that serves them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from markets.kalshi import KalshiClient

KALSHI_FIXTURES = Path(__file__).parent / "markets" / "tests" / "fixtures" / "kalshi"


def load_kalshi_fixture(name: str) -> Any:
    """A recorded Kalshi response body as JSON, unwrapped from the recorder's envelope."""
    data = json.loads((KALSHI_FIXTURES / name).read_text())
    if name.startswith("legacy_"):
        return data["response"]
    return data


@pytest.fixture
def kalshi_fixture() -> Callable[[str], Any]:
    return load_kalshi_fixture


Route = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def kalshi_client() -> Iterator[Callable[[Route], KalshiClient]]:
    """Build a KalshiClient whose network edge is `httpx.MockTransport(handler)`; no sleeping."""
    clients: list[KalshiClient] = []

    def make(handler: Route, **kwargs: Any) -> KalshiClient:
        kwargs.setdefault("sleep", lambda seconds: None)
        client = KalshiClient(
            base_url="https://kalshi.test/trade-api/v2", transport=httpx.MockTransport(handler), **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach Google's hosts at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; skipped without it, unless CI requires it."""
    if not CHROMIUM.exists():
        if os.environ.get("KALSHI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"KALSHI_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); CI requires it instead")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests
    # make next to it are still plain synchronous code, which Django's guard cannot tell.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


def wait_drawn(page: Any, element_id: str, *, timeout: int = 20_000) -> None:
    """Wait until static/js/charts.js has drawn the chart with this id at least once."""
    page.wait_for_function(
        "id => Number(document.getElementById(id)?.dataset.drawn) >= 1", arg=element_id, timeout=timeout
    )


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Undo logging changes a test leaks: Celery's in-process test worker sets the root level."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(autouse=True)
def _api_throttling_off(settings: Any) -> None:
    """No API throttling in tests: its counters live in Redis and outlast a test run.

    A test about throttling sets REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] itself.
    """
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None},
    }


@pytest.fixture(autouse=True)
def _api_count_cache_off(settings: Any) -> None:
    """Lists count every request in tests (the default, whatever the environment says): tests
    change rows between requests within seconds.

    A test about the count cache sets API_COUNT_CACHE_SECONDS itself.
    """
    settings.API_COUNT_CACHE_SECONDS = 0


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if os.environ.get("KALSHI_REQUIRE_POSTGRES") == "1" and "postgresql" not in engine:
        raise pytest.UsageError(
            f"KALSHI_REQUIRE_POSTGRES=1 but DATABASE_URL points at {engine}; "
            "the suite must run against PostgreSQL (see README)."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
