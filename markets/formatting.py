"""How prices and counts are written out in pages, the API and CSV exports."""

from __future__ import annotations

from decimal import Decimal

_FOUR_PLACES = Decimal("0.0001")


def dollars(value: Decimal | None) -> str | None:
    """A price as Kalshi writes it: at least 4 decimals ("0.4100"), more only for sub-tick prices."""
    if value is None:
        return None
    if value == value.quantize(_FOUR_PLACES):
        return str(value.quantize(_FOUR_PLACES))
    return str(value.normalize())


def contracts(value: Decimal | None) -> str | None:
    """A contract count with exactly 2 decimals ("2843.05"), as Kalshi's *_fp strings."""
    if value is None:
        return None
    return str(value.quantize(Decimal("0.01")))
