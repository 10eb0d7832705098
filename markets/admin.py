from __future__ import annotations

import json
from functools import partial
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import Combinable
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html

from .models import (
    BackfillProgress,
    Event,
    HistoryRun,
    Market,
    MarketSnapshot,
    PollRun,
    Series,
    Trade,
)


class EstimatedCountPaginator(Paginator[Any]):
    """Counts without scanning millions of rows (the admin's slowest query on big tables).

    Unfiltered: PostgreSQL's planner estimate (pg_class.reltuples). Filtered: an exact count up to
    COUNT_LIMIT rows (`SELECT count(*) FROM (... LIMIT n)`), and past that the planner's estimate
    for the filtered query. Page links beyond the real end are possible and harmless.
    """

    COUNT_LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor != "postgresql" or not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.where:
            estimate = _table_estimate(queryset.model._meta.db_table)
            if estimate > self.COUNT_LIMIT:
                return estimate
        bounded = queryset.order_by()[: self.COUNT_LIMIT + 1].count()
        if bounded <= self.COUNT_LIMIT:
            return bounded
        return max(bounded, _plan_estimate(queryset.order_by()))


def _table_estimate(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def _plan_estimate(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def pretty_json(value: Any) -> str:
    if value is None:
        return "—"
    return format_html(
        "<pre style='white-space:pre-wrap;max-width:60em'>{}</pre>", json.dumps(value, indent=2)
    )


class RawJsonMixin:
    @admin.display(description="Raw JSON")
    def raw_pretty(self, obj: Any) -> str:
        return pretty_json(obj.raw)


@admin.register(Series)
class SeriesAdmin(RawJsonMixin, admin.ModelAdmin[Series]):
    list_display = ["ticker", "title", "category", "fee_type", "fee_multiplier", "synced_at"]
    list_filter = ["category", "fee_type"]
    search_fields = ["ticker", "title"]
    readonly_fields = ["raw_pretty", "created_at"]
    exclude = ["raw"]


@admin.register(Event)
class EventAdmin(RawJsonMixin, admin.ModelAdmin[Event]):
    list_display = ["ticker", "title", "series", "category", "synced_at"]
    search_fields = ["ticker", "title"]
    raw_id_fields = ["series"]
    readonly_fields = ["raw_pretty", "created_at"]
    exclude = ["raw"]
    show_full_result_count = False


BACKFILL_TASK_TICKERS = 500


@admin.action(description="Backfill hourly history of the selected markets (runs on Celery)")
def queue_backfill(modeladmin: admin.ModelAdmin[Market], request: HttpRequest, queryset: Any) -> None:
    from .tasks import backfill_markets

    tickers = list(queryset.values_list("ticker", flat=True))
    for start in range(0, len(tickers), BACKFILL_TASK_TICKERS):
        batch = tickers[start : start + BACKFILL_TASK_TICKERS]
        transaction.on_commit(partial(backfill_markets.delay, batch, period=60))
    modeladmin.message_user(
        request,
        f"Queued a backfill of {len(tickers)} market(s). Its progress and outcome appear under "
        "History runs; running it again later only adds what is missing.",
    )


@admin.register(Market)
class MarketAdmin(RawJsonMixin, admin.ModelAdmin[Market]):
    actions = [queue_backfill]
    list_display = [
        "ticker",
        "title",
        "status",
        "yes_bid",
        "yes_ask",
        "last_price",
        "volume_24h",
        "close_time",
    ]
    list_filter = ["status", "result", "market_type"]
    search_fields = ["ticker", "title", "event__ticker"]
    raw_id_fields = ["event"]
    readonly_fields = ["raw_pretty", "quote_digest", "last_snapshot_at", "first_seen_at"]
    exclude = ["raw"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(MarketSnapshot)
class MarketSnapshotAdmin(RawJsonMixin, admin.ModelAdmin[MarketSnapshot]):
    """Read-only, and fast on a table of tens of millions of rows.

    * counts: EstimatedCountPaginator, no full result count, no facet counts;
    * order: newest id first (walks the primary key backwards); for one market, newest capture
      first (walks the (market, captured_at, source) index backwards);
    * search: an exact ticker is resolved to its market id first, so the plan is one index range;
    * date hierarchy: the changelist turns year/month/day into a captured_at range (served by the
      BRIN index from migration 0002), and the drill-down links come from EXISTS probes per
      period (templates/admin/markets/marketsnapshot/change_list.html) instead of Django's
      MIN/MAX and SELECT DISTINCT date_trunc(...) over the whole table.
    """

    list_display = [
        "market",
        "captured_at",
        "source",
        "yes_bid",
        "yes_ask",
        "last_price",
        "volume",
        "open_interest",
    ]
    list_filter = ["source"]
    list_select_related = ["market"]
    search_fields = ["=market__ticker"]
    search_help_text = "Exact market ticker, e.g. KXNFLGAME-26OCT08TBDAL-DAL"
    raw_id_fields = ["market"]
    date_hierarchy = "captured_at"
    ordering = ["-id"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    exclude = ["raw"]

    def get_readonly_fields(self, request: HttpRequest, obj: MarketSnapshot | None = None) -> list[str]:
        return [f.name for f in MarketSnapshot._meta.fields if f.name != "raw"] + ["raw_pretty"]

    def get_ordering(self, request: HttpRequest) -> list[str | Combinable]:
        if request.GET.get("q") or request.GET.get("market__id__exact"):
            return ["-captured_at", "-source"]
        if "captured_at__day" in request.GET:
            # A day's rows come from the BRIN index and are sorted; walking the primary key
            # backwards would first step over every newer (or later backfilled) row. For a year
            # or a month the key walk finds 100 rows at once.
            return ["-captured_at", "-id"]
        return ["-id"]

    def date_probe_queryset(self, changelist: ChangeList) -> tuple[QuerySet[MarketSnapshot], bool]:
        """The rows whose dates the drill-down offers (the searched market's, else all), and
        whether probes should use bitmap scans (yes across all markets: the BRIN index; no for
        one market, whose (market, captured_at) index range stops at the first row).

        Other filters (source) are left out on purpose: probing for a rare source inside a
        period has no index to use and would scan the period. A link may then lead to a period
        with no row of that source; the list says so.
        """
        queryset = MarketSnapshot.objects.all()
        ticker = changelist.query.strip()
        market_id = changelist.params.get("market__id__exact")
        if isinstance(market_id, list):
            market_id = market_id[-1]
        if ticker:
            market_id = Market.objects.filter(ticker=ticker).values_list("id", flat=True).first()
            if market_id is None:
                return queryset.none(), False
        if market_id:
            return queryset.filter(market_id=market_id), False
        return queryset, True

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method != "GET" or connection.vendor != "postgresql":
            return super().changelist_view(request, extra_context)
        # The planner assumes matching rows are spread evenly, so for "LIMIT n" it likes to start
        # a sequential scan and expects to stop early; on a table in time order, with backfilled
        # rows appended last, that can read gigabytes. No page here wants a sequential scan of
        # the snapshot table, so for this request it is a last resort (SET LOCAL ends with the
        # transaction). The response is rendered inside it, where its queries actually run.
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
            response = super().changelist_view(request, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[MarketSnapshot], search_term: str
    ) -> tuple[QuerySet[MarketSnapshot], bool]:
        ticker = search_term.strip()
        if not ticker:
            return queryset, False
        market_id = Market.objects.filter(ticker=ticker).values_list("id", flat=True).first()
        return (queryset.filter(market_id=market_id) if market_id else queryset.none()), False

    # Snapshots are an observed record: nobody edits history by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MarketSnapshot | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MarketSnapshot | None = None) -> bool:
        return False


@admin.register(PollRun)
class PollRunAdmin(admin.ModelAdmin[PollRun]):
    list_display = [
        "started_at",
        "outcome",
        "duration",
        "pages",
        "markets_seen",
        "snapshots_written",
        "unchanged_skipped",
        "errors",
        "requests",
    ]
    list_filter = ["outcome", "trigger"]
    date_hierarchy = "started_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PollRun | None = None) -> bool:
        return False


# --- History -----------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Records written by jobs: for reading, never for editing by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HistoryRun)
class HistoryRunAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "kind", "outcome", "trigger", "duration", "summary", "requests", "errors"]
    list_filter = ["kind", "outcome", "trigger"]
    date_hierarchy = "started_at"
    show_full_result_count = False


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["trade_id", "market", "created_time", "yes_price", "count", "taker_outcome_side"]
    list_filter = ["taker_outcome_side", "is_block_trade"]
    list_select_related = ["market"]
    search_fields = ["=market__ticker", "=trade_id"]
    raw_id_fields = ["market"]
    date_hierarchy = "created_time"
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(BackfillProgress)
class BackfillProgressAdmin(ReadOnlyAdmin):
    list_display = ["market", "kind", "covered_from", "covered_until", "volume_at_until", "updated_at"]
    list_filter = ["kind"]
    list_select_related = ["market"]
    search_fields = ["=market__ticker"]
    raw_id_fields = ["market"]
    show_full_result_count = False
