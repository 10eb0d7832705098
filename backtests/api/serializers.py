from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from backtests.models import BacktestRun, BacktestTrade
from backtests.strategies import STRATEGIES
from backtests.sweeps import RANK_METRICS
from markets.formatting import dollars


class BacktestRunSerializer(serializers.ModelSerializer[BacktestRun]):
    url = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = BacktestRun
        fields = [
            "id",
            "url",
            "strategy",
            "kind",
            "params",
            "grid",
            "rank_metric",
            "oos_fraction",
            "tickers",
            "event_tickers",
            "series_tickers",
            "start",
            "end",
            "contracts",
            "capital",
            "cap_to_displayed_size",
            "status",
            "progress",
            "progress_message",
            "error",
            "warnings",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "markets_count",
            "quotes_count",
            "metrics",
            "split_metrics",
        ]
        read_only_fields = fields

    def get_url(self, obj: BacktestRun) -> str:
        return obj.get_absolute_url()

    def get_duration_seconds(self, obj: BacktestRun) -> float | None:
        return obj.duration.total_seconds() if obj.duration else None


class BacktestRunDetailSerializer(BacktestRunSerializer):
    class Meta(BacktestRunSerializer.Meta):
        fields = [*BacktestRunSerializer.Meta.fields, "timings", "equity_curve", "sweep_results"]
        read_only_fields = fields


class BacktestTradeSerializer(serializers.ModelSerializer[BacktestTrade]):
    entry_price = serializers.SerializerMethodField()
    exit_price = serializers.SerializerMethodField()
    contracts = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    fees = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    pnl = serializers.DecimalField(max_digits=18, decimal_places=8, coerce_to_string=True)

    class Meta:
        model = BacktestTrade
        fields = [
            "id",
            "ticker",
            "side",
            "contracts",
            "entry_time",
            "entry_price",
            "exit_time",
            "exit_price",
            "exit_reason",
            "fees",
            "pnl",
        ]

    def get_entry_price(self, obj: BacktestTrade) -> str | None:
        return dollars(obj.entry_price)

    def get_exit_price(self, obj: BacktestTrade) -> str | None:
        return dollars(obj.exit_price)


class RunInputSerializer(serializers.Serializer[dict[str, Any]]):
    strategy = serializers.ChoiceField(choices=sorted(STRATEGIES))
    params = serializers.DictField(required=False, default=dict)
    grid = serializers.DictField(child=serializers.ListField(min_length=1), required=False, default=dict)
    tickers = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list)
    event_tickers = serializers.ListField(
        child=serializers.CharField(max_length=150), required=False, default=list
    )
    series_tickers = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list
    )
    start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    contracts = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01"), required=False, default=Decimal(10)
    )
    capital = serializers.DecimalField(
        max_digits=16, decimal_places=2, min_value=Decimal(1), required=False, default=Decimal(1000)
    )
    cap_to_displayed_size = serializers.BooleanField(required=False, default=False)
    oos_fraction = serializers.FloatField(min_value=0, max_value=0.9, required=False, default=0.0)
    rank_metric = serializers.ChoiceField(choices=list(RANK_METRICS), required=False, default="sharpe")


class RunCreatedSerializer(serializers.Serializer[BacktestRun]):
    id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField(source="get_absolute_url")
