"""Insights pages: the calibration reliability diagram and the movers. Thin: form in, one function, render.

Both pages answer htmx requests from their filter forms with just the results fragment, and a
bad parameter with a 400 that says what to fix (the pages' meta htmx-config lets htmx swap a 400).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from . import formatting, insight_charts, insights
from .insight_charts import percent
from .insight_forms import SPREADS, CalibrationForm, MoversForm
from .models import Market, Series


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _filter_choices() -> dict[str, Any]:
    """Series with settled markets and the categories in use, suggested by the filter inputs."""
    settled = Market.objects.settled().filter(event__series=OuterRef("pk"))
    return {
        "series_choices": list(
            Series.objects.filter(Exists(settled)).order_by("ticker").values_list("ticker", flat=True)[:2000]
        ),
        "category_choices": list(
            Series.objects.exclude(category="")
            .order_by("category")
            .values_list("category", flat=True)
            .distinct()
        ),
    }


def _render(
    request: HtmxHttpRequest, page: str, fragment: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    if request.htmx and not request.htmx.boosted:
        return render(request, fragment, context, status=status)
    return render(request, page, {**context, **_filter_choices()}, status=status)


def _points(value: Decimal | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


@require_GET
@vary_on_headers("HX-Request")
def calibration_page(request: HtmxHttpRequest) -> HttpResponse:
    form = CalibrationForm(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "current": form.shown(),
        "horizons": list(insights.HORIZONS),
        "quote_ages": list(insights.QUOTE_AGES),
        "min_bins": insights.MIN_BINS,
        "max_bins": insights.MAX_BINS,
        "grace_hours": int(insights.EARLY_CLOSE_GRACE.total_seconds() // 3600),
    }
    if not form.is_valid():
        return _render(
            request, "insights/calibration.html", "insights/_calibration.html", context, status=400
        )
    result = insights.calibration(**form.calibration_kwargs())
    context.update(
        result=result,
        horizon=insights.label_for(result.horizon, insights.HORIZONS),
        figure=insight_charts.calibration_figure(result),
        rows=[
            {
                "range": f"{percent(b.lower)}–{percent(b.upper)}",
                "count": b.count,
                "yes": b.yes,
                "implied": percent(b.mean_predicted),
                "observed": percent(b.observed),
                "interval": f"{percent(b.ci_low)}–{percent(b.ci_high)}",
                "gap": _points(b.observed - b.mean_predicted)
                if b.observed is not None and b.mean_predicted is not None
                else "–",
            }
            for b in result.bins
            if b.count
        ],
        summary={
            "brier": result.brier_score,
            "base_rate": percent(result.base_rate),
            "mean_predicted": percent(result.mean_predicted),
            "ece": _points(result.expected_calibration_error).lstrip("+"),
            "scalar_mean_value": formatting.dollars(result.scalar.mean_settlement_value),
            "scalar_mean_mid": formatting.dollars(result.scalar.mean_mid),
            "confidence": f"{result.confidence * 100:g}%",
        },
    )
    return _render(request, "insights/calibration.html", "insights/_calibration.html", context)


def _move_rows(moves: list[insights.Move]) -> list[dict[str, Any]]:
    return [
        {
            "move": m,
            "before": percent(m.price_before),
            "now": percent(m.price_now),
            "change": "–" if m.change is None else f"{m.change * 100:+.1f}¢",
            "direction": "" if not m.change else ("up" if m.change > 0 else "down"),
            "volume": formatting.contracts(m.volume) or "–",
        }
        for m in moves
    ]


@require_GET
@vary_on_headers("HX-Request")
def movers_page(request: HtmxHttpRequest) -> HttpResponse:
    form = MoversForm(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "current": form.shown(),
        "windows": list(insights.MOVER_WINDOWS),
        "spreads": SPREADS,
        "max_movers": insights.MAX_MOVERS,
    }
    if not form.is_valid():
        return _render(request, "insights/movers.html", "insights/_movers.html", context, status=400)
    result = insights.movers(**form.movers_kwargs())
    context.update(
        result=result,
        window=insights.label_for(result.window, insights.MOVER_WINDOWS),
        figure=insight_charts.movers_figure(result) if result.gainers or result.losers else None,
        tables=[
            ("Biggest gains", "gainers", _move_rows(result.gainers)),
            ("Biggest losses", "losers", _move_rows(result.losers)),
            ("Volume leaders", "volume", _move_rows(result.volume_leaders)),
        ],
    )
    return _render(request, "insights/movers.html", "insights/_movers.html", context)
