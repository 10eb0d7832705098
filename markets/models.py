"""Kalshi's series → event → market hierarchy, the market time series, and the poller's log.

Prices are dollars (Decimal, 0..1), counts are contracts (Decimal, 0.01 granularity), exactly as
Kalshi's `*_dollars` / `*_fp` strings say; nothing is ever converted through float.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Case, Count, F, Q, Value, When, Window
from django.db.models.functions import Abs, Lag
from django.utils import timezone

# Kalshi emits up to 6 decimals for dollar amounts (market prices use 4) and 2 for counts
# (PRICE: max_digits=10, decimal_places=6; COUNT: max_digits=20, decimal_places=2).

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


class EventQuerySet(models.QuerySet["Event"]):
    def with_series(self) -> EventQuerySet:
        return self.select_related("series")

    def with_market_count(self) -> EventQuerySet:
        return self.annotate(market_count=Count("markets"))

    def for_series(self, series_ticker: str) -> EventQuerySet:
        return self.filter(series__ticker=series_ticker)

    def in_category(self, category: str) -> EventQuerySet:
        """By the series' category, or the event's own (deprecated) one while the series is unsynced."""
        return self.filter(
            Q(series__category__iexact=category)
            | (Q(series__category="") | Q(series__isnull=True)) & Q(category__iexact=category)
        )


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

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["ticker"]

    def __str__(self) -> str:
        return self.ticker

    @property
    def fee_type(self) -> str:
        """The fee schedule that applies to this event's markets: the event's override, else the series'."""
        if self.fee_type_override:
            return self.fee_type_override
        return self.series.fee_type if self.series is not None else ""

    @property
    def fee_multiplier(self) -> Decimal | None:
        if self.fee_multiplier_override is not None:
            return self.fee_multiplier_override
        return self.series.fee_multiplier if self.series is not None else None


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


# Kalshi's `status=` filter names → the market object statuses they select
# (docs.kalshi.com getting_started/market_lifecycle; see also kalshi.MARKET_STATUS_FILTERS).
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "unopened": (MarketStatus.INITIALIZED,),
    "open": (MarketStatus.ACTIVE,),
    "paused": (MarketStatus.INACTIVE,),
    "closed": (MarketStatus.CLOSED, MarketStatus.DETERMINED, MarketStatus.DISPUTED, MarketStatus.AMENDED),
    "settled": (MarketStatus.FINALIZED,),
}


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

    def in_states(self, names: Iterable[str]) -> MarketQuerySet:
        """Markets in any of these states: Kalshi's filter names or market object statuses.

        A name in both vocabularies (`closed`) takes Kalshi's filter meaning, as on Kalshi's API.
        """
        statuses: set[str] = set()
        for name in names:
            statuses.update(STATUS_FILTERS.get(name, (name,)))
        return self.filter(status__in=sorted(statuses))

    def for_series(self, series_ticker: str) -> MarketQuerySet:
        # Markets only name their event; until the event is synced its series link is empty, and
        # Kalshi's event tickers start with the series ticker, so that prefix is the fallback for
        # unsynced events only (Kalshi advises against parsing tickers where a link exists).
        ticker = series_ticker.strip().upper()
        return self.filter(
            Q(event__series__ticker=ticker)
            | Q(event__series__isnull=True, event__ticker__startswith=f"{ticker}-")
        )

    def for_event(self, event_ticker: str) -> MarketQuerySet:
        return self.filter(event__ticker=event_ticker)

    def in_category(self, category: str) -> MarketQuerySet:
        """By the series' category, or the event's own (deprecated) one while the series is unsynced."""
        return self.filter(
            Q(event__series__category__iexact=category)
            | (Q(event__series__category="") | Q(event__series__isnull=True))
            & Q(event__category__iexact=category)
        )

    def selected(
        self,
        *,
        tickers: Iterable[str] = (),
        event_tickers: Iterable[str] = (),
        series_tickers: Iterable[str] = (),
    ) -> MarketQuerySet:
        """Markets named by ticker, or in one of the events or series (the union); all if none given."""
        condition = Q()
        if tickers := list(tickers):
            condition |= Q(ticker__in=tickers)
        if event_tickers := list(event_tickers):
            condition |= Q(event__ticker__in=event_tickers)
        if series_tickers := list(series_tickers):
            condition |= Q(event__series__ticker__in=series_tickers)
        return self.filter(condition) if condition else self.all()

    def overdue(self, now: datetime | None = None) -> MarketQuerySet:
        """Still marked unopened, open or paused although their close time has passed."""
        return self.filter(
            status__in=[MarketStatus.INITIALIZED, MarketStatus.ACTIVE, MarketStatus.INACTIVE],
            close_time__lt=now or timezone.now(),
        )

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


# Page filter name → Market.status values (None: any status): Kalshi's filter names, with
# "upcoming" for its "unopened" on the page.
STATUS_GROUPS: dict[str, list[str] | None] = {
    "open": list(STATUS_FILTERS["open"]),
    "upcoming": list(STATUS_FILTERS["unopened"]),
    "paused": list(STATUS_FILTERS["paused"]),
    "closed": list(STATUS_FILTERS["closed"]),
    "settled": list(STATUS_FILTERS["settled"]),
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
        max_digits=10,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="YES payout in dollars once determined (NO pays 1 - this).",
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
    yes_bid = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    yes_ask = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    no_bid = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    no_ask = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    last_price = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    previous_yes_bid = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True, help_text="Yes bid a day ago."
    )
    previous_yes_ask = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True, help_text="Yes ask a day ago."
    )
    previous_price = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True, help_text="Last price a day ago."
    )
    yes_bid_size = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    yes_ask_size = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    volume = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    volume_24h = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    open_interest = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    updated_time = models.DateTimeField(null=True, blank=True, help_text="Exchange's updated_time.")
    raw = models.JSONField(null=True, blank=True, help_text="The market object as Kalshi last returned it.")

    # Change detection for the poller (KalshiQuote.quote_digest / state_digest): an unchanged
    # market costs two integer comparisons and no write.
    quote_digest = models.BigIntegerField(null=True, blank=True, editable=False)
    state_digest = models.BigIntegerField(null=True, blank=True, editable=False)
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
            # The API list's page subquery (ids in ticker order) as an index-only scan.
            models.Index(fields=["ticker", "id"], name="market_ticker_id_idx"),
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

    def for_markets(self, markets: Iterable[Market | int]) -> MarketSnapshotQuerySet:
        return self.filter(market__in=list(markets))

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
    yes_bid = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    yes_ask = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    no_bid = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    no_ask = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    last_price = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    yes_bid_size = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    yes_ask_size = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    volume = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    volume_24h = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    open_interest = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
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


# --------------------------------------------------------------------------------------------------
# History: the public trade tape, backfill progress and the log of history jobs
# --------------------------------------------------------------------------------------------------


class TakerSide(models.TextChoices):
    YES = "yes", "Yes"
    NO = "no", "No"


class BookSide(models.TextChoices):
    BID = "bid", "Bid (bought YES)"
    ASK = "ask", "Ask (sold YES)"


class TradeQuerySet(models.QuerySet["Trade"]):
    def for_market(self, market: Market | int) -> TradeQuerySet:
        return self.filter(market=market)

    def between(self, start: datetime | None, end: datetime | None) -> TradeQuerySet:
        qs = self
        if start is not None:
            qs = qs.filter(created_time__gte=start)
        if end is not None:
            qs = qs.filter(created_time__lte=end)
        return qs


class Trade(models.Model):
    """One public trade from Kalshi's tape (/markets/trades or /historical/trades)."""

    trade_id = models.CharField(max_length=64, unique=True)
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="trades", db_index=False)
    created_time = models.DateTimeField()
    yes_price = models.DecimalField(max_digits=10, decimal_places=6)
    no_price = models.DecimalField(max_digits=10, decimal_places=6)
    count = models.DecimalField(max_digits=20, decimal_places=2, help_text="Contracts.")
    # The side the taker ended up on ("yes" for buy-yes and sell-no).
    taker_outcome_side = models.CharField(max_length=3, choices=TakerSide.choices, blank=True)
    taker_book_side = models.CharField(max_length=3, choices=BookSide.choices, blank=True)
    is_block_trade = models.BooleanField(default=False)

    objects = TradeQuerySet.as_manager()

    class Meta:
        get_latest_by = "created_time"
        indexes = [models.Index(fields=["market", "created_time"], name="trade_market_time_idx")]
        constraints = [
            *_price_bounds("trade", ("yes_price", "no_price")),
            *_non_negative("trade", ("count",)),
        ]

    def __str__(self) -> str:
        return f"{self.trade_id} {self.count} @ {self.yes_price}"


class BackfillKind(models.TextChoices):
    """What a backfill stored: candles of one period (minutes), or the trade tape."""

    MINUTE = "1", "1-minute candles"
    HOUR = "60", "Hourly candles"
    DAY = "1440", "Daily candles"
    TRADES = "trades", "Trades"


class BackfillProgress(models.Model):
    """The span of one market's history a backfill has completely stored, so a rerun skips it.

    Written in the same transaction as the rows it covers: after an interruption it names exactly
    what is stored, and the next run continues from `covered_until`.
    """

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="backfill_progress")
    kind = models.CharField(max_length=6, choices=BackfillKind.choices)
    covered_from = models.DateTimeField()
    covered_until = models.DateTimeField()
    # Kalshi's candles carry per-period volume; snapshots store the cumulative figure (as polled
    # rows do), so the running total at `covered_until` is kept to continue the sum. Null: unknown.
    volume_at_until = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "backfill progress"
        constraints = [
            models.UniqueConstraint(fields=["market", "kind"], name="backfill_progress_one_per_kind"),
            models.CheckConstraint(
                condition=Q(covered_until__gte=F("covered_from")), name="backfill_progress_span_ordered"
            ),
        ]

    def __str__(self) -> str:
        span = f"{self.covered_from:%Y-%m-%d %H:%M} – {self.covered_until:%Y-%m-%d %H:%M}"
        return f"{self.market_id} {self.kind}: {span}"


class HistoryJob(models.TextChoices):
    BACKFILL = "backfill", "Backfill"
    SETTLEMENT_SWEEP = "settlements", "Settlement sweep"
    SERIES_REFRESH = "series", "Series and fee refresh"


class HistoryRunQuerySet(models.QuerySet["HistoryRun"]):
    def of_kind(self, kind: str) -> HistoryRunQuerySet:
        return self.filter(kind=kind)

    def successful(self) -> HistoryRunQuerySet:
        return self.filter(outcome__in=[PollOutcome.OK, PollOutcome.PARTIAL])


class HistoryRun(models.Model):
    """One backfill, settlement sweep or series refresh: what it was asked, did and hit."""

    kind = models.CharField(max_length=12, choices=HistoryJob.choices, db_index=True)
    trigger = models.CharField(max_length=20, default="command")
    params = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=PollOutcome.choices, default=PollOutcome.RUNNING)
    markets = models.PositiveIntegerField(default=0, help_text="Markets read or selected.")
    markets_updated = models.PositiveIntegerField(default=0)
    snapshots_written = models.PositiveIntegerField(default=0)
    trades_written = models.PositiveIntegerField(default=0)
    settled = models.PositiveIntegerField(default=0, help_text="Markets newly seen as finalized.")
    result_changes = models.PositiveIntegerField(default=0, help_text="Results amended after determination.")
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_messages = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True)

    objects = HistoryRunQuerySet.as_manager()

    class Meta:
        get_latest_by = "started_at"
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="historyrun_finishes_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"

    @property
    def duration(self) -> timedelta | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class SettlementCheck(models.Model):
    """When the settlement sweep last re-read a market by ticker, and since when Kalshi lists it nowhere.

    Kept apart from Market so the poller's upserts never touch it. Lets the sweep rotate through
    markets awaiting a result, and give up on ones Kalshi removed (provisional markets may be
    deleted after determination) instead of asking for them forever.
    """

    market = models.OneToOneField(
        Market, on_delete=models.CASCADE, primary_key=True, related_name="settlement_check"
    )
    checked_at = models.DateTimeField()
    missing_since = models.DateTimeField(
        null=True, blank=True, help_text="First sweep that found it in neither /markets nor /historical."
    )

    def __str__(self) -> str:
        return f"{self.market_id} checked {self.checked_at:%Y-%m-%d %H:%M}"
