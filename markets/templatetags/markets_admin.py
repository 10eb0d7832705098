"""The snapshot admin's date hierarchy, built from cheap EXISTS probes instead of table scans."""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()

# Kalshi opened in July 2021: no market data can be older, so year probes start there.
FIRST_YEAR = 2021


def _has_rows(queryset: QuerySet[Any], field: str, start: datetime, end: datetime) -> bool:
    return queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end}).exists()


@contextmanager
def _bitmap_scans_only() -> Iterator[None]:
    """On PostgreSQL, make EXISTS probes use bitmap scans (the BRIN index, or the per-market
    B-tree) for the duration of the block.

    For `EXISTS (... LIMIT 1)` the planner prefers walking the primary key and stopping at the
    first match, assuming matches are spread evenly; in a time-ordered table a period's rows sit
    together, so that walk can cross millions of rows. A bitmap scan goes straight to them.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('enable_seqscan')")
        indexscan, seqscan = cursor.fetchone()
        cursor.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off")
        try:
            yield
        finally:
            cursor.execute(f"SET LOCAL enable_indexscan = {'on' if indexscan == 'on' else 'off'}")
            cursor.execute(f"SET LOCAL enable_seqscan = {'on' if seqscan == 'on' else 'off'}")


def years_with_rows(queryset: QuerySet[Any], field: str, now: datetime) -> list[int]:
    return [
        year
        for year in range(FIRST_YEAR, now.year + 1)
        if _has_rows(queryset, field, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC))
    ]


def months_with_rows(queryset: QuerySet[Any], field: str, year: int) -> list[int]:
    def bounds(month: int) -> tuple[datetime, datetime]:
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return start, end

    return [month for month in range(1, 13) if _has_rows(queryset, field, *bounds(month))]


def days_with_rows(queryset: QuerySet[Any], field: str, year: int, month: int) -> list[int]:
    first = datetime(year, month, 1, tzinfo=UTC)
    return [
        day
        for day in range(1, monthrange(year, month)[1] + 1)
        if _has_rows(queryset, field, first + timedelta(days=day - 1), first + timedelta(days=day))
    ]


@register.inclusion_tag("admin/date_hierarchy.html")
def snapshot_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """Same links and markup as Django's `{% date_hierarchy %}`; periods without rows are left out.

    The probed rows come from the model admin's `date_probe_queryset(cl)` when it has one.
    """
    probe = getattr(cl.model_admin, "date_probe_queryset", None)
    queryset, bitmap = probe(cl) if probe else (cl.queryset, False)
    if not bitmap:
        return _date_hierarchy(cl, queryset)
    with _bitmap_scans_only():
        return _date_hierarchy(cl, queryset)


def _date_hierarchy(cl: ChangeList, queryset: QuerySet[Any]) -> dict[str, Any]:
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year_lookup = cl.params.get(year_field)
    month_lookup = cl.params.get(month_field)
    day_lookup = cl.params.get(day_field)

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    try:
        year = int(year_lookup) if year_lookup else None
        month = int(month_lookup) if month_lookup else None
        day = int(day_lookup) if day_lookup else None
    except (TypeError, ValueError):
        return {"show": False}

    months: list[int] | None = None
    if year is None:
        years = years_with_rows(queryset, field, timezone.now())
        if len(years) != 1:
            return {
                "show": True,
                "back": None,
                "choices": [{"link": link({year_field: str(y)}), "title": str(y)} for y in years],
            }
        # One year of data: start one level down (and one more for a single month), as Django does.
        year = years[0]
        months = months_with_rows(queryset, field, year)
        if len(months) == 1:
            month = months[0]
    if year is not None and month is not None and day is not None:
        moment = datetime(year, month, day, tzinfo=UTC)
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(moment, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(moment, "MONTH_DAY_FORMAT"))}],
        }
    if year is not None and month is not None:
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d}),
                    "title": capfirst(
                        formats.date_format(datetime(year, month, d, tzinfo=UTC), "MONTH_DAY_FORMAT")
                    ),
                }
                for d in days_with_rows(queryset, field, year, month)
            ],
        }
    assert year is not None
    return {
        "show": True,
        "back": {"link": link({}), "title": _("All dates")},
        "choices": [
            {
                "link": link({year_field: year, month_field: m}),
                "title": capfirst(formats.date_format(datetime(year, m, 1, tzinfo=UTC), "YEAR_MONTH_FORMAT")),
            }
            for m in (months if months is not None else months_with_rows(queryset, field, year))
        ],
    }
