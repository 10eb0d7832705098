"""The insights pages' filter forms: query parameters in, `markets.insights` keyword arguments out.

Every field is optional and falls back to the function's default, so `/insights/calibration/`
with no parameters is a valid request; anything present but wrong is a form error (a 400).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django import forms

from . import insights

SPREADS = {"0.05": "5¢", "0.10": "10¢", "0.20": "20¢", "any": "Any spread"}


def _choices(options: dict[str, timedelta]) -> list[tuple[str, str]]:
    return [(name, name) for name in options]


class FilterForm(forms.Form):
    # What an absent or empty parameter means: shown in the form and passed to the function alike.
    defaults: ClassVar[dict[str, str]] = {}

    def shown(self) -> dict[str, str]:
        """Every field's value as typed (the template escapes it), or its default."""
        return {name: self.data.get(name) or self.defaults.get(name, "") for name in self.fields}

    def value(self, name: str) -> Any:
        """A cleaned value, or the field's default (call after `is_valid()`)."""
        return self.cleaned_data.get(name) or self.defaults.get(name)


class CalibrationForm(FilterForm):
    defaults = {"horizon": insights.DEFAULT_HORIZON, "bins": str(insights.DEFAULT_BINS)}

    horizon = forms.ChoiceField(
        choices=_choices(insights.HORIZONS), required=False, help_text="Mid this long before close."
    )
    bins = forms.IntegerField(required=False, min_value=insights.MIN_BINS, max_value=insights.MAX_BINS)
    series = forms.CharField(required=False, max_length=100, strip=True)
    category = forms.CharField(required=False, max_length=100, strip=True)
    closed_after = forms.DateField(
        required=False, help_text="Markets that closed on or after this day (UTC)."
    )
    closed_before = forms.DateField(
        required=False, help_text="Markets that closed on or before this day (UTC)."
    )
    max_quote_age = forms.ChoiceField(
        choices=[("", "Any age"), *_choices(insights.QUOTE_AGES)],
        required=False,
        help_text="Leave out quotes older than this at the horizon.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        after, before = data.get("closed_after"), data.get("closed_before")
        if after and before and after > before:
            self.add_error("closed_before", "Must not be earlier than “closed after”.")
        return data

    def calibration_kwargs(self) -> dict[str, Any]:
        """Arguments for `insights.calibration` (call after `is_valid()`)."""
        data = self.cleaned_data
        after, before = data.get("closed_after"), data.get("closed_before")
        return {
            "horizon": insights.HORIZONS[self.value("horizon")],
            "bins": data.get("bins") or insights.DEFAULT_BINS,
            "series": data.get("series") or None,
            "category": data.get("category") or None,
            "closed_after": datetime.combine(after, time(), tzinfo=UTC) if after else None,
            # The whole day, to its last microsecond.
            "closed_before": datetime.combine(before, time.max, tzinfo=UTC) if before else None,
            "max_quote_age": insights.QUOTE_AGES.get(data.get("max_quote_age") or ""),
        }


class MoversForm(FilterForm):
    defaults = {
        "window": insights.DEFAULT_MOVER_WINDOW,
        "max_spread": str(insights.DEFAULT_MOVER_SPREAD),
        "limit": str(insights.DEFAULT_MOVERS),
    }

    window = forms.ChoiceField(choices=_choices(insights.MOVER_WINDOWS), required=False)
    series = forms.CharField(required=False, max_length=100, strip=True)
    category = forms.CharField(required=False, max_length=100, strip=True)
    max_spread = forms.ChoiceField(choices=list(SPREADS.items()), required=False)
    limit = forms.IntegerField(required=False, min_value=1, max_value=insights.MAX_MOVERS)

    def movers_kwargs(self) -> dict[str, Any]:
        """Arguments for `insights.movers` (call after `is_valid()`)."""
        data = self.cleaned_data
        spread = self.value("max_spread")
        return {
            "window": insights.MOVER_WINDOWS[self.value("window")],
            "series": data.get("series") or None,
            "category": data.get("category") or None,
            "max_spread": None if spread == "any" else Decimal(spread),
            "limit": data.get("limit") or insights.DEFAULT_MOVERS,
        }
