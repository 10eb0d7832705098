"""Plotly figures as plain dicts, built from downsampled quote buckets and markets.

Pure functions: no ORM, no requests. `static/js/charts.js` draws whatever these return
with `Plotly.react`. Prices are plotted in cents (floats are fine here: they only become pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .display import cents, mid, percent, real_ask, real_bid, to_cents
from .timeseries import QuoteBucket

LIVE_SOURCES = frozenset({"poll", "websocket"})
COLORS = {
    "bid": "#15803d",
    "ask": "#b91c1c",
    "spread": "rgba(37, 99, 235, 0.18)",
    "range": "rgba(100, 116, 139, 0.14)",
    "last": "#1e3a8a",
    "backfill": "#a16207",
    "volume": "rgba(30, 58, 138, 0.55)",
    "volume_backfill": "rgba(161, 98, 7, 0.45)",
    "implied": "#2563eb",
    "implied_last": "#94a3b8",
}
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}


def _time(moment: datetime) -> str:
    # Naive UTC text: Plotly draws it as given, whatever the browser's time zone.
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _c(value: Decimal | None) -> float | None:
    return None if value is None else float(to_cents(value))


def _count(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _base_layout(*, uirevision: str) -> dict[str, Any]:
    return {
        "uirevision": uirevision,
        "font": _FONT,
        "margin": {"l": 56, "r": 16, "t": 12, "b": 40},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    }


def price_chart(
    buckets: Sequence[QuoteBucket],
    *,
    uirevision: str,
    break_after: timedelta | None = None,
    carry_in: QuoteBucket | None = None,
    extend_to: datetime | None = None,
    x_range: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Bid/ask band (closing quote per bucket, plus the bucket's low bid–high ask where scanned),
    last price (live and backfilled drawn apart) and volume traded per bucket underneath.

    `carry_in` is the quote in force when the range starts (drawn at its left edge, so a quiet
    market still shows a line); `extend_to` carries the last quote to that time (while the market
    is still polled, the quote is known to hold until now). `break_after`: a silence longer than
    this between two live points breaks the lines (the poller writes at least an hourly heartbeat,
    so a longer silence means nobody was watching).
    """
    # (x position, bucket, real bucket?) — carried quotes draw lines but no range or volume.
    points: list[tuple[datetime, QuoteBucket, bool]] = []
    if carry_in is not None and (not buckets or carry_in.time < buckets[0].time):
        points.append((x_range[0] if x_range else carry_in.time, carry_in, False))
    points.extend((b.time, b, True) for b in buckets)
    if extend_to is not None and points and extend_to > points[-1][0]:
        points.append((extend_to, points[-1][1], False))

    xs: list[str | None] = []
    low: list[float | None] = []
    high: list[float | None] = []
    bid: list[float | None] = []
    ask: list[float | None] = []
    last_live: list[float | None] = []
    last_backfill: list[float | None] = []
    previous: QuoteBucket | None = None
    for x, b, real in points:
        if (
            break_after is not None
            and previous is not None
            and previous is not b
            and previous.source in LIVE_SOURCES
            and b.source in LIVE_SOURCES
            and b.time - previous.time > break_after
        ):
            xs.append(_time(previous.time + (b.time - previous.time) / 2))
            for series in (low, high, bid, ask, last_live, last_backfill):
                series.append(None)
        live = b.source in LIVE_SOURCES
        xs.append(_time(x))
        low.append(_c(b.low_yes_bid) if real else None)
        high.append(_c(b.high_yes_ask) if real else None)
        bid.append(_c(real_bid(b.yes_bid)))
        ask.append(_c(real_ask(b.yes_ask)))
        last_live.append(_c(b.last_price) if live else None)
        last_backfill.append(_c(b.last_price) if not live else None)
        previous = b

    line = {"shape": "hv", "width": 1.5}
    cents_hover = "%{y}¢"
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "name": "Lowest bid in bucket",
            "x": xs,
            "y": low,
            "mode": "lines",
            "line": {"shape": "hv", "width": 0},
            "hoverinfo": "skip",
            "showlegend": False,
            "legendgroup": "range",
        },
        {
            "type": "scatter",
            "name": "Bid–ask range in bucket",
            "x": xs,
            "y": high,
            "mode": "lines",
            "line": {"shape": "hv", "width": 0},
            "fill": "tonexty",
            "fillcolor": COLORS["range"],
            "hoverinfo": "skip",
            "legendgroup": "range",
        },
        {
            "type": "scatter",
            "name": "Yes bid",
            "x": xs,
            "y": bid,
            "mode": "lines",
            "line": {**line, "color": COLORS["bid"]},
            "hovertemplate": cents_hover,
            "legendgroup": "quote",
        },
        {
            "type": "scatter",
            "name": "Yes ask",
            "x": xs,
            "y": ask,
            "mode": "lines",
            "line": {**line, "color": COLORS["ask"]},
            "fill": "tonexty",
            "fillcolor": COLORS["spread"],
            "hovertemplate": cents_hover,
            "legendgroup": "quote",
        },
        {
            "type": "scatter",
            "name": "Last price",
            "x": xs,
            "y": last_live,
            "mode": "lines",
            "line": {**line, "color": COLORS["last"], "width": 2},
            "hovertemplate": cents_hover,
        },
    ]
    if any(v is not None for v in last_backfill):
        data.append(
            {
                "type": "scatter",
                "name": "Last price (backfilled)",
                "x": xs,
                "y": last_backfill,
                "mode": "lines",
                "line": {**line, "color": COLORS["backfill"], "width": 2, "dash": "dot"},
                "hovertemplate": cents_hover,
            }
        )
    data.append(
        {
            "type": "bar",
            "name": "Volume traded",
            "x": [_time(b.start) for b in buckets],
            # A negative delta means the cumulative volume went down between two rows (mixed
            # sources disagreeing); drawing it as negative trading would mislead.
            "y": [_count(b.volume_traded) if (b.volume_traded or 0) >= 0 else None for b in buckets],
            "width": [b.width.total_seconds() * 1000 for b in buckets],
            "offset": 0,
            "marker": {
                "color": [
                    COLORS["volume"] if b.source in LIVE_SOURCES else COLORS["volume_backfill"]
                    for b in buckets
                ]
            },
            "yaxis": "y2",
            "hovertemplate": "%{y:,.2f} contracts",
        }
    )

    layout = _base_layout(uirevision=uirevision)
    layout.update(
        {
            "hovermode": "x unified",
            "bargap": 0,
            "xaxis": {
                "type": "date",
                "title": {"text": "UTC"},
                "showgrid": False,
                "anchor": "y2",
                **({"range": [_time(x_range[0]), _time(x_range[1])]} if x_range else {"autorange": True}),
            },
            "yaxis": {
                "domain": [0.3, 1],
                "title": {"text": "Yes price"},
                "ticksuffix": "¢",
                "autorange": True,
                "zeroline": False,
            },
            "yaxis2": {"domain": [0, 0.22], "title": {"text": "Volume"}, "rangemode": "tozero"},
            "annotations": [],
        }
    )
    sampled = [b for b in buckets if not b.exact]
    if not points:
        layout["annotations"].append(_note("No snapshots in this range yet."))
    elif sampled:
        layout["annotations"].append(
            _note(
                f"Until {_time(sampled[-1].end)} UTC each bucket shows the quote at its end "
                "(history too dense to scan whole); later buckets also show their full bid–ask range.",
                y=1.12,
            )
        )
    return {"data": data, "layout": layout}


def _note(text: str, *, y: float = 0.65) -> dict[str, Any]:
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": 0,
        "y": y,
        "xanchor": "left",
        "showarrow": False,
        "font": {"size": 11, "color": "#64748b"},
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    """One market of an event as the distribution chart needs it."""

    label: str
    ticker: str
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    last_price: Decimal | None


@dataclass(frozen=True, slots=True)
class Implied:
    """The implied probability of one outcome: the book's mid, or the last trade when one-sided."""

    value: Decimal | None
    basis: str  # "mid", "last" or "" (nothing to go on)


def implied_probability(yes_bid: Decimal | None, yes_ask: Decimal | None, last: Decimal | None) -> Implied:
    m = mid(yes_bid, yes_ask)
    if m is not None:
        return Implied(m, "mid")
    if last is not None and last > 0:
        return Implied(last, "last")
    return Implied(None, "")


@dataclass(frozen=True, slots=True)
class Distribution:
    implied: list[Implied]
    total: Decimal  # sum of implied probabilities (mids, or last where one-sided)
    total_bid: Decimal | None  # what selling YES on every outcome fetches; None if a bid is missing
    total_ask: Decimal | None  # what buying YES on every outcome costs; None if an ask is missing


def _total_if_complete(values: Sequence[Decimal | None]) -> Decimal | None:
    """The sum, or None if any value is missing (a sum over part of the book means nothing)."""
    total = Decimal(0)
    for value in values:
        if value is None:
            return None
        total += value
    return total if values else None


def distribution(outcomes: Sequence[Outcome]) -> Distribution:
    implied = [implied_probability(o.yes_bid, o.yes_ask, o.last_price) for o in outcomes]
    bids = [real_bid(o.yes_bid) for o in outcomes]
    asks = [real_ask(o.yes_ask) for o in outcomes]
    return Distribution(
        implied=implied,
        total=sum((i.value for i in implied if i.value is not None), Decimal(0)),
        total_bid=_total_if_complete(bids),
        total_ask=_total_if_complete(asks),
    )


def distribution_chart(outcomes: Sequence[Outcome], *, uirevision: str) -> dict[str, Any]:
    """Implied probability per outcome as bars (mid; last trade where the book is one-sided),
    with the bid–ask spread as error bars."""
    dist = distribution(outcomes)
    labels = [o.label or o.ticker for o in outcomes]
    ys = [_c(i.value) for i in dist.implied]
    minus = []
    plus = []
    for o, i in zip(outcomes, dist.implied, strict=True):
        bid, ask = real_bid(o.yes_bid), real_ask(o.yes_ask)
        if i.basis == "mid" and bid is not None and ask is not None and i.value is not None:
            minus.append(float(to_cents(i.value - bid)))
            plus.append(float(to_cents(ask - i.value)))
        else:
            minus.append(0.0)
            plus.append(0.0)
    data = [
        {
            "type": "bar",
            "name": "Implied probability",
            "x": labels,
            "y": ys,
            "text": [percent(i.value) for i in dist.implied],
            "textposition": "outside",
            "cliponaxis": False,
            "customdata": [
                [cents(real_bid(o.yes_bid)), cents(real_ask(o.yes_ask)), i.basis or "none"]
                for o, i in zip(outcomes, dist.implied, strict=True)
            ],
            "hovertemplate": (
                "%{x}<br>%{y:.1f}% (%{customdata[2]})<br>"
                "bid %{customdata[0]} · ask %{customdata[1]}<extra></extra>"
            ),
            "marker": {
                "color": [
                    COLORS["implied"] if i.basis == "mid" else COLORS["implied_last"] for i in dist.implied
                ]
            },
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": plus,
                "arrayminus": minus,
                "color": "#475569",
                "thickness": 1,
                "width": 4,
            },
        }
    ]
    layout = _base_layout(uirevision=uirevision)
    layout.update(
        {
            "showlegend": False,
            "margin": {"l": 56, "r": 16, "t": 24, "b": 96},
            "xaxis": {"type": "category", "automargin": True, "tickangle": -30 if len(labels) > 6 else 0},
            "yaxis": {"title": {"text": "Implied probability"}, "ticksuffix": "%", "range": [0, 105]},
        }
    )
    if not outcomes:
        layout["annotations"] = [_note("This event has no markets stored yet.", y=0.5)]
    return {"data": data, "layout": layout}
