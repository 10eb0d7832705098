from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import BacktestRun, BacktestTrade


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin[BacktestRun]):
    list_display = [
        "id",
        "strategy",
        "kind",
        "status",
        "progress_percent",
        "selection_label",
        "net_pnl",
        "created_at",
        "created_by",
    ]
    list_filter = ["status", "kind", "strategy"]
    search_fields = ["strategy", "tickers", "event_tickers", "series_tickers"]
    date_hierarchy = "created_at"
    raw_id_fields = ["created_by"]
    readonly_fields = [
        "status",
        "progress",
        "progress_message",
        "error",
        "started_at",
        "finished_at",
        "timings",
        "markets_count",
        "quotes_count",
        "pretty_metrics",
        "pretty_split_metrics",
        "warnings",
        "trades_link",
    ]
    exclude = ["metrics", "split_metrics", "equity_curve", "sweep_results"]

    @admin.display(description="trades")
    def trades_link(self, obj: BacktestRun) -> str:
        # A link rather than an inline: a run can have tens of thousands of trades.
        url = reverse("admin:backtests_backtesttrade_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{} trades</a>', url, obj.trades.count())

    @admin.display(description="progress")
    def progress_percent(self, obj: BacktestRun) -> str:
        return f"{obj.progress:.0%}"

    @admin.display(description="net P&L")
    def net_pnl(self, obj: BacktestRun) -> Any:
        return obj.metrics.get("net_pnl", "—")

    @admin.display(description="metrics")
    def pretty_metrics(self, obj: BacktestRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))

    @admin.display(description="in/out of sample")
    def pretty_split_metrics(self, obj: BacktestRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.split_metrics, indent=2))


@admin.register(BacktestTrade)
class BacktestTradeAdmin(admin.ModelAdmin[BacktestTrade]):
    list_display = [
        "id",
        "run",
        "ticker",
        "side",
        "contracts",
        "entry_time",
        "entry_price",
        "exit_price",
        "exit_reason",
        "pnl",
    ]
    list_filter = ["side", "exit_reason"]
    search_fields = ["ticker"]
    raw_id_fields = ["run", "market"]
    list_select_related = ["run"]
    show_full_result_count = False
