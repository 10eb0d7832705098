from __future__ import annotations

from typing import Any

from django import template

from backtests.formatting import format_metric

register = template.Library()


@register.filter
def metric(metrics: dict[str, Any] | None, name: str) -> str:
    """A metric formatted for people: percentages, durations, 3 decimals."""
    if not metrics:
        return "—"
    return format_metric(name, metrics.get(name))


@register.filter
def signed_class(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "up" if number > 0 else "down" if number < 0 else ""
