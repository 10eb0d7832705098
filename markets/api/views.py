"""Read-only JSON endpoints over the collected data. Markets, events and series are looked up by ticker."""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Prefetch, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import StreamingHttpResponse
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from markets.models import Event, Market, MarketSnapshot, PollRun, Series, SnapshotSource

from . import filters as api_filters
from .fields import contracts, dollars, iso_utc
from .pagination import SnapshotCursorPagination
from .renderers import CSVRenderer, JSONRenderer
from .serializers import (
    EventDetailSerializer,
    EventSerializer,
    EventSummarySerializer,
    MarketDetailSerializer,
    MarketSerializer,
    MarketSnapshotSerializer,
    PollRunSerializer,
    SeriesSerializer,
    SeriesSummarySerializer,
)


class LookupMixin:
    """`get_object` by a natural key, with a 404 that names what was not found.

    Filters are not applied to a detail lookup: `?status=open` on one market's URL does not hide it.
    """

    lookup_noun = "object"
    kwargs: dict[str, Any]
    lookup_field: str
    lookup_url_kwarg: str | None

    def get_object(self) -> Any:
        value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        obj = None
        # PostgreSQL rejects NUL in text, and no ticker contains one.
        if "\x00" not in value:
            try:
                obj = self.get_queryset().get(  # type: ignore[attr-defined]
                    **{self.lookup_field: value}
                )
            except (ObjectDoesNotExist, ValueError):  # ValueError: a non-numeric id
                obj = None
        if obj is None:
            raise NotFound(f"No {self.lookup_noun} with {self.lookup_field} {value!r}.")
        self.check_object_permissions(self.request, obj)  # type: ignore[attr-defined]
        return obj


# --------------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Markets with their latest quote",
        description=(
            'Prices are dollar strings (`"0.4100"`, sub-cent digits kept), counts contract strings '
            '(`"2843.05"`), times ISO 8601 UTC. Ordered by ticker unless `ordering` says otherwise; '
            "descending orders put markets without a value last."
        ),
    ),
    retrieve=extend_schema(
        summary="One market: metadata, latest quote, settlement and fees",
    ),
)
class MarketViewSet(LookupMixin, viewsets.ReadOnlyModelViewSet[Market]):
    """Markets with their latest quote, looked up by ticker."""

    lookup_field = "ticker"
    lookup_value_regex = r"[^/]+"  # tickers may contain dots, e.g. KXHIGHNY-24JAN01-B45.5
    lookup_noun = "market"
    filter_backends = [api_filters.FilterBackend, api_filters.SearchFilter, api_filters.StrictOrderingFilter]
    filterset_class = api_filters.MarketFilter
    search_fields = ["ticker", "title", "yes_sub_title", "event__title"]
    ordering_fields = [
        "ticker",
        "open_time",
        "close_time",
        "expiration_time",
        "updated_time",
        "yes_bid",
        "yes_ask",
        "last_price",
        "volume",
        "volume_24h",
        "open_interest",
    ]
    ordering = ["ticker"]
    ordering_tiebreak = "ticker"

    def get_serializer_class(self) -> type[MarketSerializer]:
        return MarketDetailSerializer if self.action == "retrieve" else MarketSerializer

    def get_queryset(self) -> QuerySet[Market]:
        if self.action == "retrieve":
            return Market.objects.with_event().only(*_detail_columns())
        return Market.objects.all()

    def as_rows(self, page: QuerySet[Market]) -> QuerySet[Market]:
        """A page (a sliced queryset) of markets as plain rows, for the list's serializer.

        Plain rows because building 100 Market objects costs more than the query, and tuples in
        `MarketSerializer.columns()` order because Django then builds no dict per row either. The
        page's markets are picked by id in a subquery and only those are joined to their event and
        series: joined first, a deep `?page=` joined every market it skipped (3,000 joins for
        page 30). Both levels order the same way, and the ordering always ends in the unique ticker.
        """
        markets = Market.objects.filter(pk__in=page.values("pk")).order_by(*page.query.order_by)
        return markets.values_list(*MarketSerializer.columns())


@functools.cache
def _detail_columns() -> tuple[str, ...]:
    """What one market's page reads: compiling the SQL costs per column, and the event's and
    series' `raw` JSON is large. A column missed here would still load (one query more each),
    and a test checks the detail stays one query."""
    own = [c for c in MarketDetailSerializer.columns() if LOOKUP_SEP not in c]
    return (
        *own,
        "price_ranges",
        *(f"event__{c}" for c in EventSummarySerializer.columns()),
        # Event.fee_type and fee_multiplier: the event's override, else the series' value.
        "event__fee_type_override",
        "event__fee_multiplier_override",
        *(f"event__series__{c}" for c in SeriesSummarySerializer.columns()),
    )


class SnapshotQuerySerializer(serializers.Serializer[dict[str, Any]]):
    start = serializers.CharField(
        required=False, help_text=f"Snapshots captured at or after this time. {api_filters.TIME_HELP}"
    )
    end = serializers.CharField(
        required=False, help_text=f"Snapshots captured at or before this time. {api_filters.TIME_HELP}"
    )
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named like Field.source
        choices=SnapshotSource.choices,
        required=False,
        help_text="Only snapshots from this source; by default polled, streamed and backfilled together.",
    )

    def validate_start(self, value: str) -> datetime:
        return _parse_time(value)

    def validate_end(self, value: str) -> datetime:
        return _parse_time(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "start" in attrs and "end" in attrs and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": ["Must not be earlier than start."]})
        return attrs


def _parse_time(value: str) -> datetime:
    try:
        return api_filters.parse_utc(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None


CSV_COLUMNS = MarketSnapshotSerializer.Meta.fields
_FORMATTERS: dict[str, Callable[[Any], str | None]] = {
    "captured_at": iso_utc,
    **dict.fromkeys(("yes_bid", "yes_ask", "no_bid", "no_ask", "last_price"), dollars),
    **dict.fromkeys(("yes_bid_size", "yes_ask_size", "volume", "volume_24h", "open_interest"), contracts),
}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@extend_schema_view(
    list=extend_schema(
        summary="A market's stored quotes over time",
        description=(
            "Oldest first (`ordering=-captured_at` for newest first), paginated with opaque cursors that "
            "stay valid while new snapshots arrive. `?format=csv` (or `Accept: text/csv`) streams every "
            "snapshot in the range as one CSV file instead, without pagination."
        ),
        parameters=[SnapshotQuerySerializer],
        responses={
            (200, "application/json"): MarketSnapshotSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description=f"Header row `{','.join(CSV_COLUMNS)}`, then one row per snapshot.",
            ),
        },
    )
)
class MarketSnapshotViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[MarketSnapshot]):
    """One market's quote history: JSON pages with cursors, or one streamed CSV file."""

    serializer_class = MarketSnapshotSerializer
    pagination_class = SnapshotCursorPagination
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    filter_backends = [api_filters.StrictOrderingFilter]
    ordering_fields = ["captured_at"]
    ordering = ["captured_at"]

    @cached_property
    def market(self) -> Market:
        ticker = self.kwargs["ticker"]
        market = None
        if "\x00" not in ticker:
            market = Market.objects.only("id", "ticker").filter(ticker=ticker).first()
        if market is None:
            raise NotFound(f"No market with ticker {ticker!r}.")
        return market

    @cached_property
    def params(self) -> dict[str, Any]:
        query = SnapshotQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        params: dict[str, Any] = query.validated_data
        return params

    def get_queryset(self) -> QuerySet[MarketSnapshot]:
        snapshots = MarketSnapshot.objects.for_market(self.market).between(
            self.params.get("start"), self.params.get("end")
        )
        if "source" in self.params:
            snapshots = snapshots.from_source(self.params["source"])
        return snapshots.values(*MarketSnapshotSerializer.columns())  # type: ignore[no-any-return]

    def list(  # type: ignore[override]
        self, request: Request, *args: Any, **kwargs: Any
    ) -> Response | StreamingHttpResponse:
        # Validate the market and the parameters before choosing between JSON pages and CSV.
        snapshots = self.filter_queryset(self.get_queryset())
        if request.accepted_renderer.format == "csv":
            return self.csv_response(snapshots)
        return super().list(request, *args, **kwargs)

    def csv_response(self, snapshots: QuerySet[MarketSnapshot]) -> StreamingHttpResponse:
        response = StreamingHttpResponse(_csv_rows(snapshots), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.csv_filename()}"'
        return response

    def csv_filename(self) -> str:
        parts = [_UNSAFE_FILENAME.sub("_", self.market.ticker), "snapshots"]
        for key in ("start", "end"):
            if key in self.params:
                parts.append(self.params[key].strftime("%Y%m%dT%H%M%SZ"))
        if "source" in self.params:
            parts.append(self.params["source"])
        return "_".join(parts) + ".csv"


def _csv_rows(snapshots: QuerySet[MarketSnapshot]) -> Iterator[str]:
    """The CSV body in chunks of about 64 kB, read through a server-side cursor."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    formatters = [_FORMATTERS.get(column) for column in CSV_COLUMNS]
    for row in snapshots.values_list(*CSV_COLUMNS).iterator(chunk_size=5000):
        writer.writerow(
            [
                "" if value is None else (fmt(value) if fmt else value)
                for value, fmt in zip(row, formatters, strict=True)
            ]
        )
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# Events, series, poll runs
# --------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Events"),
    retrieve=extend_schema(summary="One event with its markets and their latest quotes"),
)
class EventViewSet(LookupMixin, viewsets.ReadOnlyModelViewSet[Event]):
    """Events (a question with one or more markets), looked up by event ticker."""

    lookup_field = "ticker"
    lookup_url_kwarg = "event_ticker"
    lookup_value_regex = r"[^/]+"
    lookup_noun = "event"
    filter_backends = [api_filters.FilterBackend, api_filters.SearchFilter, api_filters.StrictOrderingFilter]
    filterset_class = api_filters.EventFilter
    search_fields = ["ticker", "title", "sub_title"]
    ordering_fields = ["ticker", "strike_date", "last_updated_ts", "market_count"]
    ordering = ["ticker"]
    ordering_tiebreak = "ticker"

    def get_serializer_class(self) -> type[EventSerializer]:
        return EventDetailSerializer if self.action == "retrieve" else EventSerializer

    def get_queryset(self) -> QuerySet[Event]:
        events = Event.objects.with_series().with_market_count()
        if self.action == "retrieve":
            markets = Market.objects.with_event().order_by("ticker")
            events = events.prefetch_related(Prefetch("markets", queryset=markets))
        return events


@extend_schema_view(
    list=extend_schema(summary="Series, with their fee fields"), retrieve=extend_schema(summary="One series")
)
class SeriesViewSet(LookupMixin, viewsets.ReadOnlyModelViewSet[Series]):
    """Series (a recurring kind of event) with the fee fields that apply to their markets."""

    serializer_class = SeriesSerializer
    lookup_field = "ticker"
    lookup_url_kwarg = "series_ticker"
    lookup_value_regex = r"[^/]+"
    lookup_noun = "series"
    filter_backends = [api_filters.FilterBackend, api_filters.SearchFilter, api_filters.StrictOrderingFilter]
    filterset_class = api_filters.SeriesFilter
    search_fields = ["ticker", "title"]
    ordering_fields = ["ticker", "title", "last_updated_ts"]
    ordering = ["ticker"]
    ordering_tiebreak = "ticker"

    def get_queryset(self) -> QuerySet[Series]:
        return Series.objects.defer("raw")


@extend_schema_view(
    list=extend_schema(summary="Poll cycles, newest first"), retrieve=extend_schema(summary="One poll cycle")
)
class PollRunViewSet(LookupMixin, viewsets.ReadOnlyModelViewSet[PollRun]):
    """The poller's log: one row per poll cycle with its counts and outcome."""

    serializer_class = PollRunSerializer
    lookup_field = "id"
    lookup_value_regex = r"[^/]+"
    lookup_noun = "poll run"
    filter_backends = [api_filters.FilterBackend, api_filters.StrictOrderingFilter]
    filterset_class = api_filters.PollRunFilter
    ordering_fields = ["started_at", "finished_at", "markets_seen", "snapshots_written", "errors"]
    ordering = ["-started_at"]
    ordering_tiebreak = "id"

    def get_queryset(self) -> QuerySet[PollRun]:
        return PollRun.objects.all()
