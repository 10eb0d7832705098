"""Backtest pages: list, launch form, run detail with live progress (HTMX) and results."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from markets.models import MarketSnapshot

from . import charts, runs
from .engine import BacktestError
from .formatting import METRIC_ROWS
from .forms import BacktestForm
from .models import BacktestRun, RunStatus
from .strategies import STRATEGIES, ParameterError, get_strategy
from .tasks import execute_backtest_run

TRADES_PER_PAGE = 100
PRICE_POINTS = 4000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
def run_list(request: HtmxHttpRequest) -> HttpResponse:
    runs_qs = BacktestRun.objects.for_list()
    status = request.GET.get("status", "")
    if status in RunStatus.values:
        runs_qs = runs_qs.filter(status=status)
    strategy = request.GET.get("strategy", "")
    if strategy in STRATEGIES:
        runs_qs = runs_qs.filter(strategy=strategy)
    page = Paginator(runs_qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "backtests/index.html",
        {
            "page": page,
            "statuses": RunStatus.choices,
            "strategies": sorted(STRATEGIES),
            "status": status,
            "strategy": strategy,
        },
    )


@require_http_methods(["GET", "POST"])
def run_new(request: HtmxHttpRequest) -> HttpResponse:
    if not (request.user.is_active and request.user.is_staff):
        # The project's only login page is the admin's, which admits staff; the API takes tokens.
        return redirect_to_login(request.get_full_path(), "/admin/login/")
    form = BacktestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = runs.create_run(**form.run_kwargs(), created_by=request.user)
        except (ParameterError, runs.RunInputError, BacktestError) as exc:
            form.add_error(None, str(exc))
        else:
            # celery-types does not know Celery 5.4's delay_on_commit yet.
            execute_backtest_run.delay_on_commit(run.pk)  # type: ignore[attr-defined]
            return redirect(run)
    strategies = [get_strategy(name) for name in sorted(STRATEGIES)]
    return render(request, "backtests/new.html", {"form": form, "strategies": strategies})


@require_GET
def run_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BacktestRun, pk=pk)
    context: dict[str, Any] = {"run": run, "metric_rows": METRIC_ROWS}
    if run.status == RunStatus.SUCCEEDED:
        context.update(_results(request, run))
    template = "backtests/_run.html" if request.htmx else "backtests/detail.html"
    return render(request, template, context)


def _results(request: HttpRequest, run: BacktestRun) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if run.is_sweep:
        results = run.sweep_results
        context["sweep_rows"] = results.get("rows", [])[:200]
        if results.get("heatmap"):
            context["heatmap_figure"] = charts.heatmap_figure(results["heatmap"], results["metric"])
        return context
    context["equity_figure"] = charts.equity_figure(run)
    context["drawdown_figure"] = charts.drawdown_figure(run)
    trades = run.trades.all()
    context["trades_page"] = Paginator(trades, TRADES_PER_PAGE).get_page(request.GET.get("page"))
    traded = list(trades.order_by("ticker").values_list("ticker", flat=True).distinct())
    context["traded_tickers"] = traded
    ticker = request.GET.get("market") or (traded[0] if traded else None)
    if ticker in traded:
        market_trades = list(trades.filter(ticker=ticker))
        market_id = market_trades[0].market_id
        quotes: list[tuple[str, float | None, float | None]] = []
        if market_id is not None:
            snaps = (
                MarketSnapshot.objects.for_market(market_id)
                .between(run.start, run.end)
                .order_by("captured_at")
            )
            rows = list(snaps.values_list("captured_at", "yes_bid", "yes_ask"))
            step = max(1, len(rows) // PRICE_POINTS)
            # Thinning keeps every trade visible: markers come from the trades, not the quotes.
            for at, bid, ask in rows[::step]:
                quotes.append(
                    (
                        at.isoformat(),
                        float(bid) if bid is not None and bid > 0 else None,
                        float(ask) if ask is not None and 0 < ask < 1 else None,
                    )
                )
        context["price_ticker"] = ticker
        context["price_figure"] = charts.price_figure(ticker, quotes, market_trades)
    return context
