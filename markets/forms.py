"""Query-string parameters of the pages, validated so that a bad one is a 400 with a message."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.core.validators import RegexValidator

from .models import STATUS_GROUPS, TABLE_SORTS

PAGE_SIZE = 50
DEFAULT_STATUS = "open"
DEFAULT_SORT = "volume"

STATUS_LABELS = {
    "open": "Open",
    "upcoming": "Not yet open",
    "paused": "Paused",
    "closed": "Closed, awaiting settlement",
    "settled": "Settled",
    "all": "Any status",
}
SORT_LABELS = {
    "volume": "24 h volume",
    "movers": "Biggest movers (24 h)",
    "closing": "Closing soon",
    "spread": "Widest spread",
    "newest": "Newest",
}
assert STATUS_LABELS.keys() == STATUS_GROUPS.keys() and SORT_LABELS.keys() == TABLE_SORTS.keys()

# Chart ranges: name → (label, span; None means everything stored).
CHART_RANGES: dict[str, tuple[str, timedelta | None]] = {
    "1h": ("1 h", timedelta(hours=1)),
    "1d": ("1 d", timedelta(days=1)),
    "1w": ("1 w", timedelta(weeks=1)),
    "1m": ("1 m", timedelta(days=30)),
    "all": ("All", None),
}
DEFAULT_RANGE = "1w"

_ticker_chars = RegexValidator(
    r"^[A-Za-z0-9._-]*$", "Use letters, digits, dots, hyphens and underscores only, as Kalshi tickers do."
)


class MarketTableForm(forms.Form):
    """Search, filters, sort and page of the market table (all optional, all in the query string)."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    category = forms.CharField(required=False, max_length=100)
    series = forms.CharField(required=False, max_length=100, validators=[_ticker_chars])
    status = forms.ChoiceField(required=False, choices=list(STATUS_LABELS.items()))
    sort = forms.ChoiceField(required=False, choices=list(SORT_LABELS.items()))
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def clean_status(self) -> str:
        return self.cleaned_data["status"] or DEFAULT_STATUS

    def clean_sort(self) -> str:
        return self.cleaned_data["sort"] or DEFAULT_SORT

    def clean_page(self) -> int:
        return self.cleaned_data["page"] or 1

    def clean_series(self) -> str:
        return str(self.cleaned_data["series"]).upper()


class ChartRangeForm(forms.Form):
    range = forms.ChoiceField(required=False, choices=[(k, label) for k, (label, _) in CHART_RANGES.items()])

    def clean_range(self) -> str:
        return self.cleaned_data["range"] or DEFAULT_RANGE


def describe_errors(form: forms.Form) -> list[str]:
    """One readable sentence per bad parameter: "sort='fastest': Select a valid choice. …"."""
    messages = []
    for name, errors in form.errors.items():
        value = form.data.get(name, "")
        for error in errors:
            messages.append(f"{name}={value!r}: {error}")
    return messages
