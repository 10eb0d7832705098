"""Plotly figure dicts for the insights pages and notebooks; drawn by static/js/charts.js.

Plain `{"data": [...], "layout": {...}}` dicts built from `markets.insights` results, so they are
unit-testable and the same figure serves the page (via json_script) and a notebook
(`plotly.graph_objects.Figure(calibration_figure(result))`). Coordinates are floats: a chart is
for the eye; the exact Decimals are in the tables and the API.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .insights import HORIZONS, Calibration, Move, Movers, label_for

GREEN, RED, BLUE, GREY = "#15803d", "#b91c1c", "#1d4ed8", "#6b7280"


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def percent(value: Decimal | None) -> str:
    """A probability for people: "70.0%"; "–" when there is none."""
    return "–" if value is None else f"{value * 100:.1f}%"


_pct = percent


def calibration_figure(result: Calibration) -> dict[str, Any]:
    """Reliability diagram: observed YES share per bin with CI bars, the diagonal, and counts per bin."""
    filled = [b for b in result.bins if b.count]
    horizon = label_for(result.horizon, HORIZONS)
    confidence = f"{result.confidence * 100:g}%"
    hover = [
        f"{_pct(b.lower)}–{_pct(b.upper)}: {b.count:,} markets, {b.yes:,} YES<br>"
        f"implied {_pct(b.mean_predicted)}, observed {_pct(b.observed)}<br>"
        f"{confidence} CI {_pct(b.ci_low)}–{_pct(b.ci_high)}"
        for b in filled
    ]
    above, below = [], []
    for b in filled:
        # Every non-empty bin has an observed share and an interval.
        assert b.observed is not None and b.ci_low is not None and b.ci_high is not None
        above.append(float(b.ci_high - b.observed))
        below.append(float(b.observed - b.ci_low))
    width = 1 / len(result.bins)
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "Markets per bin",
            "x": [float(b.lower) + width / 2 for b in result.bins],
            "y": [b.count for b in result.bins],
            "width": width * 0.9,
            "yaxis": "y2",
            "marker": {"color": GREY, "opacity": 0.25},
            "hovertemplate": "%{y:,} markets<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "Perfect calibration",
            "x": [0, 1],
            "y": [0, 1],
            "line": {"color": GREY, "dash": "dash", "width": 1},
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "markers+lines",
            "name": f"Observed ({confidence} Wilson CI)",
            "x": [_f(b.mean_predicted) for b in filled],
            "y": [_f(b.observed) for b in filled],
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": above,
                "arrayminus": below,
                "color": BLUE,
                "thickness": 1.5,
            },
            "marker": {"color": BLUE, "size": 8},
            "line": {"color": BLUE, "width": 1},
            "text": hover,
            "hovertemplate": "%{text}<extra></extra>",
        },
    ]
    layout: dict[str, Any] = {
        "height": 480,
        "margin": {"l": 60, "r": 60, "t": 30, "b": 60},
        "xaxis": {
            "title": {"text": f"Market-implied probability (mid {horizon} before close)"},
            "range": [0, 1],
            "tickformat": ".0%",
            "dtick": 0.1,
        },
        "yaxis": {"title": {"text": "Resolved YES"}, "range": [0, 1], "tickformat": ".0%", "dtick": 0.1},
        "yaxis2": {
            "title": {"text": "Markets"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
        "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "hovermode": "closest",
    }
    if result.is_empty:
        layout["annotations"] = [
            {
                "text": "No settled yes/no market has a usable quote at this horizon",
                "x": 0.5,
                "y": 0.5,
                "xref": "paper",
                "yref": "paper",
                "showarrow": False,
            }
        ]
    return {"data": data, "layout": layout}


def movers_figure(result: Movers) -> dict[str, Any]:
    """Horizontal bars of the biggest moves, in cents: gainers in green, losers in red."""
    moves: list[Move] = [*reversed(result.losers), *reversed(result.gainers)]
    cents = [float(m.change * 100) if m.change is not None else 0.0 for m in moves]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": cents,
                "y": [m.ticker for m in moves],
                "marker": {"color": [GREEN if c > 0 else RED for c in cents]},
                "text": [f"{_pct(m.price_before)} → {_pct(m.price_now)}" for m in moves],
                "hovertemplate": "%{y}<br>%{text} (%{x:+.1f}¢)<extra></extra>",
            }
        ],
        "layout": {
            "height": max(200, 24 * len(moves) + 80),
            "margin": {"l": 260, "r": 20, "t": 20, "b": 40},
            "xaxis": {"title": {"text": "Change of the mid (¢)"}, "zeroline": True},
            "yaxis": {"automargin": True},
            "showlegend": False,
        },
    }
