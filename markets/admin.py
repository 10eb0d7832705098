from __future__ import annotations

import json
from functools import partial
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.http import HttpRequest
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


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Uses PostgreSQL's planner estimate instead of COUNT(*) for unfiltered big tables."""

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        if connection.vendor == "postgresql" and not object_list.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count


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
    raw_id_fields = ["market"]
    date_hierarchy = "captured_at"
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    exclude = ["raw"]

    def get_readonly_fields(self, request: HttpRequest, obj: MarketSnapshot | None = None) -> list[str]:
        return [f.name for f in MarketSnapshot._meta.fields if f.name != "raw"] + ["raw_pretty"]

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
