"""The backtests API: list, detail and trades are public; creating a run needs authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backtests import runs
from backtests.engine import BacktestError
from backtests.models import BacktestRun, RunStatus
from backtests.strategies import ParameterError
from backtests.tasks import execute_backtest_run
from markets.api.pagination import PageNumberPagination

from .serializers import (
    BacktestRunDetailSerializer,
    BacktestRunSerializer,
    BacktestTradeSerializer,
    RunCreatedSerializer,
    RunInputSerializer,
)

# The same `?page=N&page_size=M` pages, bounds and 400s as the markets API.
Pagination = PageNumberPagination
PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("page_size", int, description="Results per page, 1 to 1000 (default 100)."),
]


def _page_of(name: str, item: serializers.Serializer[Any]) -> serializers.Serializer[Any]:
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )


class ListQuerySerializer(serializers.Serializer[dict[str, Any]]):
    # DRF's CharField also refuses NUL characters, which PostgreSQL cannot compare against.
    status = serializers.CharField(required=False, allow_blank=True)
    strategy = serializers.CharField(required=False, allow_blank=True, max_length=100)

    def validate_status(self, value: str) -> str:
        if value and value not in RunStatus.values:
            raise ValidationError(f"must be one of {', '.join(RunStatus.values)}")
        return value


class BacktestListCreateApi(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        operation_id="backtests_list",
        tags=["backtests"],
        parameters=[
            OpenApiParameter("status", str, enum=RunStatus.values, description="Only runs in this status."),
            OpenApiParameter("strategy", str, description="Only runs of this strategy."),
            *PAGE_PARAMETERS,
        ],
        responses=_page_of("PaginatedBacktestRunList", BacktestRunSerializer(many=True)),
    )
    def get(self, request: Request) -> Response:
        query = ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = BacktestRun.objects.for_list()
        if run_status := query.validated_data.get("status"):
            qs = qs.filter(status=run_status)
        if strategy := query.validated_data.get("strategy"):
            qs = qs.filter(strategy=strategy)
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(BacktestRunSerializer(page, many=True).data)

    @extend_schema(
        operation_id="backtests_create",
        tags=["backtests"],
        request=RunInputSerializer,
        responses={201: RunCreatedSerializer},
    )
    def post(self, request: Request) -> Response:
        """Validate, save a queued run and hand it to a worker; returns its id at once."""
        data = RunInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = runs.create_run(**data.validated_data, created_by=request.user)
        except (ParameterError, runs.RunInputError, BacktestError) as exc:
            raise ValidationError({"detail": str(exc)}) from None
        # celery-types does not know Celery 5.4's delay_on_commit yet.
        execute_backtest_run.delay_on_commit(run.pk)  # type: ignore[attr-defined]
        return Response(RunCreatedSerializer(run).data, status=status.HTTP_201_CREATED)


class BacktestDetailApi(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        operation_id="backtests_retrieve", tags=["backtests"], responses=BacktestRunDetailSerializer
    )
    def get(self, request: Request, pk: int) -> Response:
        run = BacktestRun.objects.filter(pk=pk).first()
        if run is None:
            raise NotFound(f"No backtest run {pk}.")
        return Response(BacktestRunDetailSerializer(run).data)


class BacktestTradesApi(APIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        operation_id="backtests_trades_list",
        tags=["backtests"],
        parameters=PAGE_PARAMETERS,
        responses=_page_of("PaginatedBacktestTradeList", BacktestTradeSerializer(many=True)),
    )
    def get(self, request: Request, pk: int) -> Response:
        run = BacktestRun.objects.filter(pk=pk).only("pk").first()
        if run is None:
            raise NotFound(f"No backtest run {pk}.")
        paginator = Pagination()
        page = paginator.paginate_queryset(run.trades.all(), request, view=self)
        return paginator.get_paginated_response(BacktestTradeSerializer(page, many=True).data)
