"""How quotes, counts and times read on the pages: prices in cents (as Kalshi's own UI shows them).

Everything here is pure and exact: prices stay Decimal until they become text. The API and CSV
exports use `markets.formatting` (dollar strings) instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

NO_VALUE = "—"
_HUNDRED = Decimal(100)


def real_bid(value: Decimal | None) -> Decimal | None:
    """A yes bid, or None when there is none (Kalshi reports an empty bid side as 0)."""
    return value if value is not None and value > 0 else None


def real_ask(value: Decimal | None) -> Decimal | None:
    """A yes ask, or None when there is none (1 today; 0 in the Jan-2026 legacy shape)."""
    return value if value is not None and 0 < value < 1 else None


def book_spread(yes_bid: Decimal | None, yes_ask: Decimal | None) -> Decimal | None:
    """Ask minus bid, only when both sides are really quoted (never the fake 100¢ of an empty book)."""
    bid, ask = real_bid(yes_bid), real_ask(yes_ask)
    if bid is None or ask is None:
        return None
    return ask - bid


def mid(yes_bid: Decimal | None, yes_ask: Decimal | None) -> Decimal | None:
    bid, ask = real_bid(yes_bid), real_ask(yes_ask)
    if bid is None or ask is None:
        return None
    return (bid + ask) / 2


def to_cents(value: Decimal) -> Decimal:
    return value * _HUNDRED


def cents(value: Decimal | None) -> str:
    """0.41 → "41¢", 0.415 → "41.5¢", 0.0025 → "0.25¢"; None → "—"."""
    if value is None:
        return NO_VALUE
    return f"{_plain(to_cents(value))}¢"


def signed_cents(value: Decimal | None) -> str:
    """A price change: "+3¢", "−1.5¢" (a real minus sign), "0¢"."""
    if value is None:
        return NO_VALUE
    amount = to_cents(value)
    if amount > 0:
        return f"+{_plain(amount)}¢"
    if amount < 0:
        return f"−{_plain(-amount)}¢"
    return "0¢"


def percent(value: Decimal | None, places: int = 1) -> str:
    """A probability in dollars (0..1, or a sum above 1) as a percentage: 0.995 → "99.5%"."""
    if value is None:
        return NO_VALUE
    return f"{to_cents(value):.{places}f}%"


def _plain(amount: Decimal) -> str:
    # normalize() would print 40 as "4E+1"; quantize to the places actually used instead.
    text = f"{amount:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def compact_count(value: Decimal | None) -> str:
    """Contracts at a glance: 950 → "950", 27_215.5 → "27.2k", 1_234_567 → "1.23M"."""
    if value is None:
        return NO_VALUE
    number = abs(value)
    sign = "-" if value < 0 else ""
    for threshold, suffix in ((Decimal(1_000_000_000), "B"), (Decimal(1_000_000), "M"), (Decimal(1000), "k")):
        if number >= threshold:
            scaled = number / threshold
            places = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{sign}{scaled:.{places}f}{suffix}"
    if number == number.to_integral_value():
        return f"{sign}{number:.0f}"
    return f"{sign}{number:.2f}"


def duration(delta: timedelta) -> str:
    """A short human duration: "45s", "12m", "3h 05m", "2d 4h", "41d"."""
    seconds = int(abs(delta).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    if days < 10:
        return f"{days}d {hours}h"
    return f"{days}d"


def closes_in(close_time: datetime | None, now: datetime) -> str:
    """ "in 3h 05m", or "closed 2d 4h ago" once past."""
    if close_time is None:
        return NO_VALUE
    delta = close_time - now
    if delta.total_seconds() >= 0:
        return f"in {duration(delta)}"
    return f"closed {duration(delta)} ago"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    delta = now - moment
    if delta.total_seconds() < 1:
        return "just now"
    return f"{duration(delta)} ago"
