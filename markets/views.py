"""Pages: the market table, one market, one event, and the collector's status.

Each page is one view; an htmx request gets the page's `_fragment.html` (STYLE.md 15), which is
what the fragments' polling and the filter/sort/range links fetch. The market table's fragment is
rendered once per poll-cycle page and shared through the cache (KALSHI_PAGE_CACHE_SECONDS); the
full page embeds that same HTML.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from . import charts, status, timeseries
from .display import book_spread
from .forms import (
    CHART_RANGES,
    PAGE_SIZE,
    SORT_LABELS,
    STATUS_LABELS,
    ChartRangeForm,
    MarketTableForm,
    describe_errors,
)
from .models import Event, Market, MarketStatus, PollRun, Series

CHART_POINTS = 2000
RECENT_SNAPSHOTS = 25
RECENT_POLL_RUNS = 50
GAP_WINDOW = timedelta(days=7)
CATEGORIES_CACHE_KEY = "markets:categories"
# Statuses whose chart runs up to "now" (the market is still being polled).
LIVE_STATUSES = {MarketStatus.ACTIVE, MarketStatus.INACTIVE, MarketStatus.INITIALIZED}


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _wants_fragment(request: HtmxHttpRequest) -> bool:
    # A history-restore request (back button after the cache was evicted) needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render_page(request: HtmxHttpRequest, page: str, fragment: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or for htmx requests just its fragment, from the same context."""
    return render(request, fragment if _wants_fragment(request) else page, context)


def _common(now: datetime) -> dict[str, Any]:
    return {
        "now": now,
        "freshness": status.data_freshness(now),
        "poll_seconds": max(1, round(settings.KALSHI_POLL_INTERVAL)),
    }


def _bad_request(request: HttpRequest, messages: list[str]) -> HttpResponse:
    return render(
        request, "markets/bad_request.html", {"messages": messages, "path": request.path}, status=400
    )


def _not_found(request: HttpRequest, what: str, ticker: str) -> HttpResponse:
    return render(request, "markets/not_found.html", {"what": what, "ticker": ticker}, status=404)


# --------------------------------------------------------------------------------------------------
# The market table
# --------------------------------------------------------------------------------------------------


def categories() -> list[str]:
    """Categories to filter by (series' and, until series are synced, events'); cached 5 minutes."""
    cached = status.safe_cache_get(CATEGORIES_CACHE_KEY)
    if cached is not None:
        return list(cached)
    names = set(Series.objects.exclude(category="").values_list("category", flat=True).distinct())
    names.update(Event.objects.exclude(category="").values_list("category", flat=True).distinct())
    result = sorted(names)
    status.safe_cache_set(CATEGORIES_CACHE_KEY, result, 300)
    return result


def table_version() -> str:
    """Changes whenever a poll cycle starts or stores a page: the newest run's id and pages."""
    run = PollRun.objects.order_by("-started_at").values_list("id", "pages", "outcome").first()
    return "-" if run is None else "{}.{}.{}".format(*run)


@require_GET
@vary_on_headers("HX-Request")
def index(request: HtmxHttpRequest) -> HttpResponse:
    form = MarketTableForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, describe_errors(form))
    params = form.cleaned_data
    # Every viewer (and every poll of every open tab) gets the same table until the poller
    # stores something new, so the rendered fragment is shared through the cache.
    ttl = settings.KALSHI_PAGE_CACHE_SECONDS
    key = ""
    table = None
    if ttl > 0:
        path = hashlib.sha256(request.get_full_path().encode()).hexdigest()[:32]
        key = f"markets:table:{table_version()}:{path}"
        table = status.safe_cache_get(key)
    if table is None:
        table = render_to_string("markets/_table.html", _table_context(params), request)
        if key:
            status.safe_cache_set(key, table, max(1, round(ttl)))
    if _wants_fragment(request):
        return HttpResponse(table)
    context = {
        "form": form,
        "params": params,
        "table": mark_safe(table),  # our own template's output, escaped as it was rendered
        "categories": categories(),
        "status_labels": STATUS_LABELS,
        "filtered": bool(params["q"] or params["category"] or params["series"]),
    }
    return render(request, "markets/index.html", context)


def _table_context(params: dict[str, Any]) -> dict[str, Any]:
    markets = Market.objects.for_table().in_status_group(params["status"])
    if params["q"]:
        markets = markets.search(params["q"])
    if params["category"]:
        markets = markets.in_category(params["category"])
    if params["series"]:
        markets = markets.for_series(params["series"])
    # get_page() clamps a page past the end to the last one instead of failing.
    page = Paginator(markets.sorted_by(params["sort"]), PAGE_SIZE).get_page(params["page"])
    return {
        **_common(timezone.now()),
        "params": params,
        "page": page,
        "markets": page.object_list,
        "sort_labels": SORT_LABELS,
        "filtered": bool(params["q"] or params["category"] or params["series"]),
        # Reversing two URLs per row costs more than the rest of the row; the prefixes don't change.
        "market_prefix": reverse("markets:market", args=["-"]).removesuffix("-/"),
        "event_prefix": reverse("markets:event", args=["-"]).removesuffix("-/"),
    }


# --------------------------------------------------------------------------------------------------
# One market
# --------------------------------------------------------------------------------------------------


def chart_window(market: Market, range_name: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end] of a chart range. Open markets end now; finished ones at their last snapshot."""
    span = CHART_RANGES[range_name][1]
    live = market.status in LIVE_STATUSES
    anchor = now if live else (market.last_snapshot_at or market.close_time or now)
    if span is None:
        return None, (anchor if live else None)
    return anchor - span, anchor


def _break_after() -> timedelta | None:
    heartbeat = settings.KALSHI_SNAPSHOT_HEARTBEAT
    if not heartbeat:
        return None
    return max(timedelta(seconds=1.5 * heartbeat), 3 * status.poll_interval())


def price_figure(market: Market, range_name: str, now: datetime) -> dict[str, Any]:
    start, end = chart_window(market, range_name, now)
    buckets = timeseries.downsample(market, start=start, end=end, max_points=CHART_POINTS)
    carry_in = timeseries.quote_at(market, start) if start is not None else None
    fresh = not status.data_freshness(now).stale
    return charts.price_chart(
        buckets,
        uirevision=f"{market.ticker}:{range_name}",
        break_after=_break_after(),
        carry_in=carry_in,
        # The last quote is still in force "now" only while the poller is watching the market.
        extend_to=end if fresh and market.status in LIVE_STATUSES else None,
        x_range=(start, end) if start is not None and end is not None else None,
    )


def _market_or_none(ticker: str, queryset: Any = None) -> Market | None:
    qs = queryset if queryset is not None else Market.objects.all()
    market: Market | None = qs.filter(ticker=ticker).first()
    return market


@require_GET
@vary_on_headers("HX-Request")
def market_detail(request: HtmxHttpRequest, ticker: str) -> HttpResponse:
    market = _market_or_none(ticker, Market.objects.with_event())
    if market is None:
        return _not_found(request, "market", ticker)
    form = ChartRangeForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, describe_errors(form))
    chart_range = form.cleaned_data["range"]
    now = timezone.now()
    snapshots = list(market.snapshots.newest_first().defer("raw")[:RECENT_SNAPSHOTS])
    chart_url = reverse("markets:market-chart", args=[market.ticker])
    data_version = market.last_snapshot_at.isoformat() if market.last_snapshot_at else ""
    context = {
        **_common(now),
        "market": market,
        "spread": book_spread(market.yes_bid, market.yes_ask),
        "change": market.change_24h,
        "snapshots": snapshots,
        "chart_range": chart_range,
        "chart_ranges": [(key, label) for key, (label, _) in CHART_RANGES.items()],
        "chart_src": f"{chart_url}?range={chart_range}",
        # The chart is re-fetched only when this changes, not on every poll of the fragment.
        "chart_version": f"{chart_range}:{data_version}",
        "series": market.event.series,
    }
    return _render_page(request, "markets/market.html", "markets/_market.html", context)


@require_GET
def market_chart(request: HttpRequest, ticker: str) -> HttpResponse:
    """The price chart's Plotly figure as JSON (fetched by charts.js on load and range change)."""
    market = _market_or_none(
        ticker, Market.objects.only("id", "ticker", "status", "last_snapshot_at", "close_time")
    )
    if market is None:
        return _json({"error": f"No market with ticker {ticker!r} is stored."}, status_code=404)
    form = ChartRangeForm(request.GET)
    if not form.is_valid():
        return _json({"error": "; ".join(describe_errors(form))}, status_code=400)
    figure = price_figure(market, form.cleaned_data["range"], timezone.now())
    return _json(figure)


def _json(payload: Any, *, status_code: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status_code, content_type="application/json")


# --------------------------------------------------------------------------------------------------
# One event
# --------------------------------------------------------------------------------------------------


def _strike_order(market: Market) -> tuple[Decimal | float, Decimal | float, str]:
    # "Below X" (cap only) first, ranges by floor, "above X" (floor only) last; then by ticker.
    floor = market.floor_strike if market.floor_strike is not None else float("-inf")
    cap = market.cap_strike if market.cap_strike is not None else float("inf")
    return floor, cap, market.ticker


def outcome_label(market: Market) -> str:
    """What distinguishes this market within its event: the yes subtitle, else its strike."""
    if market.yes_sub_title:
        return market.yes_sub_title
    if market.subtitle:
        return market.subtitle
    floor, cap = market.floor_strike, market.cap_strike
    if floor is not None and cap is not None:
        return f"{floor.normalize():f}–{cap.normalize():f}"
    if floor is not None:
        return f"> {floor.normalize():f}"
    if cap is not None:
        return f"< {cap.normalize():f}"
    return market.ticker.rsplit("-", 1)[-1]


@require_GET
@vary_on_headers("HX-Request")
def event_detail(request: HtmxHttpRequest, event_ticker: str) -> HttpResponse:
    event = Event.objects.select_related("series").filter(ticker=event_ticker).first()
    if event is None:
        return _not_found(request, "event", event_ticker)
    if request.GET:
        # The page takes no parameters; say so rather than silently ignore a typo'd one.
        unknown = ", ".join(sorted(request.GET))
        return _bad_request(request, [f"This page takes no query parameters (got {unknown})."])
    markets = sorted(
        event.markets.with_quote_metrics().defer("raw", "rules_secondary", "price_ranges", "custom_strike"),
        key=_strike_order,
    )
    outcomes = [
        charts.Outcome(
            label=outcome_label(m),
            ticker=m.ticker,
            yes_bid=m.yes_bid,
            yes_ask=m.yes_ask,
            last_price=m.last_price,
        )
        for m in markets
    ]
    dist = charts.distribution(outcomes)
    context = {
        **_common(timezone.now()),
        "event": event,
        "rows": [
            {"market": m, "label": o.label, "implied": i}
            for m, o, i in zip(markets, outcomes, dist.implied, strict=True)
        ],
        "distribution": dist,
        "figure": charts.distribution_chart(outcomes, uirevision=event.ticker),
    }
    return _render_page(request, "markets/event.html", "markets/_event.html", context)


# --------------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------------


@require_GET
@vary_on_headers("HX-Request")
def status_page(request: HtmxHttpRequest) -> HttpResponse:
    if request.GET:
        unknown = ", ".join(sorted(request.GET))
        return _bad_request(request, [f"This page takes no query parameters (got {unknown})."])
    now = timezone.now()
    runs = list(PollRun.objects.order_by("-started_at")[:RECENT_POLL_RUNS])
    context = {
        **_common(now),
        "runs": runs,
        "scheduler": status.scheduler_state(now),
        "workers": status.worker_state(),
        "gaps": status.polling_gaps(since=now - GAP_WINDOW, now=now),
        "gap_window_days": GAP_WINDOW.days,
        "stale_after": status.stale_after(),
        "open_markets": Market.objects.open().count(),
        "snapshot_estimate": status.snapshot_count_estimate(),
    }
    return _render_page(request, "markets/status.html", "markets/_status.html", context)
