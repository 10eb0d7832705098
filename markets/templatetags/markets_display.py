"""Template filters for quotes and times; thin wrappers over `markets.display`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import template

from markets import display

register = template.Library()


@register.filter
def cents(value: Decimal | None) -> str:
    return display.cents(value)


@register.filter
def bid_cents(value: Decimal | None) -> str:
    """A yes bid in cents, "—" when the bid side is empty."""
    return display.cents(display.real_bid(value))


@register.filter
def ask_cents(value: Decimal | None) -> str:
    """A yes ask in cents, "—" when the ask side is empty."""
    return display.cents(display.real_ask(value))


@register.filter
def signed_cents(value: Decimal | None) -> str:
    return display.signed_cents(value)


@register.filter
def change_class(value: Decimal | None) -> str:
    if value is None or value == 0:
        return ""
    return "up" if value > 0 else "down"


@register.filter
def percent(value: Decimal | None) -> str:
    return display.percent(value)


@register.filter
def compact(value: Decimal | None) -> str:
    return display.compact_count(value)


@register.filter
def closes_in(value: datetime | None, now: datetime) -> str:
    return display.closes_in(value, now)


@register.filter
def close_phrase(value: datetime | None, now: datetime) -> str:
    """ "closes in 3h 05m" or "closed 2d 4h ago"."""
    text = display.closes_in(value, now)
    return f"closes {text}" if text.startswith("in ") else text


@register.filter
def spread_cents(market: Any) -> str:
    """A market's (or snapshot's) spread in cents, "—" unless both sides are quoted."""
    return display.cents(display.book_spread(market.yes_bid, market.yes_ask))


@register.filter
def ago(value: datetime | None, now: datetime) -> str:
    return display.ago(value, now)


@register.filter
def utc(value: datetime | None) -> str:
    """ "2026-10-06 07:00:03 UTC" (the project stores and shows UTC only)."""
    if value is None:
        return display.NO_VALUE
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def seconds(value: object) -> str:
    """A timedelta as "1.23 s"."""
    total = getattr(value, "total_seconds", None)
    if total is None:
        return display.NO_VALUE
    return f"{total():.2f} s"


@register.filter
def duration(value: object) -> str:
    """A timedelta as "3h 05m"."""
    if not hasattr(value, "total_seconds"):
        return display.NO_VALUE
    return display.duration(value)  # type: ignore[arg-type]
