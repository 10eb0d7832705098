"""Pagination with bounds that are enforced (a 400) rather than silently clamped."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.paginator import InvalidPage, Paginator
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView


def _bounded_page_size(request: Request, *, param: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(param)
    if raw is None or raw == "":
        return default
    if not _is_small_whole_number(raw) or not 1 <= int(raw) <= maximum:
        raise ValidationError({param: [f"Must be a whole number from 1 to {maximum}; got {raw!r}."]})
    return int(raw)


def _page_size_schema(param: str, default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": param,
        "required": False,
        "in": "query",
        "description": f"Results per page, 1 to {maximum} (default {default}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
    }


class _CountCache:
    """Each filtered list's COUNT(*) for API_COUNT_CACHE_SECONDS, in this process.

    Keyed by the SQL and parameters of the queryset's rows (ordering left out), so two requests
    share a count only when they count the same rows; paging through a list counts it once.
    """

    max_entries = 1000

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[float, int]] = {}

    def count(self, queryset: QuerySet[Any]) -> int:
        ttl: float = settings.API_COUNT_CACHE_SECONDS
        if ttl <= 0:
            return queryset.count()
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        key = (queryset.db, sql, *params)
        try:
            hash(key)
        except TypeError:  # a list parameter (an array lookup): not worth a cache key
            return queryset.count()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        count = queryset.count()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (now + ttl, count)
        return count

    def clear(self) -> None:
        self._entries.clear()


counts = _CountCache()


class _Paginator(Paginator[Any]):
    @cached_property
    def count(self) -> int:
        source = self.object_list
        return counts.count(source) if isinstance(source, QuerySet) else len(source)


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=N&page_size=M` with a total `count`; 100 per page, at most 1,000."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        return _bounded_page_size(
            request, param=self.page_size_query_param, default=self.page_size, maximum=self.max_page_size
        )

    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        self.request = request
        page_size = self.get_page_size(request)
        raw = request.query_params.get(self.page_query_param) or "1"
        if raw not in self.last_page_strings and not (_is_small_whole_number(raw) and int(raw) >= 1):
            raise ValidationError({self.page_query_param: [f"Must be a page number from 1; got {raw!r}."]})
        paginator = _Paginator(queryset, page_size)
        try:
            self.page = paginator.page(paginator.num_pages if raw in self.last_page_strings else int(raw))
        except InvalidPage:
            raise NotFound(
                f"Page {raw} is past the last page ({paginator.num_pages}); "
                "follow the `next` links or ask for page 1."
            ) from None
        # A view may turn the page's slice of the bare filtered queryset into plain rows with the
        # joins they need (see MarketViewSet.as_rows); the count runs without those joins.
        as_rows = getattr(view, "as_rows", None)
        rows = as_rows(self.page.object_list) if as_rows is not None else self.page.object_list
        # Evaluated once here: iterating the Page itself goes through Sequence.__iter__ and
        # Page.__getitem__'s checks item by item.
        self.page.object_list = list(rows)
        return list(self.page.object_list)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1.",
                "schema": {"type": "integer", "minimum": 1},
            },
            _page_size_schema(self.page_size_query_param, self.page_size, self.max_page_size),
        ]


class SnapshotCursorPagination(pagination.CursorPagination):
    """Opaque `cursor` links over a long history: stable while new snapshots arrive."""

    page_size = 1000
    page_size_query_param = "page_size"
    max_page_size = 10_000
    ordering = "captured_at"

    def get_page_size(self, request: Request) -> int:
        return _bounded_page_size(
            request, param=self.page_size_query_param, default=self.page_size, maximum=self.max_page_size
        )

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            bad = True
        else:
            # DRF checks the cursor's encoding but not its position, which is later compared with
            # captured_at: a forged position would fail inside the query instead.
            bad = (
                cursor is not None and cursor.position is not None and not _is_datetime(str(cursor.position))
            )
        if bad:
            raise ValidationError(
                {self.cursor_query_param: ["Not a cursor from this API; follow the `next`/`previous` links."]}
            )
        return cursor

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque cursor from a previous page's `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            _page_size_schema(self.page_size_query_param, self.page_size, self.max_page_size),
        ]


def _is_small_whole_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


def _is_datetime(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:
        return False
