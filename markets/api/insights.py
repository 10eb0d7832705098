"""Calibration and movers over the API: `GET /api/v1/insights/calibration/` and `.../movers/`.

Each view validates its query parameters with an input serializer, calls one function from
`markets.insights`, and writes the resulting dataclass out through an output serializer.
Probabilities and prices are decimal strings like the rest of the API; counts are integers.
Mounted by kalshi_insights/urls.py at /api/v1/insights/.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from markets import insights

from .fields import ContractsField, DollarsField, UTCDateTimeField
from .filters import TIME_HELP, parse_utc

app_name = "insights-api"


def _utc(value: str) -> datetime:
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


class ProbabilityField(serializers.DecimalField):
    """A probability as a decimal string with 6 places ("0.700000")."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(max_digits=7, decimal_places=6, coerce_to_string=True, **kwargs)


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


class CalibrationQuerySerializer(serializers.Serializer[dict[str, Any]]):
    horizon = serializers.ChoiceField(
        choices=list(insights.HORIZONS),
        default=insights.DEFAULT_HORIZON,
        help_text="How long before each market's close its mid is read.",
    )
    bins = serializers.IntegerField(
        min_value=insights.MIN_BINS,
        max_value=insights.MAX_BINS,
        default=insights.DEFAULT_BINS,
        help_text="Number of equal-width probability bins.",
    )
    series = serializers.CharField(
        required=False, max_length=100, help_text="Series ticker, e.g. `KXMLBGAME`."
    )
    category = serializers.CharField(
        required=False, max_length=100, help_text="Series category, case-insensitive, e.g. `Sports`."
    )
    closed_after = serializers.CharField(
        required=False, help_text=f"Only markets that closed at or after this time. {TIME_HELP}"
    )
    closed_before = serializers.CharField(
        required=False, help_text=f"Only markets that closed at or before this time. {TIME_HELP}"
    )
    max_quote_age = serializers.ChoiceField(
        choices=list(insights.QUOTE_AGES),
        required=False,
        help_text="Leave out markets whose last quote by the horizon is older than this (`stale_quote`).",
    )

    def validate_closed_after(self, value: str) -> datetime:
        return _utc(value)

    def validate_closed_before(self, value: str) -> datetime:
        return _utc(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (
            "closed_after" in attrs
            and "closed_before" in attrs
            and attrs["closed_after"] > attrs["closed_before"]
        ):
            raise serializers.ValidationError({"closed_before": ["Must not be earlier than closed_after."]})
        return attrs


class CalibrationBinSerializer(serializers.Serializer[insights.CalibrationBin]):
    index = serializers.IntegerField()
    lower = ProbabilityField(help_text="Bins are [lower, upper); the last one includes 1.")
    upper = ProbabilityField()
    count = serializers.IntegerField(help_text="Markets whose implied probability fell in the bin.")
    yes = serializers.IntegerField(help_text="Of those, how many resolved YES.")
    mean_predicted = ProbabilityField(
        allow_null=True, help_text="Mean implied probability (mid); null if empty."
    )
    observed = ProbabilityField(allow_null=True, help_text="Share that resolved YES; null if empty.")
    ci_low = ProbabilityField(allow_null=True, help_text="Wilson score interval of `observed`.")
    ci_high = ProbabilityField(allow_null=True)


class CalibrationExclusionsSerializer(serializers.Serializer[insights.CalibrationExclusions]):
    closed_early = serializers.IntegerField()
    no_quote = serializers.IntegerField(help_text="No stored quote at or before close − horizon.")
    stale_quote = serializers.IntegerField(help_text="Only a quote older than `max_quote_age`.")
    empty_book = serializers.IntegerField(help_text="The quote had neither a bid nor an ask.")
    total = serializers.IntegerField()


class ScalarOutcomesSerializer(serializers.Serializer[insights.ScalarOutcomes]):
    count = serializers.IntegerField(help_text="Markets settled at a fair price (`result` = `scalar`).")
    mean_settlement_value = DollarsField(help_text="Mean YES payout in dollars.")
    with_quote = serializers.IntegerField(help_text="Of those, with a usable mid at the horizon.")
    mean_mid = DollarsField()


class CalibrationSerializer(serializers.Serializer[insights.Calibration]):
    horizon = serializers.SerializerMethodField(help_text="`1h`, `6h`, `1d`, `3d` or `1w`.")
    horizon_seconds = serializers.SerializerMethodField()
    markets = serializers.IntegerField(help_text="Settled yes/no markets that were binned.")
    yes = serializers.IntegerField()
    brier_score = ProbabilityField(
        allow_null=True, help_text="Mean of (mid − outcome)²; null without markets."
    )
    base_rate = ProbabilityField(allow_null=True, help_text="Share of binned markets that resolved YES.")
    mean_predicted = ProbabilityField(allow_null=True)
    expected_calibration_error = ProbabilityField(
        allow_null=True, help_text="Count-weighted mean of |observed − mean_predicted| over the bins."
    )
    confidence = serializers.FloatField(help_text="Confidence level of the intervals.")
    interval = serializers.CharField(help_text="How the intervals are computed: `wilson`.")
    bins = CalibrationBinSerializer(many=True)
    excluded = CalibrationExclusionsSerializer()
    scalar = ScalarOutcomesSerializer()
    series = serializers.CharField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    closed_after = UTCDateTimeField()
    closed_before = UTCDateTimeField()
    max_quote_age_seconds = serializers.SerializerMethodField()
    early_close_grace_seconds = serializers.SerializerMethodField(
        help_text="A market that may close early and closed off the minute grid more than this long "
        "before its expected expiration counts as closed early."
    )

    def get_horizon(self, obj: insights.Calibration) -> str:
        return insights.label_for(obj.horizon, insights.HORIZONS)

    def get_horizon_seconds(self, obj: insights.Calibration) -> int:
        return int(obj.horizon.total_seconds())

    def get_max_quote_age_seconds(self, obj: insights.Calibration) -> int | None:
        return _seconds(obj.max_quote_age)

    def get_early_close_grace_seconds(self, obj: insights.Calibration) -> int:
        return int(obj.early_close_grace.total_seconds())


class CalibrationApi(APIView):
    @extend_schema(
        operation_id="insights_calibration",
        tags=["insights"],
        summary="Calibration: implied probability before close against the outcome",
        description=(
            "A reliability diagram's data over settled markets. Each market's implied probability is the "
            "mid of its last stored quote at or before `close_time − horizon` (a missing side at its "
            "bound: no bid 0, no ask 1). Only markets that settled YES or NO and closed on schedule are "
            "binned; those left out are counted in `excluded` by reason, and fair-price (scalar) "
            "settlements are summarised in `scalar`. Intervals are Wilson score intervals at 95 %."
        ),
        parameters=[CalibrationQuerySerializer],
        responses=CalibrationSerializer,
    )
    def get(self, request: Request) -> Response:
        query = CalibrationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            result = insights.calibration(
                horizon=insights.HORIZONS[params["horizon"]],
                bins=params["bins"],
                series=params.get("series") or None,
                category=params.get("category") or None,
                closed_after=params.get("closed_after"),
                closed_before=params.get("closed_before"),
                max_quote_age=insights.QUOTE_AGES.get(params.get("max_quote_age") or ""),
            )
        except ValueError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(CalibrationSerializer(result).data)


# --------------------------------------------------------------------------------------------------
# Movers
# --------------------------------------------------------------------------------------------------


class MoversQuerySerializer(serializers.Serializer[dict[str, Any]]):
    window = serializers.ChoiceField(
        choices=list(insights.MOVER_WINDOWS),
        default=insights.DEFAULT_MOVER_WINDOW,
        help_text="`1h` compares stored snapshots; `24h` uses Kalshi's day-ago quote on each open market.",
    )
    series = serializers.CharField(required=False, max_length=100, help_text="Series ticker.")
    category = serializers.CharField(
        required=False, max_length=100, help_text="Series category, case-insensitive."
    )
    max_spread = serializers.DecimalField(
        max_digits=5,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal(1),
        default=insights.DEFAULT_MOVER_SPREAD,
        help_text="Compare only books at most this wide (dollars) at both ends; `1` compares all of them.",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=insights.MAX_MOVERS,
        default=insights.DEFAULT_MOVERS,
        help_text="Markets per list.",
    )


class MoveSerializer(serializers.Serializer[insights.Move]):
    ticker = serializers.CharField()
    title = serializers.CharField()
    subtitle = serializers.CharField()
    event_ticker = serializers.CharField()
    close_time = UTCDateTimeField()
    price_before = DollarsField(help_text="Mid at the start of the window; null without a usable quote.")
    price_now = DollarsField()
    change = DollarsField(help_text="`price_now − price_before`.")
    volume = ContractsField(help_text="Contracts traded in the window.")


class MoversSerializer(serializers.Serializer[insights.Movers]):
    window = serializers.SerializerMethodField(help_text="`1h` or `24h`.")
    window_seconds = serializers.SerializerMethodField()
    as_of = UTCDateTimeField(help_text="End of the window (for 24h: the newest poll).")
    basis = serializers.CharField(help_text="Where the prices and volumes come from.")
    max_spread = DollarsField()
    compared = serializers.IntegerField(help_text="Markets with a usable mid at both ends.")
    gainers = MoveSerializer(many=True)
    losers = MoveSerializer(many=True)
    volume_leaders = MoveSerializer(many=True)

    def get_window(self, obj: insights.Movers) -> str:
        return insights.label_for(obj.window, insights.MOVER_WINDOWS)

    def get_window_seconds(self, obj: insights.Movers) -> int:
        return int(obj.window.total_seconds())


class MoversApi(APIView):
    @extend_schema(
        operation_id="insights_movers",
        tags=["insights"],
        summary="Movers: biggest moves of the mid and volume leaders among open markets",
        description=(
            "Over `1h`: the mid of the last stored snapshot at or before now against the last one at or "
            "before an hour ago, for markets open now; volume is the change of the cumulative volume "
            "between them. Over `24h`: Kalshi's own day-ago yes bid/ask (`previous_yes_bid/ask`) against "
            "each open market's latest quote, and Kalshi's 24-hour volume. Empty books are never compared."
        ),
        parameters=[MoversQuerySerializer],
        responses=MoversSerializer,
    )
    def get(self, request: Request) -> Response:
        query = MoversQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            result = insights.movers(
                window=insights.MOVER_WINDOWS[params["window"]],
                series=params.get("series") or None,
                category=params.get("category") or None,
                max_spread=params["max_spread"],
                limit=params["limit"],
            )
        except ValueError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(MoversSerializer(result).data)


urlpatterns = [
    path("calibration/", CalibrationApi.as_view(), name="calibration"),
    path("movers/", MoversApi.as_view(), name="movers"),
]
