"""Kalshi's series → event → market hierarchy, the market time series, and the poller's log.

Prices are dollars (Decimal, 0..1), counts are contracts (Decimal, 0.01 granularity), exactly as
Kalshi's `*_dollars` / `*_fp` strings say; nothing is ever converted through float.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Case, F, Q, Value, When, Window
from django.db.models.functions import Abs, Lag
from django.utils import timezone

# Kalshi emits up to 6 decimals for dollar amounts (market prices use 4) and 2 for counts.
PRICE_FIELD_KW: dict[str, Any] = {"max_digits": 10, "decimal_places": 6, "null": True, "blank": True}
COUNT_FIELD_KW: dict[str, Any] = {"max_digits": 20, "decimal_places": 2, "null": True, "blank": True}

# The quote: what a snapshot records and what "changed since the last snapshot" compares.
PRICE_FIELDS = ("yes_bid", "yes_ask", "no_bid", "no_ask", "last_price")
COUNT_FIELDS = ("yes_bid_size", "yes_ask_size", "volume", "volume_24h", "open_interest")
QUOTE_FIELDS = PRICE_FIELDS + COUNT_FIELDS


def _price_bounds(prefix: str, fields: tuple[str, ...]) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": 0, f"{name}__lte": 1}),
            name=f"{prefix}_{name}_between_0_and_1",
        )
        for name in fields
    ]


def _non_negative(prefix: str, fields: tuple[str, ...]) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": 0}),
            name=f"{prefix}_{name}_non_negative",
        )
        for name in fields
    ]


class FeeType(models.TextChoices):
    QUADRATIC = "quadratic", "Quadratic (taker only)"
    QUADRATIC_WITH_MAKER_FEES = "quadratic_with_maker_fees", "Quadratic with maker fees"
    QUADRATIC_WITH_COMBO_MAKER_FEES = "quadratic_with_combo_maker_fees", "Quadratic with combo maker fees"
    FLAT = "flat", "Flat"


class Series(models.Model):
    ticker = models.CharField(max_length=100, unique=True)
    title = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    categories = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    frequency = models.CharField(max_length=50, blank=True)
    # Blank until the series itself has been read from /series (markets only name their event).
    fee_type = models.CharField(max_length=50, blank=True)
    fee_multiplier = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal(1))
    contract_url = models.URLField(max_length=500, blank=True)
    contract_terms_url = models.URLField(max_length=500, blank=True)
    settlement_sources = models.JSONField(default=list, blank=True)
    exchange_index = models.PositiveSmallIntegerField(default=0)
    last_updated_ts = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True, help_text="When /series last returned it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["ticker"]
        constraints = [
            models.CheckConstraint(
                condition=Q(fee_multiplier__gte=0), name="series_fee_multiplier_non_negative"
            )
        ]

    def __str__(self) -> str:
        return self.ticker


class Event(models.Model):
    ticker = models.CharField(max_length=150, unique=True)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    title = models.CharField(max_length=500, blank=True)
    sub_title = models.CharField(max_length=500, blank=True)
    # Deprecated on Kalshi's Event in favour of the series' category, but still returned and
    # useful before the series has been synced.
    category = models.CharField(max_length=100, blank=True)
    mutually_exclusive = models.BooleanField(default=False)
    collateral_return_type = models.CharField(max_length=50, blank=True)
    strike_date = models.DateTimeField(null=True, blank=True)
    strike_period = models.CharField(max_length=100, blank=True)
    fee_type_override = models.CharField(max_length=50, blank=True)
    fee_multiplier_override = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    exchange_index = models.PositiveSmallIntegerField(default=0)
    last_updated_ts = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True, help_text="When /events last returned it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["ticker"]

    def __str__(self) -> str:
        return self.ticker


class MarketStatus(models.TextChoices):
    """Status values as Kalshi's market objects carry them (not the `status=` filter names)."""

    INITIALIZED = "initialized", "Not yet open"
    ACTIVE = "active", "Open"
    INACTIVE = "inactive", "Paused"
    CLOSED = "closed", "Closed"
    DETERMINED = "determined", "Determined"
    DISPUTED = "disputed", "Disputed"
    AMENDED = "amended", "Amended"
    FINALIZED = "finalized", "Settled"


class MarketResult(models.TextChoices):
    NONE = "", "Undetermined"
    YES = "yes", "Yes"
    NO = "no", "No"
    SCALAR = "scalar", "Scalar / fair price"


def book_spread_expression() -> Case:
    """Yes ask minus yes bid when both sides are quoted; NULL for an empty side (0 bid, 0 or 1 ask)."""
    return Case(
        # Keyword order matters: migration 0002 indexes this exact expression.
        When(yes_ask__gt=0, yes_ask__lt=1, yes_bid__gt=0, then=F("yes_ask") - F("yes_bid")),
        default=Value(None),
        output_field=models.DecimalField(max_digits=10, decimal_places=6),
    )


def price_move_expression() -> Abs:
    return Abs(F("last_price") - F("previous_price"))


class MarketQuerySet(models.QuerySet["Market"]):
    def open(self) -> MarketQuerySet:
        return self.filter(status=MarketStatus.ACTIVE)

    def settled(self) -> MarketQuerySet:
        return self.filter(status=MarketStatus.FINALIZED)

    def awaiting_settlement(self) -> MarketQuerySet:
        """Closed on the exchange but not yet final: the settlement sweep re-reads these."""
        return self.filter(
            status__in=[
                MarketStatus.CLOSED,
                MarketStatus.DETERMINED,
                MarketStatus.DISPUTED,
                MarketStatus.AMENDED,
            ]
        )

    def with_event(self) -> MarketQuerySet:
        return self.select_related("event", "event__series")

    # --- The market table (pages and API) -------------------------------------------------------

    def in_status_group(self, group: str) -> MarketQuerySet:
        """Markets in one of STATUS_GROUPS ("open", "upcoming", "paused", "closed", "settled", "all")."""
        try:
            statuses = STATUS_GROUPS[group]
        except KeyError:
            raise ValueError(
                f"Unknown status group {group!r}; use one of {', '.join(STATUS_GROUPS)}."
            ) from None
        if statuses is None:
            return self
        # A plain equality for one status, so the partial "open market" indexes below apply.
        return self.filter(status=statuses[0]) if len(statuses) == 1 else self.filter(status__in=statuses)

    def search(self, text: str) -> MarketQuerySet:
        """Markets whose ticker, title or yes-side subtitle contains `text` (case-insensitive)."""
        text = text.strip()
        if not text:
            return self
        return self.filter(
            Q(ticker__icontains=text) | Q(title__icontains=text) | Q(yes_sub_title__icontains=text)
        )

    def in_category(self, category: str) -> MarketQuerySet:
        # The event's own category is deprecated upstream but is all we know until the series
        # has been synced, so either one matching counts.
        return self.filter(Q(event__series__category=category) | Q(event__category=category))

    def in_series(self, series_ticker: str) -> MarketQuerySet:
        # Markets only name their event; until the event is synced its series link is empty, and
        # Kalshi's event tickers start with the series ticker, so that prefix is the fallback.
        ticker = series_ticker.strip().upper()
        return self.filter(Q(event__series__ticker=ticker) | Q(event__ticker__startswith=f"{ticker}-"))

    def with_quote_metrics(self) -> MarketQuerySet:
        """Annotate `book_spread` (None unless both sides are quoted), `price_change` and `price_move`.

        `price_change` is last price minus Kalshi's `previous_price` (its "a day ago" value).
        """
        return self.annotate(
            book_spread=book_spread_expression(),
            price_change=F("last_price") - F("previous_price"),
            price_move=price_move_expression(),
        )

    def sorted_by(self, sort: str) -> MarketQuerySet:
        """Order by one of TABLE_SORTS; needs `with_quote_metrics()` for "movers" and "spread"."""
        try:
            ordering = TABLE_SORTS[sort]
        except KeyError:
            raise ValueError(f"Unknown sort {sort!r}; use one of {', '.join(TABLE_SORTS)}.") from None
        return self.order_by(*ordering)

    def for_table(self) -> MarketQuerySet:
        """Only what a row of the market table shows: no raw JSON, no rules text."""
        return (
            self.select_related("event", "event__series")
            .only(
                *TABLE_FIELDS,
                "event__ticker",
                "event__title",
                "event__series__ticker",
                "event__series__category",
            )
            .with_quote_metrics()
        )


# Page filter name → Market.status values (None: any status).
STATUS_GROUPS: dict[str, list[str] | None] = {
    "open": [MarketStatus.ACTIVE],
    "upcoming": [MarketStatus.INITIALIZED],
    "paused": [MarketStatus.INACTIVE],
    "closed": [MarketStatus.CLOSED, MarketStatus.DETERMINED, MarketStatus.DISPUTED, MarketStatus.AMENDED],
    "settled": [MarketStatus.FINALIZED],
    "all": None,
}

# Table sort name → ordering. Nulls go last so a market with no quote never tops a list, and the
# ticker breaks ties so paging is stable.
TABLE_SORTS: dict[str, tuple[Any, ...]] = {
    "volume": (F("volume_24h").desc(nulls_last=True), "ticker"),
    "movers": (F("price_move").desc(nulls_last=True), F("volume_24h").desc(nulls_last=True), "ticker"),
    "closing": (F("close_time").asc(nulls_last=True), "ticker"),
    "spread": (F("book_spread").desc(nulls_last=True), "ticker"),
    "newest": (F("open_time").desc(nulls_last=True), "-id"),
}

TABLE_FIELDS = (
    "ticker",
    "event",
    "title",
    "yes_sub_title",
    "status",
    "result",
    "close_time",
    "open_time",
    "yes_bid",
    "yes_ask",
    "last_price",
    "previous_price",
    "previous_yes_bid",
    "volume_24h",
    "open_interest",
    "last_snapshot_at",
)


_OPEN = Q(status=MarketStatus.ACTIVE)


class Market(models.Model):
    # 32-bit keys keep every snapshot row and its index entry 4 bytes smaller; Kalshi has listed
    # a few million markets in its history, far below 2**31.
    id = models.AutoField(primary_key=True)
    ticker = models.CharField(max_length=200, unique=True)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="markets")
    market_type = models.CharField(max_length=20, default="binary")
    title = models.CharField(max_length=1000, blank=True)
    subtitle = models.CharField(max_length=1000, blank=True)
    yes_sub_title = models.CharField(max_length=1000, blank=True)
    no_sub_title = models.CharField(max_length=1000, blank=True)

    status = models.CharField(max_length=20, choices=MarketStatus.choices, db_index=True)
    result = models.CharField(max_length=10, choices=MarketResult.choices, blank=True, default="")
    settlement_value = models.DecimalField(
        **PRICE_FIELD_KW, help_text="YES payout in dollars once determined (NO pays 1 - this)."
    )
    settlement_ts = models.DateTimeField(null=True, blank=True)
    expiration_value = models.CharField(max_length=500, blank=True)

    strike_type = models.CharField(max_length=30, blank=True)
    floor_strike = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    cap_strike = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    functional_strike = models.CharField(max_length=500, blank=True)
    custom_strike = models.JSONField(null=True, blank=True)

    created_time = models.DateTimeField(null=True, blank=True)
    open_time = models.DateTimeField(null=True, blank=True)
    close_time = models.DateTimeField(null=True, blank=True, db_index=True)
    expected_expiration_time = models.DateTimeField(null=True, blank=True)
    expiration_time = models.DateTimeField(null=True, blank=True)
    latest_expiration_time = models.DateTimeField(null=True, blank=True)
    occurrence_datetime = models.DateTimeField(null=True, blank=True)
    can_close_early = models.BooleanField(default=False)
    early_close_condition = models.TextField(blank=True)
    settlement_timer_seconds = models.PositiveIntegerField(null=True, blank=True)

    rules_primary = models.TextField(blank=True)
    rules_secondary = models.TextField(blank=True)
    notional_value = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal(1))
    # The tick grid: [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}, ...] as strings.
    price_level_structure = models.CharField(max_length=50, blank=True)
    price_ranges = models.JSONField(default=list, blank=True)
    exchange_index = models.PositiveSmallIntegerField(default=0)

    # Latest quote (dollars / contracts), as of `last_snapshot_at`.
    yes_bid = models.DecimalField(**PRICE_FIELD_KW)
    yes_ask = models.DecimalField(**PRICE_FIELD_KW)
    no_bid = models.DecimalField(**PRICE_FIELD_KW)
    no_ask = models.DecimalField(**PRICE_FIELD_KW)
    last_price = models.DecimalField(**PRICE_FIELD_KW)
    previous_yes_bid = models.DecimalField(**PRICE_FIELD_KW, help_text="Yes bid a day ago.")
    previous_yes_ask = models.DecimalField(**PRICE_FIELD_KW, help_text="Yes ask a day ago.")
    previous_price = models.DecimalField(**PRICE_FIELD_KW, help_text="Last price a day ago.")
    yes_bid_size = models.DecimalField(**COUNT_FIELD_KW)
    yes_ask_size = models.DecimalField(**COUNT_FIELD_KW)
    volume = models.DecimalField(**COUNT_FIELD_KW)
    volume_24h = models.DecimalField(**COUNT_FIELD_KW)
    open_interest = models.DecimalField(**COUNT_FIELD_KW)
    updated_time = models.DateTimeField(null=True, blank=True, help_text="Exchange's updated_time.")
    raw = models.JSONField(null=True, blank=True, help_text="The market object as Kalshi last returned it.")

    # Change detection for the poller: a digest of the last stored quote, so an unchanged market
    # costs one comparison and no write (see ingest.quote_digest).
    quote_digest = models.BigIntegerField(null=True, blank=True, editable=False)
    last_snapshot_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the latest quote was stored as a snapshot."
    )
    first_seen_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = MarketQuerySet.as_manager()

    class Meta:
        ordering = ["ticker"]
        constraints = [
            *_price_bounds(
                "market",
                (*PRICE_FIELDS, "previous_yes_bid", "previous_yes_ask", "previous_price", "settlement_value"),
            ),
            *_non_negative("market", COUNT_FIELDS),
        ]
        indexes = [
            models.Index(fields=["status", "close_time"], name="market_status_close_idx"),
            # The market table's sort orders over open markets (partial: closed and settled
            # markets, the bulk of history, cost nothing here). Each makes the first page a
            # top-50 index scan instead of a sort of every open market; see TABLE_SORTS.
            models.Index(
                F("volume_24h").desc(nulls_last=True),
                "ticker",
                name="market_open_volume_idx",
                condition=_OPEN,
            ),
            models.Index(
                price_move_expression().desc(nulls_last=True),
                F("volume_24h").desc(nulls_last=True),
                "ticker",
                name="market_open_movers_idx",
                condition=_OPEN,
            ),
            models.Index(
                book_spread_expression().desc(nulls_last=True),
                "ticker",
                name="market_open_spread_idx",
                condition=_OPEN,
            ),
            models.Index(
                F("open_time").desc(nulls_last=True),
                F("id").desc(),
                name="market_open_newest_idx",
                condition=_OPEN,
            ),
        ]

    def __str__(self) -> str:
        return self.ticker

    @property
    def spread(self) -> Decimal | None:
        if self.yes_bid is None or self.yes_ask is None:
            return None
        return self.yes_ask - self.yes_bid

    @property
    def mid(self) -> Decimal | None:
        if self.yes_bid is None or self.yes_ask is None:
            return None
        return (self.yes_bid + self.yes_ask) / 2

    @property
    def change_24h(self) -> Decimal | None:
        if self.last_price is None or self.previous_price is None:
            return None
        return self.last_price - self.previous_price

    @property
    def is_settled(self) -> bool:
        return self.status == MarketStatus.FINALIZED

    def time_to_close(self, now: datetime | None = None) -> timedelta | None:
        if self.close_time is None:
            return None
        return self.close_time - (now or timezone.now())


class SnapshotSource(models.TextChoices):
    POLL = "poll", "Poll"
    WEBSOCKET = "websocket", "WebSocket"
    BACKFILL = "backfill", "Backfill"


class MarketSnapshotQuerySet(models.QuerySet["MarketSnapshot"]):
    def for_market(self, market: Market | int) -> MarketSnapshotQuerySet:
        return self.filter(market=market)

    def between(self, start: datetime | None, end: datetime | None) -> MarketSnapshotQuerySet:
        qs = self
        if start is not None:
            qs = qs.filter(captured_at__gte=start)
        if end is not None:
            qs = qs.filter(captured_at__lte=end)
        return qs

    def from_source(self, source: str) -> MarketSnapshotQuerySet:
        return self.filter(source=source)

    def newest_first(self) -> MarketSnapshotQuerySet:
        # (captured_at, source) descending walks the unique index backwards for one market.
        return self.order_by("-captured_at", "-source")


class MarketSnapshot(models.Model):
    """One observed quote for a market. Written only when the quote changed (plus heartbeats)."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="snapshots", db_index=False)
    captured_at = models.DateTimeField()
    source = models.CharField(max_length=9, choices=SnapshotSource.choices, default=SnapshotSource.POLL)
    # Per-subscription sequence number of a WebSocket frame; null for polled and backfilled rows.
    sequence = models.BigIntegerField(null=True, blank=True)
    yes_bid = models.DecimalField(**PRICE_FIELD_KW)
    yes_ask = models.DecimalField(**PRICE_FIELD_KW)
    no_bid = models.DecimalField(**PRICE_FIELD_KW)
    no_ask = models.DecimalField(**PRICE_FIELD_KW)
    last_price = models.DecimalField(**PRICE_FIELD_KW)
    yes_bid_size = models.DecimalField(**COUNT_FIELD_KW)
    yes_ask_size = models.DecimalField(**COUNT_FIELD_KW)
    volume = models.DecimalField(**COUNT_FIELD_KW)
    volume_24h = models.DecimalField(**COUNT_FIELD_KW)
    open_interest = models.DecimalField(**COUNT_FIELD_KW)
    raw = models.JSONField(null=True, blank=True)

    objects = MarketSnapshotQuerySet.as_manager()

    class Meta:
        get_latest_by = "captured_at"
        indexes = [
            # Time-range reads across all markets (the admin's date drill-down). BRIN: ~0.01 byte
            # per row, since rows arrive in time order. Created on PostgreSQL only (0002).
            BrinIndex(
                fields=["captured_at"], name="snapshot_captured_brin", autosummarize=True, pages_per_range=32
            ),
        ]
        constraints = [
            # Column order (market, captured_at, source) makes this one index also serve every
            # "this market between t0 and t1" read, so the table needs no second index.
            models.UniqueConstraint(
                fields=["market", "captured_at", "source"], name="snapshot_one_per_market_time_source"
            ),
            models.UniqueConstraint(
                fields=["market", "sequence"],
                condition=Q(source=SnapshotSource.WEBSOCKET),
                name="snapshot_websocket_sequence_unique",
            ),
            models.CheckConstraint(
                condition=Q(source=SnapshotSource.WEBSOCKET) | Q(sequence__isnull=True),
                name="snapshot_sequence_only_for_websocket",
            ),
            models.CheckConstraint(
                condition=Q(source__in=SnapshotSource.values), name="snapshot_source_valid"
            ),
            *_price_bounds("snapshot", PRICE_FIELDS),
            *_non_negative("snapshot", COUNT_FIELDS),
        ]

    def __str__(self) -> str:
        return f"{self.market_id} @ {self.captured_at:%Y-%m-%d %H:%M:%S} ({self.source})"


class PollOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    PARTIAL = "partial", "Completed with errors"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (another cycle was running)"


class PollRunQuerySet(models.QuerySet["PollRun"]):
    def finished(self) -> PollRunQuerySet:
        return self.exclude(outcome__in=[PollOutcome.RUNNING, PollOutcome.SKIPPED])

    def successful(self) -> PollRunQuerySet:
        return self.filter(outcome__in=[PollOutcome.OK, PollOutcome.PARTIAL])

    def latest_success(self) -> PollRun | None:
        """The most recent cycle that stored data; its `finished_at` is when the data was fresh."""
        return self.successful().filter(finished_at__isnull=False).order_by("-started_at").first()

    def gaps(self, *, since: datetime, longer_than: timedelta) -> list[tuple[datetime, datetime]]:
        """Stretches after `since` with no successful cycle starting for more than `longer_than`.

        Each gap is (last successful start before it, next successful start). A gap that is still
        open (polling stopped and has not resumed) is not included: compare `latest_success()` with
        the clock for that.
        """
        starts = (
            self.successful()
            .filter(started_at__gte=since)
            .annotate(previous_start=Window(Lag("started_at"), order_by=F("started_at").asc()))
            .filter(started_at__gt=F("previous_start") + longer_than)
            .values_list("previous_start", "started_at")
            .order_by("started_at")
        )
        return list(starts)


class PollRun(models.Model):
    """One poll cycle: every page of open markets, read and stored once."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=20, default="celery")
    pages = models.PositiveIntegerField(default=0)
    markets_seen = models.PositiveIntegerField(default=0)
    markets_created = models.PositiveIntegerField(default=0)
    markets_updated = models.PositiveIntegerField(default=0)
    snapshots_written = models.PositiveIntegerField(default=0)
    unchanged_skipped = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=PollOutcome.choices, default=PollOutcome.RUNNING)
    error_messages = models.JSONField(default=list, blank=True)

    objects = PollRunQuerySet.as_manager()

    class Meta:
        get_latest_by = "started_at"
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="pollrun_finishes_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"Poll {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"

    @property
    def duration(self) -> timedelta | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at
