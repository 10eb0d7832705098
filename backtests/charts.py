"""Plotly figure dicts for the backtest pages: built here, drawn by static/js/charts.js."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .models import BacktestRun, BacktestTrade

_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
    "height": 300,
    "hovermode": "x unified",
    "showlegend": False,
}


def equity_figure(run: BacktestRun) -> dict[str, Any]:
    xs = [t for t, _ in run.equity_curve]
    ys = [float(v) for _, v in run.equity_curve]
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": "Equity", "line": {"shape": "hv"}}
        ],
        "layout": {**_LAYOUT, "title": {"text": "Equity ($)"}, "yaxis": {"tickprefix": "$"}},
    }


def drawdown_figure(run: BacktestRun) -> dict[str, Any]:
    xs: list[str] = []
    ys: list[float] = []
    peak: Decimal | None = None
    for t, v in run.equity_curve:
        value = Decimal(v)
        peak = value if peak is None or value > peak else peak
        xs.append(t)
        ys.append(float((value / peak - 1) * 100) if peak else 0.0)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ys,
                "fill": "tozeroy",
                "name": "Drawdown",
                "line": {"color": "#b91c1c", "shape": "hv"},
            }
        ],
        "layout": {**_LAYOUT, "title": {"text": "Drawdown (%)"}, "yaxis": {"ticksuffix": "%"}},
    }


def price_figure(
    ticker: str, quotes: Sequence[tuple[str, float | None, float | None]], trades: Sequence[BacktestTrade]
) -> dict[str, Any]:
    """Yes bid/ask over time with each trade's entry (▲) and exit (▼) marked at its YES-equivalent price."""
    xs = [q[0] for q in quotes]

    def yes_price(side: str, price: Decimal) -> float:
        return float(price if side == "yes" else 1 - price)

    entries = list(trades)
    exits = list(trades)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": [q[1] for q in quotes],
                "name": "Yes bid",
                "line": {"shape": "hv", "color": "#15803d"},
                "connectgaps": False,
            },
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": [q[2] for q in quotes],
                "name": "Yes ask",
                "line": {"shape": "hv", "color": "#b91c1c"},
                "connectgaps": False,
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Entry",
                "x": [t.entry_time.isoformat() for t in entries],
                "y": [yes_price(t.side, t.entry_price) for t in entries],
                "text": [f"buy {t.contracts} {t.side.upper()} @ {t.entry_price}" for t in entries],
                "marker": {"symbol": "triangle-up", "size": 11, "color": "#1d4ed8"},
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Exit",
                "x": [t.exit_time.isoformat() for t in exits],
                "y": [yes_price(t.side, t.exit_price) for t in exits],
                "text": [f"{t.get_exit_reason_display()} @ {t.exit_price} (P&L {t.pnl:.2f})" for t in exits],
                "marker": {"symbol": "triangle-down", "size": 11, "color": "#7c3aed"},
            },
        ],
        "layout": {
            **_LAYOUT,
            "showlegend": True,
            "height": 360,
            "title": {"text": f"{ticker}: YES price and trades"},
            "yaxis": {"range": [0, 1], "tickformat": ".2f"},
        },
    }


def heatmap_figure(heatmap: dict[str, Any], metric: str) -> dict[str, Any]:
    """The sweep metric over two parameters; in sample on the left, out of sample on the right."""
    x = [str(v) for v in heatmap["x_values"]]
    y = [str(v) for v in heatmap["y_values"]]
    has_oos = heatmap.get("out_of_sample") is not None
    data: list[dict[str, Any]] = [
        {
            "type": "heatmap",
            "x": x,
            "y": y,
            "z": heatmap["in_sample"],
            "colorscale": "RdBu",
            "zmid": 0,
            "name": "In sample",
            "xaxis": "x",
            "yaxis": "y",
            "colorbar": {"title": {"text": metric}},
        }
    ]
    layout: dict[str, Any] = {
        **_LAYOUT,
        "height": 380,
        "xaxis": {
            "title": {"text": heatmap["x"]},
            "type": "category",
            "domain": [0, 0.45] if has_oos else [0, 1],
        },
        "yaxis": {"title": {"text": heatmap["y"]}, "type": "category"},
        "annotations": [
            {
                "text": "In sample",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.2 if has_oos else 0.5,
                "y": 1.08,
            }
        ],
    }
    if has_oos:
        data.append(
            {
                "type": "heatmap",
                "x": x,
                "y": y,
                "z": heatmap["out_of_sample"],
                "colorscale": "RdBu",
                "zmid": 0,
                "name": "Out of sample",
                "xaxis": "x2",
                "yaxis": "y2",
                "showscale": False,
            }
        )
        layout["xaxis2"] = {"title": {"text": heatmap["x"]}, "type": "category", "domain": [0.55, 1]}
        layout["yaxis2"] = {"type": "category", "anchor": "x2"}
        layout["annotations"].append(
            {
                "text": "Out of sample",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.8,
                "y": 1.08,
            }
        )
    return {"data": data, "layout": layout}
