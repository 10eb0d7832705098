"""The "new backtest" form: parses text fields; runs.create_run does the validation that matters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import forms

from .strategies import STRATEGIES
from .sweeps import RANK_METRICS


def _pairs(text: str, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in text.replace("\n", ";").split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        key, sep, value = chunk.partition("=")
        if not sep or not key.strip():
            raise forms.ValidationError(
                f"Write {field} as name=value pairs separated by ';' (got {chunk!r})."
            )
        out[key.strip()] = value.strip()
    return out


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


class BacktestForm(forms.Form):
    strategy = forms.ChoiceField(choices=[(name, cls.label) for name, cls in sorted(STRATEGIES.items())])
    params = forms.CharField(
        required=False,
        label="Parameters",
        help_text="name=value; name=value (defaults for the rest)",
        widget=forms.TextInput(attrs={"placeholder": "window=60; entry_z=2"}),
    )
    grid = forms.CharField(
        required=False,
        label="Sweep grid",
        help_text="name=v1,v2; name=v1,v2 — leave empty for a single run",
        widget=forms.TextInput(attrs={"placeholder": "window=30,60,120; entry_z=1.5,2,2.5"}),
    )
    tickers = forms.CharField(required=False, label="Market tickers", help_text="comma-separated")
    event_tickers = forms.CharField(required=False, label="Event tickers", help_text="comma-separated")
    series_tickers = forms.CharField(required=False, label="Series tickers", help_text="comma-separated")
    start = forms.DateTimeField(
        required=False, label="Start (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        required=False, label="End (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    contracts = forms.DecimalField(initial=10, min_value=Decimal("0.01"), decimal_places=2, max_digits=12)
    capital = forms.DecimalField(initial=1000, min_value=Decimal(1), decimal_places=2, max_digits=16)
    cap_to_displayed_size = forms.BooleanField(required=False, label="Cap fills at displayed size")
    oos_fraction = forms.FloatField(initial=0.0, min_value=0.0, max_value=0.9, label="Out-of-sample fraction")
    rank_metric = forms.ChoiceField(
        choices=[(m, m) for m in RANK_METRICS], initial="sharpe", label="Rank sweeps by"
    )

    def clean_params(self) -> dict[str, str]:
        return _pairs(self.cleaned_data["params"], "parameters")

    def clean_grid(self) -> dict[str, list[str]]:
        return {k: _list(v) for k, v in _pairs(self.cleaned_data["grid"], "the grid").items()}

    def clean_tickers(self) -> list[str]:
        return _list(self.cleaned_data["tickers"])

    def clean_event_tickers(self) -> list[str]:
        return _list(self.cleaned_data["event_tickers"])

    def clean_series_tickers(self) -> list[str]:
        return _list(self.cleaned_data["series_tickers"])

    def _utc(self, name: str) -> datetime | None:
        value: datetime | None = self.cleaned_data.get(name)
        # The inputs are labelled UTC; USE_TZ already made them aware in the current zone, which is UTC.
        return value.astimezone(UTC) if value is not None else None

    def clean_start(self) -> datetime | None:
        return self._utc("start")

    def clean_end(self) -> datetime | None:
        return self._utc("end")

    def run_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            k: data[k]
            for k in (
                "strategy",
                "params",
                "grid",
                "tickers",
                "event_tickers",
                "series_tickers",
                "start",
                "end",
                "contracts",
                "capital",
                "cap_to_displayed_size",
                "oos_fraction",
                "rank_metric",
            )
        }
