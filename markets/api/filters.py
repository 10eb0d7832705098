"""Query parameters of the API: filters, strict ordering and time parsing.

Every bad value is a 400 that names the parameter and says what is accepted; nothing is silently
ignored (django-filter and DRF both drop unknown ordering fields by default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import django_filters
from django import forms
from django.db.models import F, OrderBy, Q, QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from markets.models import (
    STATUS_FILTERS,
    EventQuerySet,
    MarketQuerySet,
    MarketResult,
    MarketStatus,
    PollOutcome,
    Series,
)

_UNIX_SECONDS = re.compile(r"-?\d{1,12}(\.\d{1,6})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME_HELP = (
    "ISO 8601 date-time (`2026-10-06T07:00:00Z`; no offset means UTC; write `+` as `%2B`), "
    "a date (`2026-10-06`, midnight UTC) or Unix seconds (`1791270000`)."
)


def parse_utc(value: str) -> datetime:
    """A point in time from an API parameter, as an aware UTC datetime; ValueError says why not."""
    text = value.strip()
    if _UNIX_SECONDS.fullmatch(text):
        seconds = Decimal(text)
        try:
            # Through timedelta, not float, so fractional seconds stay exact to the microsecond.
            return _EPOCH + timedelta(seconds=int(seconds), microseconds=int(seconds % 1 * 1_000_000))
        except (OverflowError, ValueError, InvalidOperation):
            raise ValueError(f"{text!r} is out of range as Unix seconds.") from None
    try:
        parsed = parse_datetime(text)
        if parsed is None:
            day = parse_date(text)
            if day is not None:
                return datetime.combine(day, time(), tzinfo=UTC)
    except ValueError:
        # Well-formed but impossible, e.g. month 13.
        raise ValueError(f"{text!r} is not a valid date or time.") from None
    if parsed is None:
        hint = " (a `+` in a URL reads as a space: write `%2B` or use `Z`)" if " " in text else ""
        raise ValueError(f"{text!r} is not a date-time{hint}. Use {TIME_HELP}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range.") from None


class UTCDateTimeFormField(forms.Field):
    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        try:
            return parse_utc(str(value))
        except ValueError as exc:
            # As a parameter: django-filter %-formats messages, and this one quotes the input.
            raise forms.ValidationError("%(reason)s", code="invalid", params={"reason": str(exc)}) from None


class UTCDateTimeFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = UTCDateTimeFormField


class ChoiceListFormField(forms.CharField):
    """A comma-separated list of values, each one of `choices`."""

    def __init__(self, *, allowed: Sequence[str], **kwargs: Any) -> None:
        self.allowed = tuple(allowed)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str] | None:
        text = super().clean(value)
        if not text:
            return None
        values = [v.strip() for v in text.split(",")]
        unknown = [v for v in values if v not in self.allowed]
        if unknown:
            raise forms.ValidationError(
                "Unknown value(s) %(unknown)s; choose from %(allowed)s (comma-separate several).",
                code="invalid_choice",
                params={"unknown": ", ".join(repr(v) for v in unknown), "allowed": ", ".join(self.allowed)},
            )
        return list(dict.fromkeys(values))


class ChoiceListFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = ChoiceListFormField


class CSVFormField(forms.CharField):
    def __init__(self, *, max_items: int, **kwargs: Any) -> None:
        self.max_items = max_items
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str] | None:
        text = super().clean(value)
        if not text:
            return None
        values = [v.strip() for v in text.split(",") if v.strip()]
        if len(values) > self.max_items:
            raise forms.ValidationError(
                "At most %(max)d values.", code="max_items", params={"max": self.max_items}
            )
        return values


class CSVFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = CSVFormField


class FilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """django-filter's FilterSet, with its form class built once per filter set class.

    `get_form_class` builds a form field for every filter, labels looked up from the model's
    verbose names, on every request: a third of the filtering cost of a market list. The fields
    here depend only on the declarations (no choices or querysets computed per request), and
    each form still deep-copies them, as any Django form does.
    """

    _form_classes: ClassVar[dict[type, type[forms.Form]]] = {}

    def get_form_class(self) -> type[forms.Form]:
        form_class = FilterSet._form_classes.get(type(self))
        if form_class is None:
            form_class = FilterSet._form_classes[type(self)] = super().get_form_class()
        return form_class


MARKET_STATUS_NAMES = (*STATUS_FILTERS, *(s for s in MarketStatus.values if s not in STATUS_FILTERS))


class MarketFilter(FilterSet):
    status = ChoiceListFilter(
        method="filter_status",
        allowed=MARKET_STATUS_NAMES,
        help_text=(
            "Kalshi's filter names `unopened`, `open`, `paused`, `closed` (closed, determined, disputed or "
            "amended: past close, not yet settled), `settled`, or a market status exactly as in the `status` "
            "field (`initialized`, `active`, `inactive`, `determined`, `disputed`, `amended`, `finalized`). "
            "Comma-separate several: `open,paused`."
        ),
    )
    series = django_filters.CharFilter(method="filter_series", help_text="Series ticker, e.g. `KXNFLGAME`.")
    event = django_filters.CharFilter(
        method="filter_event", help_text="Event ticker, e.g. `KXNFLGAME-26OCT08TBDAL`."
    )
    category = django_filters.CharFilter(
        method="filter_category", help_text="Series category, case-insensitive, e.g. `Sports`."
    )
    tickers = CSVFilter(
        field_name="ticker", lookup_expr="in", max_items=200, help_text="Comma-separated market tickers."
    )
    result = django_filters.ChoiceFilter(
        choices=[(v, v) for v in MarketResult.values if v],
        help_text="Settled outcome: `yes`, `no` or `scalar`.",
    )
    close_time_after = UTCDateTimeFilter(
        field_name="close_time", lookup_expr="gte", help_text=f"Closes at or after this time. {TIME_HELP}"
    )
    close_time_before = UTCDateTimeFilter(
        field_name="close_time", lookup_expr="lte", help_text=f"Closes at or before this time. {TIME_HELP}"
    )

    def filter_status(self, queryset: MarketQuerySet, name: str, value: list[str]) -> MarketQuerySet:
        return queryset.in_states(value)

    def filter_series(self, queryset: MarketQuerySet, name: str, value: str) -> MarketQuerySet:
        return queryset.for_series(value)

    def filter_event(self, queryset: MarketQuerySet, name: str, value: str) -> MarketQuerySet:
        return queryset.for_event(value)

    def filter_category(self, queryset: MarketQuerySet, name: str, value: str) -> MarketQuerySet:
        return queryset.in_category(value)

    def is_valid(self) -> bool:
        valid = bool(super().is_valid())
        if valid:
            after = self.form.cleaned_data.get("close_time_after")
            before = self.form.cleaned_data.get("close_time_before")
            if after and before and after > before:
                self.form.add_error("close_time_before", "Must not be earlier than close_time_after.")
                return False
        return valid


class EventFilter(FilterSet):
    series = django_filters.CharFilter(method="filter_series", help_text="Series ticker.")
    category = django_filters.CharFilter(method="filter_category", help_text="Category, case-insensitive.")

    def filter_series(self, queryset: EventQuerySet, name: str, value: str) -> EventQuerySet:
        return queryset.for_series(value)

    def filter_category(self, queryset: EventQuerySet, name: str, value: str) -> EventQuerySet:
        return queryset.in_category(value)


class SeriesFilter(FilterSet):
    category = django_filters.CharFilter(
        method="filter_category", help_text="Category, case-insensitive; matches any of `categories` too."
    )

    def filter_category(self, queryset: QuerySet[Series], name: str, value: str) -> QuerySet[Series]:
        return queryset.filter(Q(category__iexact=value) | Q(categories__contains=[value]))


class PollRunFilter(FilterSet):
    outcome = django_filters.ChoiceFilter(choices=PollOutcome.choices)
    started_after = UTCDateTimeFilter(
        field_name="started_at", lookup_expr="gte", help_text=f"Started at or after. {TIME_HELP}"
    )
    started_before = UTCDateTimeFilter(
        field_name="started_at", lookup_expr="lte", help_text=f"Started at or before. {TIME_HELP}"
    )


class FilterBackend(DjangoFilterBackend):  # type: ignore[misc]
    """django-filter's backend, skipped when a request has none of the filter set's parameters.

    Every FilterSet deep-copies its filters and builds a form class to validate the query string;
    on a plain `?page=2` that found every value empty, and an empty value filters nothing, for
    about 0.5 ms of each list request. The check is by prefix, so a filter whose widget reads
    suffixed parameters (`close_time_after`, a range's `_min`) still gets the full path.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: APIView) -> QuerySet[Any]:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and not any(
            param.startswith(name) for param in request.query_params for name in filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)  # type: ignore[no-any-return]


class StrictOrderingFilter(filters.OrderingFilter):
    """DRF's OrderingFilter, except that an unknown field is a 400 instead of being dropped.

    Descending orders put missing values last (a market that never traded is not the "most
    traded"), and the view's `ordering_tiebreak` field makes page boundaries deterministic.
    """

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: APIView) -> Sequence[str]:
        param = request.query_params.get(self.ordering_param)
        if param is None or not param.strip():
            return self.get_default_ordering(view) or []
        allowed = [name for name, _label in self.get_valid_fields(queryset, view, {"request": request})]
        terms = [t.strip() for t in param.split(",")]
        unknown = [t for t in terms if (t[1:] if t.startswith("-") else t) not in allowed]
        if unknown:
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Cannot order by {', '.join(repr(t) for t in unknown)}. "
                        f"Choose from {', '.join(allowed)}; "
                        "prefix `-` for descending, comma-separate several."
                    ]
                }
            )
        return list(dict.fromkeys(terms))

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: APIView) -> QuerySet[Any]:
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        exprs: list[OrderBy] = []
        names = set()
        for term in ordering:
            name = term.lstrip("-")
            names.add(name)
            exprs.append(
                F(name).desc(nulls_last=True) if term.startswith("-") else F(name).asc(nulls_last=True)
            )
        tiebreak = getattr(view, "ordering_tiebreak", None)
        if tiebreak and tiebreak not in names:
            exprs.append(F(tiebreak).asc())
        return queryset.order_by(*exprs)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        fields = ", ".join(f"`{name}`" for name in getattr(view, "ordering_fields", []))
        default = ",".join(getattr(view, "ordering", []))
        params[0]["description"] = (
            f"Sort by {fields}; prefix `-` for descending, comma-separate several (default `{default}`)."
        )
        return params


class SearchFilter(filters.SearchFilter):
    """DRF's SearchFilter, documenting which fields a term is matched against."""

    def get_search_terms(self, request: Request) -> list[str]:
        try:
            return super().get_search_terms(request)
        except ValidationError as exc:
            # Name the parameter, like every other 400.
            raise ValidationError({self.search_param: exc.detail}) from None

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        fields = ", ".join(f"`{f}`" for f in getattr(view, "search_fields", []))
        params[0]["description"] = (
            f"Case-insensitive substring match on {fields}; several words must all match."
        )
        return params
