"""What the API returns: markets with their latest quote, snapshots, events, series, poll runs."""

from __future__ import annotations

from rest_framework import serializers

from markets.models import QUOTE_FIELDS, Event, Market, MarketSnapshot, PollOutcome, PollRun, Series

from .fields import (
    ContractsField,
    DollarsField,
    FastReadSerializer,
    PlainDecimalField,
    UTCDateTimeField,
)

# --------------------------------------------------------------------------------------------------
# Series and events
# --------------------------------------------------------------------------------------------------


class SettlementSourceSerializer(serializers.Serializer[dict[str, str]]):
    name = serializers.CharField()
    url = serializers.CharField()


class SeriesSerializer(FastReadSerializer[Series]):
    category = serializers.CharField(help_text="Kalshi's category, e.g. `Sports`.")
    categories = serializers.ListField(child=serializers.CharField())
    tags = serializers.ListField(child=serializers.CharField())
    fee_type = serializers.CharField(
        help_text="`quadratic`, `quadratic_with_maker_fees`, `quadratic_with_combo_maker_fees` or `flat`; "
        "empty until the series has been read from Kalshi."
    )
    fee_multiplier = PlainDecimalField(max_digits=8, decimal_places=4, allow_null=False)
    settlement_sources = SettlementSourceSerializer(many=True, read_only=True)
    last_updated_ts = UTCDateTimeField()
    synced_at = UTCDateTimeField(help_text="When Kalshi's /series last returned it.")

    class Meta:
        model = Series
        fields = [
            "ticker",
            "title",
            "category",
            "categories",
            "tags",
            "frequency",
            "fee_type",
            "fee_multiplier",
            "contract_url",
            "contract_terms_url",
            "settlement_sources",
            "last_updated_ts",
            "synced_at",
        ]
        read_only_fields = fields


class SeriesSummarySerializer(FastReadSerializer[Series]):
    fee_multiplier = PlainDecimalField(max_digits=8, decimal_places=4, allow_null=False)

    class Meta:
        model = Series
        fields = ["ticker", "title", "category", "fee_type", "fee_multiplier"]
        read_only_fields = fields


class EventSummarySerializer(FastReadSerializer[Event]):
    class Meta:
        model = Event
        fields = ["ticker", "title", "sub_title", "category"]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------------


class MarketSerializer(FastReadSerializer[Market]):
    """A market in a list: identity, state, key times and its latest quote."""

    event_ticker = serializers.CharField(source="event.ticker", read_only=True)
    series_ticker = serializers.CharField(
        source="event.series.ticker",
        read_only=True,
        allow_null=True,
        help_text="Null while the market's event has not been read from Kalshi yet.",
    )
    status = serializers.CharField(
        read_only=True,
        help_text="Kalshi's market status: `initialized`, `active`, `inactive`, `closed`, `determined`, "
        "`disputed`, `amended` or `finalized`.",
    )
    result = serializers.CharField(
        read_only=True, help_text="`yes`, `no`, `scalar` (settled at `settlement_value`) or empty."
    )
    open_time = UTCDateTimeField()
    close_time = UTCDateTimeField()
    expiration_time = UTCDateTimeField()
    yes_bid = DollarsField(help_text="Best YES bid in dollars (`0.0000` when there is none).")
    yes_ask = DollarsField(help_text="Best YES ask in dollars (`1.0000` when there is none).")
    no_bid = DollarsField()
    no_ask = DollarsField()
    last_price = DollarsField(help_text="Last traded YES price in dollars.")
    previous_price = DollarsField(help_text="Last traded price a day ago.")
    yes_bid_size = ContractsField()
    yes_ask_size = ContractsField()
    volume = ContractsField(help_text="Contracts traded over the market's life.")
    volume_24h = ContractsField()
    open_interest = ContractsField()
    settlement_value = DollarsField(help_text="YES payout in dollars once determined (NO pays 1 minus it).")
    updated_time = UTCDateTimeField(help_text="Kalshi's `updated_time`: the last metadata change.")
    quote_captured_at = UTCDateTimeField(
        source="last_snapshot_at", help_text="When this quote was read from Kalshi and stored."
    )

    class Meta:
        model = Market
        fields = [
            "ticker",
            "event_ticker",
            "series_ticker",
            "market_type",
            "title",
            "yes_sub_title",
            "no_sub_title",
            "status",
            "result",
            "open_time",
            "close_time",
            "expiration_time",
            "yes_bid",
            "yes_ask",
            "no_bid",
            "no_ask",
            "last_price",
            "previous_price",
            "yes_bid_size",
            "yes_ask_size",
            "volume",
            "volume_24h",
            "open_interest",
            "settlement_value",
            "updated_time",
            "quote_captured_at",
        ]
        read_only_fields = fields


class PriceRangeSerializer(serializers.Serializer[dict[str, str]]):
    start = serializers.CharField(help_text="Dollars, e.g. `0.0000`.")
    end = serializers.CharField(help_text="Dollars, e.g. `1.0000`.")
    step = serializers.CharField(help_text="Tick size in dollars, e.g. `0.0100`.")


class MarketDetailSerializer(MarketSerializer):
    """One market: everything in the list plus metadata, rules, strikes, settlement and fees."""

    event = EventSummarySerializer(read_only=True)
    series = SeriesSummarySerializer(source="event.series", read_only=True, allow_null=True)
    fee_type = serializers.CharField(
        source="event.fee_type",
        read_only=True,
        help_text="The fee schedule that applies: the event's override, else the series' `fee_type`.",
    )
    fee_multiplier = PlainDecimalField(
        source="event.fee_multiplier",
        max_digits=8,
        decimal_places=4,
        help_text="The event's override, else the series' `fee_multiplier`.",
    )
    previous_yes_bid = DollarsField(help_text="YES bid a day ago.")
    previous_yes_ask = DollarsField(help_text="YES ask a day ago.")
    notional_value = DollarsField(allow_null=False, help_text="Payout per contract in dollars.")
    floor_strike = PlainDecimalField(max_digits=24, decimal_places=8)
    cap_strike = PlainDecimalField(max_digits=24, decimal_places=8)
    custom_strike = serializers.JSONField(read_only=True, allow_null=True)
    price_ranges = PriceRangeSerializer(many=True, read_only=True, help_text="The market's tick grid.")
    created_time = UTCDateTimeField()
    expected_expiration_time = UTCDateTimeField()
    latest_expiration_time = UTCDateTimeField()
    occurrence_datetime = UTCDateTimeField()
    settlement_ts = UTCDateTimeField(help_text="When the market settled.")
    first_seen_at = UTCDateTimeField(allow_null=False, help_text="When this platform first stored it.")

    class Meta:
        model = Market
        fields = [
            *MarketSerializer.Meta.fields,
            "subtitle",
            "event",
            "series",
            "fee_type",
            "fee_multiplier",
            "previous_yes_bid",
            "previous_yes_ask",
            "notional_value",
            "settlement_ts",
            "expiration_value",
            "strike_type",
            "floor_strike",
            "cap_strike",
            "functional_strike",
            "custom_strike",
            "rules_primary",
            "rules_secondary",
            "created_time",
            "expected_expiration_time",
            "latest_expiration_time",
            "occurrence_datetime",
            "can_close_early",
            "early_close_condition",
            "settlement_timer_seconds",
            "price_level_structure",
            "price_ranges",
            "first_seen_at",
        ]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------


class MarketSnapshotSerializer(FastReadSerializer[MarketSnapshot]):
    """One stored quote of a market."""

    captured_at = UTCDateTimeField(allow_null=False)
    source = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.source
        read_only=True,
        help_text="`poll` (REST poller), `websocket` (streamed) or `backfill` (from Kalshi's candlesticks).",
    )
    sequence = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="WebSocket sequence number; null for other sources."
    )
    yes_bid = DollarsField()
    yes_ask = DollarsField()
    no_bid = DollarsField()
    no_ask = DollarsField()
    last_price = DollarsField()
    yes_bid_size = ContractsField()
    yes_ask_size = ContractsField()
    volume = ContractsField()
    volume_24h = ContractsField()
    open_interest = ContractsField()

    class Meta:
        model = MarketSnapshot
        fields = ["captured_at", "source", "sequence", *QUOTE_FIELDS]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


class EventSerializer(FastReadSerializer[Event]):
    series_ticker = serializers.CharField(source="series.ticker", read_only=True, allow_null=True)
    fee_type = serializers.CharField(
        read_only=True, help_text="The event's fee override, else its series' `fee_type`."
    )
    fee_multiplier = PlainDecimalField(max_digits=8, decimal_places=4)
    strike_date = UTCDateTimeField()
    last_updated_ts = UTCDateTimeField()
    synced_at = UTCDateTimeField(help_text="When Kalshi's /events last returned it; null if not yet.")
    market_count = serializers.IntegerField(read_only=True, help_text="Markets stored for this event.")

    class Meta:
        model = Event
        fields = [
            "ticker",
            "series_ticker",
            "title",
            "sub_title",
            "category",
            "mutually_exclusive",
            "collateral_return_type",
            "strike_date",
            "strike_period",
            "fee_type",
            "fee_multiplier",
            "last_updated_ts",
            "synced_at",
            "market_count",
        ]
        read_only_fields = fields


class EventDetailSerializer(EventSerializer):
    series = SeriesSummarySerializer(read_only=True, allow_null=True)
    markets = MarketSerializer(many=True, read_only=True)

    class Meta:
        model = Event
        fields = [*EventSerializer.Meta.fields, "series", "markets"]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------------
# Poll runs
# --------------------------------------------------------------------------------------------------


class PollRunSerializer(FastReadSerializer[PollRun]):
    started_at = UTCDateTimeField(allow_null=False)
    finished_at = UTCDateTimeField(help_text="Null while the cycle is running.")
    outcome = serializers.ChoiceField(choices=PollOutcome.choices, read_only=True)
    error_messages = serializers.ListField(  # type: ignore[assignment]  # named like Field.error_messages
        child=serializers.CharField(), read_only=True, help_text="The last errors of the cycle."
    )

    class Meta:
        model = PollRun
        fields = [
            "id",
            "started_at",
            "finished_at",
            "trigger",
            "outcome",
            "pages",
            "requests",
            "markets_seen",
            "markets_created",
            "markets_updated",
            "snapshots_written",
            "unchanged_skipped",
            "errors",
            "error_messages",
        ]
        read_only_fields = fields
