"""Calibration and movers: the two research summaries shared by the pages, the API and the notebooks.

**Calibration** answers "how often does a market priced at 70¢ resolve YES?". For every settled
market it takes the market-implied probability at a horizon before close — the mid of the last
stored quote at or before ``close_time − horizon``, whatever its source (poll, WebSocket or
backfill) — and compares it with the outcome, in probability bins:

* Only markets that **closed on schedule** and settled **yes** or **no** are binned. Kalshi
  rewrites ``close_time`` when a market closes early and keeps no copy of the original schedule,
  so "closed early" is read from what the final market object still says (see
  `closed_early_condition`): the market may close early, its close fell on an arbitrary second
  (Kalshi schedules closes on whole minutes; an early close happens the moment its condition is
  met), and it closed more than `EARLY_CLOSE_GRACE` before its expected expiration. A sports game
  that closes when the final whistle blows, an hour or two before its expected expiration, is on
  schedule; "Will X happen by <date>" closing weeks early because X happened is not — anchoring the
  horizon to an outcome-dependent close time would bias the diagram.
* The mid is ``(yes bid + yes ask) / 2`` with a missing side at its bound (no bid = 0, no ask = 1;
  the Jan-2026 legacy shape's yes ask 0 also means "no ask"). An empty book (no bid and no ask)
  has no usable mid: such markets are excluded and counted, as are markets without any quote by
  then (or, with ``max_quote_age``, only an older one).
* Scalar (fair-price) outcomes pay ``settlement_value`` rather than 0 or 1; they are reported
  separately (count, mean settlement value and mean mid), never binned.
* Per bin: count, YES count, mean implied probability, observed frequency and its **Wilson score
  interval**; overall: the Brier score (mean squared error of the mids against the 0/1 outcomes),
  the base rate and the expected calibration error.

On PostgreSQL the quotes are read with one index probe per market (a ``LATERAL`` join on the
snapshot index ``(market, captured_at, source)``) and aggregated per bin in the database, which is
what keeps 100k settled markets under a second. Other databases read the same values through
correlated subqueries and aggregate in Python.

**Movers** lists the biggest mid moves and the volume leaders among open markets, over 1 h (from the
stored snapshots) or 24 h (from Kalshi's own day-ago fields on the market, available from the first
poll on). See `movers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import TruncMinute
from django.utils import timezone

from .models import Market, MarketQuerySet, MarketResult, MarketSnapshot

# Choices the pages and the API offer; the functions take any timedelta.
HORIZONS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "1w": timedelta(weeks=1),
}
MOVER_WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
QUOTE_AGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}

DEFAULT_HORIZON = "1d"
DEFAULT_MOVER_WINDOW = "1h"
DEFAULT_BINS = 10
MIN_BINS, MAX_BINS = 2, 50
# Sports games close when the result is in, typically up to ~3 h before the expected expiration
# Kalshi sets for them (kick-off + 3 to 6 h); closes further ahead than this count as early.
EARLY_CLOSE_GRACE = timedelta(hours=6)
DEFAULT_MOVERS = 10
MAX_MOVERS = 100
# Moves between wide books are mostly noise in the mid; movers compares books at most this wide.
DEFAULT_MOVER_SPREAD = Decimal("0.10")

_PLACES = Decimal("0.000001")
_CENTS = Decimal("0.01")  # contract counts have 2 decimals
_ONE = Decimal(1)
_DECIMAL = DecimalField(max_digits=12, decimal_places=7)


def label_for(value: timedelta, choices: dict[str, timedelta]) -> str:
    """The short name of a duration ("1d"), or its length in seconds when it has none."""
    for name, choice in choices.items():
        if choice == value:
            return name
    return f"{int(value.total_seconds())}s"


def _q(value: Decimal) -> Decimal:
    return value.quantize(_PLACES)


def _mid(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """The mid of a yes bid/ask quote, or None for a missing or empty book (see the module docstring)."""
    if bid is None or ask is None:
        return None
    if ask == 0:
        ask = _ONE
    if bid == 0 and ask == _ONE:
        return None
    return (bid + ask) / 2


def _spread(bid: Decimal, ask: Decimal) -> Decimal:
    return (_ONE if ask == 0 else ask) - bid


# SQL twins of _mid/_spread for the PostgreSQL paths; `b`/`a` are column references.
def _sql_usable(b: str, a: str) -> str:
    return f"({b} IS NOT NULL AND {a} IS NOT NULL AND NOT ({b} = 0 AND {a} IN (0, 1)))"


def _sql_mid(b: str, a: str) -> str:
    return f"(({b} + CASE WHEN {a} = 0 THEN 1 ELSE {a} END) / 2)"


def _sql_spread(b: str, a: str) -> str:
    return f"(CASE WHEN {a} = 0 THEN 1 ELSE {a} END - {b})"


def lateral_joins() -> bool:
    """Whether to read quotes with LATERAL joins (PostgreSQL) rather than correlated subqueries."""
    return connection.vendor == "postgresql"


def _compiled(qs: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    sql, params = qs.query.sql_with_params()
    return sql, tuple(params)


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationBin:
    """One probability bin: markets whose implied probability fell in [lower, upper)."""

    index: int
    lower: Decimal
    upper: Decimal  # the last bin includes 1
    count: int
    yes: int
    mean_predicted: Decimal | None  # mean implied probability (mid) of its markets
    observed: Decimal | None  # share that resolved YES
    ci_low: Decimal | None  # Wilson score interval of `observed`
    ci_high: Decimal | None


@dataclass(frozen=True)
class CalibrationExclusions:
    """Settled yes/no markets matching the filters that were not binned, by reason."""

    closed_early: int = 0
    no_quote: int = 0  # no stored quote at or before close − horizon
    stale_quote: int = 0  # only a quote older than max_quote_age by then
    empty_book: int = 0  # the quote had neither a bid nor an ask

    @property
    def total(self) -> int:
        return self.closed_early + self.no_quote + self.stale_quote + self.empty_book


@dataclass(frozen=True)
class ScalarOutcomes:
    """Markets that settled at a fair price (``result="scalar"``), reported apart from the bins."""

    count: int = 0
    mean_settlement_value: Decimal | None = None
    with_quote: int = 0  # of those, with a usable mid at the horizon (and closed on schedule)
    mean_mid: Decimal | None = None


@dataclass(frozen=True)
class Calibration:
    """A reliability diagram's data: bins, overall scores, and what was left out and why."""

    horizon: timedelta
    bins: list[CalibrationBin]
    markets: int  # binned markets
    yes: int
    brier_score: Decimal | None
    base_rate: Decimal | None  # share of binned markets that resolved YES
    mean_predicted: Decimal | None
    expected_calibration_error: Decimal | None  # count-weighted mean |observed − predicted|
    excluded: CalibrationExclusions
    scalar: ScalarOutcomes
    confidence: float
    interval: str = "wilson"
    series: str | None = None
    category: str | None = None
    closed_after: datetime | None = None
    closed_before: datetime | None = None
    max_quote_age: timedelta | None = None
    early_close_grace: timedelta = EARLY_CLOSE_GRACE

    @property
    def is_empty(self) -> bool:
        return self.markets == 0


def closed_early_condition(grace: timedelta = EARLY_CLOSE_GRACE) -> Q:
    """Markets that closed early: may close early, closed off the minute grid, and well before expecting to.

    A market without an expected expiration is judged by the first two conditions alone.
    """
    return (
        Q(can_close_early=True)
        & ~Q(close_time=TruncMinute("close_time"))
        & (
            Q(expected_expiration_time__isnull=True)
            | Q(close_time__lt=ExpressionWrapper(F("expected_expiration_time") - grace, DateTimeField()))
        )
    )


@dataclass
class _Tally:
    """Sums for one group of markets (a bin, a scalar group, an exclusion reason)."""

    count: int = 0
    yes: int = 0
    sum_mid: Decimal = Decimal(0)
    sum_squared_error: Decimal = Decimal(0)
    sum_settlement: Decimal = Decimal(0)

    def add(self, other: _Tally) -> None:
        self.count += other.count
        self.yes += other.yes
        self.sum_mid += other.sum_mid
        self.sum_squared_error += other.sum_squared_error
        self.sum_settlement += other.sum_settlement


def calibration(
    *,
    horizon: timedelta = HORIZONS[DEFAULT_HORIZON],
    bins: int = DEFAULT_BINS,
    series: str | None = None,
    category: str | None = None,
    closed_after: datetime | None = None,
    closed_before: datetime | None = None,
    max_quote_age: timedelta | None = None,
    early_close_grace: timedelta = EARLY_CLOSE_GRACE,
    confidence: float = 0.95,
    markets: MarketQuerySet | None = None,
) -> Calibration:
    """Calibration of settled markets' mids at `horizon` before close against their outcomes.

    `markets` narrows the selection further (any Market QuerySet); `series` and `category` use the
    QuerySet methods of the same names. Raises ValueError for out-of-range arguments.
    """
    if not MIN_BINS <= bins <= MAX_BINS:
        raise ValueError(f"bins must be from {MIN_BINS} to {MAX_BINS}; got {bins}.")
    if horizon < timedelta(0):
        raise ValueError("horizon must not be negative.")
    if max_quote_age is not None and max_quote_age <= timedelta(0):
        raise ValueError("max_quote_age must be positive.")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1.")

    qs = (markets if markets is not None else Market.objects.all()).settled()
    qs = qs.filter(
        result__in=[MarketResult.YES, MarketResult.NO, MarketResult.SCALAR], close_time__isnull=False
    )
    if series:
        qs = qs.for_series(series)
    if category:
        qs = qs.in_category(category)
    if closed_after is not None:
        qs = qs.filter(close_time__gte=closed_after)
    if closed_before is not None:
        qs = qs.filter(close_time__lte=closed_before)
    qs = qs.annotate(
        early=Case(
            When(closed_early_condition(early_close_grace), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        ),
        asof=ExpressionWrapper(F("close_time") - horizon, DateTimeField()),
    )
    if max_quote_age is not None:
        qs = qs.annotate(stale_before=ExpressionWrapper(F("asof") - max_quote_age, DateTimeField()))
    qs = qs.order_by()

    if lateral_joins():
        groups = _calibration_groups_postgres(qs, bins=bins, check_age=max_quote_age is not None)
    else:
        groups = _calibration_groups_portable(qs, bins=bins, check_age=max_quote_age is not None)
    return _summarise(
        groups,
        horizon=horizon,
        bins=bins,
        confidence=confidence,
        series=series,
        category=category,
        closed_after=closed_after,
        closed_before=closed_before,
        max_quote_age=max_quote_age,
        early_close_grace=early_close_grace,
    )


# Group keys: ("bin", i) for binned yes/no markets, ("scalar", quoted?) for scalar ones, and
# ("excluded", reason) for yes/no markets left out.
_GroupKey = tuple[str, Any]


def _calibration_groups_postgres(
    qs: MarketQuerySet, *, bins: int, check_age: bool
) -> dict[_GroupKey, _Tally]:
    columns = ["id", "result", "settlement_value", "early", "asof"] + (["stale_before"] if check_age else [])
    markets_sql, params = _compiled(qs.values(*columns))
    snapshots = MarketSnapshot._meta.db_table
    stale = "WHEN q.captured_at < m.stale_before THEN 'stale_quote'" if check_age else ""
    bins = int(bins)
    # `NOT m.early` inside the lateral subquery is a one-time filter: early closers cost no probe.
    sql = f"""
        SELECT r.kind, r.result,
               CASE WHEN r.kind = 'quoted' AND r.result <> 'scalar'
                    THEN LEAST(FLOOR(r.mid * {bins}), {bins - 1})::int END AS bin,
               COUNT(*),
               COALESCE(SUM(r.mid), 0),
               COALESCE(SUM(CASE WHEN r.result = 'yes' THEN 1 ELSE 0 END), 0),
               COALESCE(SUM((r.mid - r.outcome) * (r.mid - r.outcome)), 0),
               COALESCE(SUM(r.settlement_value), 0)
        FROM (
            SELECT k.result, k.settlement_value, k.kind,
                   CASE WHEN k.kind = 'quoted' THEN {_sql_mid("k.yes_bid", "k.yes_ask")} END AS mid,
                   CASE WHEN k.result = 'yes' THEN 1 ELSE 0 END AS outcome
            FROM (
                SELECT m.result, m.settlement_value, q.yes_bid, q.yes_ask,
                       CASE WHEN m.early THEN 'closed_early'
                            WHEN q.captured_at IS NULL THEN 'no_quote'
                            {stale}
                            WHEN NOT {_sql_usable("q.yes_bid", "q.yes_ask")} THEN 'empty_book'
                            ELSE 'quoted' END AS kind
                FROM ({markets_sql}) AS m
                LEFT JOIN LATERAL (
                    SELECT s.captured_at, s.yes_bid, s.yes_ask
                    FROM {snapshots} AS s
                    WHERE NOT m.early AND s.market_id = m.id AND s.captured_at <= m.asof
                    ORDER BY s.captured_at DESC, s.source DESC
                    LIMIT 1
                ) AS q ON TRUE
            ) AS k
        ) AS r
        GROUP BY 1, 2, 3
    """
    groups: dict[_GroupKey, _Tally] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, result, bin_index, count, sum_mid, yes, sum_sq, sum_settlement in cursor.fetchall():
            tally = _Tally(
                count=count,
                yes=int(yes),
                sum_mid=Decimal(sum_mid),
                sum_squared_error=Decimal(sum_sq),
                sum_settlement=Decimal(sum_settlement),
            )
            groups.setdefault(_group_key(kind, result, bin_index), _Tally()).add(tally)
    return groups


def _group_key(kind: str, result: str, bin_index: int | None) -> _GroupKey:
    if result == MarketResult.SCALAR:
        return ("scalar", kind == "quoted")
    if kind == "quoted":
        return ("bin", bin_index)
    return ("excluded", kind)


def _calibration_groups_portable(
    qs: MarketQuerySet, *, bins: int, check_age: bool
) -> dict[_GroupKey, _Tally]:
    latest = MarketSnapshot.objects.filter(market=OuterRef("pk"), captured_at__lte=OuterRef("asof")).order_by(
        "-captured_at", "-source"
    )
    rows = qs.annotate(
        q_at=Subquery(latest.values("captured_at")[:1], output_field=DateTimeField()),
        q_bid=Subquery(latest.values("yes_bid")[:1], output_field=_DECIMAL),
        q_ask=Subquery(latest.values("yes_ask")[:1], output_field=_DECIMAL),
    ).values_list(
        "result",
        "settlement_value",
        "early",
        "q_at",
        "q_bid",
        "q_ask",
        *(["stale_before"] if check_age else []),
    )
    groups: dict[_GroupKey, _Tally] = {}
    for result, settlement_value, early, q_at, bid, ask, *stale_before in rows:
        mid = _mid(bid, ask)
        if early:
            kind = "closed_early"
        elif q_at is None:
            kind = "no_quote"
        elif stale_before and q_at < stale_before[0]:
            kind = "stale_quote"
        elif mid is None:
            kind = "empty_book"
        else:
            kind = "quoted"
        outcome = 1 if result == MarketResult.YES else 0
        tally = _Tally(count=1, yes=outcome, sum_settlement=settlement_value or Decimal(0))
        bin_index = None
        if kind == "quoted" and mid is not None:
            tally.sum_mid = mid
            tally.sum_squared_error = (mid - outcome) ** 2
            bin_index = min(int(mid * bins), bins - 1)
        groups.setdefault(_group_key(kind, result, bin_index), _Tally()).add(tally)
    return groups


def wilson_interval(successes: int, trials: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sound at 0 or n successes and for small n)."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; float rounding would leave ~1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _summarise(
    groups: dict[_GroupKey, _Tally],
    *,
    horizon: timedelta,
    bins: int,
    confidence: float,
    series: str | None,
    category: str | None,
    closed_after: datetime | None,
    closed_before: datetime | None,
    max_quote_age: timedelta | None,
    early_close_grace: timedelta,
) -> Calibration:
    table: list[CalibrationBin] = []
    total = _Tally()
    weighted_gap = Decimal(0)
    for i in range(bins):
        tally = groups.get(("bin", i), _Tally())
        total.add(tally)
        lower, upper = Decimal(i) / bins, Decimal(i + 1) / bins
        if tally.count:
            predicted = tally.sum_mid / tally.count
            observed = Decimal(tally.yes) / tally.count
            low, high = wilson_interval(tally.yes, tally.count, confidence=confidence)
            weighted_gap += tally.count * abs(observed - predicted)
            table.append(
                CalibrationBin(
                    index=i,
                    lower=_q(lower),
                    upper=_q(upper),
                    count=tally.count,
                    yes=tally.yes,
                    mean_predicted=_q(predicted),
                    observed=_q(observed),
                    ci_low=_q(Decimal(repr(low))),
                    ci_high=_q(Decimal(repr(high))),
                )
            )
        else:
            table.append(CalibrationBin(i, _q(lower), _q(upper), 0, 0, None, None, None, None))
    n = total.count
    excluded = CalibrationExclusions(
        **{reason: tally.count for (group, reason), tally in groups.items() if group == "excluded"}
    )
    scalar_all = _Tally()
    for quoted in (True, False):
        scalar_all.add(groups.get(("scalar", quoted), _Tally()))
    quoted_scalar = groups.get(("scalar", True), _Tally())
    scalar = ScalarOutcomes(
        count=scalar_all.count,
        mean_settlement_value=_q(scalar_all.sum_settlement / scalar_all.count) if scalar_all.count else None,
        with_quote=quoted_scalar.count,
        mean_mid=_q(quoted_scalar.sum_mid / quoted_scalar.count) if quoted_scalar.count else None,
    )
    return Calibration(
        horizon=horizon,
        bins=table,
        markets=n,
        yes=total.yes,
        brier_score=_q(total.sum_squared_error / n) if n else None,
        base_rate=_q(Decimal(total.yes) / n) if n else None,
        mean_predicted=_q(total.sum_mid / n) if n else None,
        expected_calibration_error=_q(weighted_gap / n) if n else None,
        excluded=excluded,
        scalar=scalar,
        confidence=confidence,
        series=series,
        category=category,
        closed_after=closed_after,
        closed_before=closed_before,
        max_quote_age=max_quote_age,
        early_close_grace=early_close_grace,
    )


# --------------------------------------------------------------------------------------------------
# Movers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One market's mid at both ends of the window, and what traded in between."""

    ticker: str
    title: str
    subtitle: str
    event_ticker: str
    close_time: datetime | None
    price_before: Decimal | None
    price_now: Decimal | None
    change: Decimal | None
    volume: Decimal | None  # contracts traded in the window


@dataclass(frozen=True)
class Movers:
    window: timedelta
    as_of: datetime | None
    basis: str
    gainers: list[Move]
    losers: list[Move]
    volume_leaders: list[Move]
    compared: int  # markets with a usable mid at both ends
    max_spread: Decimal | None


BASIS_SNAPSHOTS = (
    "Mid of the last stored quote at or before each end of the window (any source), markets open at its end."
)
BASIS_KALSHI = (
    "Kalshi's own day-ago yes bid/ask (previous_yes_bid/ask) against the latest quote of each open "
    "market; volume is Kalshi's 24-hour volume."
)


@dataclass
class _Candidate:
    market_id: int
    before: Decimal | None
    now: Decimal | None
    volume: Decimal | None

    @property
    def change(self) -> Decimal | None:
        if self.before is None or self.now is None:
            return None
        return self.now - self.before


def movers(
    *,
    window: timedelta = MOVER_WINDOWS[DEFAULT_MOVER_WINDOW],
    limit: int = DEFAULT_MOVERS,
    series: str | None = None,
    category: str | None = None,
    max_spread: Decimal | None = DEFAULT_MOVER_SPREAD,
    now: datetime | None = None,
    markets: MarketQuerySet | None = None,
) -> Movers:
    """The biggest mid moves up and down, and the volume leaders, over `window`.

    A 24-hour window (with `now` left as the present) uses Kalshi's day-ago quote fields on each
    open market, so it works from the first poll on. Any other window, or any explicit `now`,
    compares stored snapshots: the last quote at or before `now − window` with the last at or
    before `now`, over markets open at `now`. Both ends must have a usable mid (not an empty book)
    and, with `max_spread`, a spread no wider than it.
    """
    if not 1 <= limit <= MAX_MOVERS:
        raise ValueError(f"limit must be from 1 to {MAX_MOVERS}; got {limit}.")
    if window <= timedelta(0):
        raise ValueError("window must be positive.")
    if max_spread is not None and not 0 <= max_spread <= 1:
        raise ValueError("max_spread must be between 0 and 1.")
    qs = markets if markets is not None else Market.objects.all()
    if series:
        qs = qs.for_series(series)
    if category:
        qs = qs.in_category(category)
    if now is None and window == MOVER_WINDOWS["24h"]:
        return _movers_kalshi(qs.open(), limit=limit, max_spread=max_spread)
    end = now or timezone.now()
    start = end - window
    # Open at `end`: Kalshi rewrites close_time to the real close, so this holds for past ends too.
    # A market known only by ticker (no open or close time) counts as open.
    qs = qs.filter(
        Q(open_time__isnull=True) | Q(open_time__lte=end), Q(close_time__isnull=True) | Q(close_time__gt=end)
    ).order_by()
    if lateral_joins():
        ranked, compared = _movers_postgres(qs, start=start, end=end, limit=limit, max_spread=max_spread)
    else:
        ranked, compared = _movers_portable(qs, start=start, end=end, limit=limit, max_spread=max_spread)
    return _movers_result(
        ranked, compared, window=window, as_of=end, basis=BASIS_SNAPSHOTS, max_spread=max_spread
    )


def _movers_postgres(
    qs: MarketQuerySet, *, start: datetime, end: datetime, limit: int, max_spread: Decimal | None
) -> tuple[dict[str, list[_Candidate]], int]:
    markets_sql, params = _compiled(qs.values("id"))
    snapshots = MarketSnapshot._meta.db_table
    usable = f"{_sql_usable('c.bid1', 'c.ask1')} AND {_sql_usable('c.bid0', 'c.ask0')}"
    spread_params: tuple[Any, ...] = ()
    if max_spread is not None:
        usable += f" AND {_sql_spread('c.bid1', 'c.ask1')} <= %s AND {_sql_spread('c.bid0', 'c.ask0')} <= %s"
        spread_params = (max_spread, max_spread)
    limit = int(limit)
    # A market whose newest quote predates the window did not move in it: it gets no second probe.
    sql = f"""
        WITH c AS (
            SELECT m.id, a.yes_bid AS bid1, a.yes_ask AS ask1, a.volume AS vol1,
                   b.yes_bid AS bid0, b.yes_ask AS ask0, b.volume AS vol0
            FROM ({markets_sql}) AS m
            JOIN LATERAL (
                SELECT s.captured_at, s.yes_bid, s.yes_ask, s.volume FROM {snapshots} AS s
                WHERE s.market_id = m.id AND s.captured_at <= %s
                ORDER BY s.captured_at DESC, s.source DESC LIMIT 1
            ) AS a ON a.captured_at > %s
            JOIN LATERAL (
                SELECT s.yes_bid, s.yes_ask, s.volume FROM {snapshots} AS s
                WHERE s.market_id = m.id AND s.captured_at <= %s
                ORDER BY s.captured_at DESC, s.source DESC LIMIT 1
            ) AS b ON TRUE
        ),
        p AS (SELECT c.*, {usable} AS priced FROM c),
        v AS MATERIALIZED (
            SELECT p.id,
                   CASE WHEN p.priced THEN {_sql_mid("p.bid0", "p.ask0")} END AS p0,
                   CASE WHEN p.priced THEN {_sql_mid("p.bid1", "p.ask1")} END AS p1,
                   p.vol1 - p.vol0 AS traded
            FROM p
        )
        (SELECT 'up', id, p0, p1, traded FROM v WHERE p1 > p0 ORDER BY p1 - p0 DESC, id LIMIT {limit})
        UNION ALL
        (SELECT 'down', id, p0, p1, traded FROM v WHERE p1 < p0 ORDER BY p1 - p0, id LIMIT {limit})
        UNION ALL
        (SELECT 'volume', id, p0, p1, traded FROM v WHERE traded > 0 ORDER BY traded DESC, id LIMIT {limit})
        UNION ALL
        (SELECT 'compared', COUNT(*), NULL, NULL, NULL FROM v WHERE p0 IS NOT NULL)
    """
    ranked: dict[str, list[_Candidate]] = {"up": [], "down": [], "volume": []}
    compared = 0
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, end, start, start, *spread_params))
        for kind, market_id, p0, p1, traded in cursor.fetchall():
            if kind == "compared":
                compared = int(market_id)
            else:
                ranked[kind].append(_Candidate(market_id, p0, p1, traded))
    return ranked, compared


def _movers_portable(
    qs: MarketQuerySet, *, start: datetime, end: datetime, limit: int, max_spread: Decimal | None
) -> tuple[dict[str, list[_Candidate]], int]:
    def latest(at: datetime) -> QuerySet[MarketSnapshot]:
        return MarketSnapshot.objects.filter(market=OuterRef("pk"), captured_at__lte=at).order_by(
            "-captured_at", "-source"
        )

    annotations: dict[str, Subquery] = {}
    for suffix, at in (("1", end), ("0", start)):
        for name, column, field in (
            ("bid", "yes_bid", _DECIMAL),
            ("ask", "yes_ask", _DECIMAL),
            ("vol", "volume", DecimalField(max_digits=20, decimal_places=2)),
        ):
            annotations[name + suffix] = Subquery(latest(at).values(column)[:1], output_field=field)
    annotations["at1"] = Subquery(latest(end).values("captured_at")[:1], output_field=DateTimeField())
    columns = ("id", "at1", "bid1", "ask1", "vol1", "bid0", "ask0", "vol0")
    rows = qs.annotate(**annotations).values_list(*columns)
    candidates: list[_Candidate] = []
    for market_id, at1, bid1, ask1, vol1, bid0, ask0, vol0 in rows:
        if at1 is None or at1 <= start:
            continue
        p1, p0 = _mid(bid1, ask1), _mid(bid0, ask0)
        priced = p1 is not None and p0 is not None
        if priced and max_spread is not None:
            priced = _spread(bid1, ask1) <= max_spread and _spread(bid0, ask0) <= max_spread
        traded = vol1 - vol0 if vol1 is not None and vol0 is not None else None
        candidates.append(_Candidate(market_id, p0 if priced else None, p1 if priced else None, traded))
    return _rank(candidates, limit), sum(1 for c in candidates if c.change is not None)


def _rank(candidates: list[_Candidate], limit: int) -> dict[str, list[_Candidate]]:
    moves = [(c.change, c) for c in candidates if c.change is not None]
    traded = [(c.volume, c) for c in candidates if c.volume is not None and c.volume > 0]
    return {
        "up": [c for _, c in sorted((m for m in moves if m[0] > 0), key=lambda m: (-m[0], m[1].market_id))][
            :limit
        ],
        "down": [c for _, c in sorted((m for m in moves if m[0] < 0), key=lambda m: (m[0], m[1].market_id))][
            :limit
        ],
        "volume": [c for _, c in sorted(traded, key=lambda m: (-m[0], m[1].market_id))][:limit],
    }


def _movers_kalshi(qs: MarketQuerySet, *, limit: int, max_spread: Decimal | None) -> Movers:
    def ask_or_one(field: str) -> Case:
        return Case(When(**{field: 0}, then=Value(_ONE)), default=F(field), output_field=_DECIMAL)

    def usable(bid: str, ask: str) -> Q:
        empty = Q(**{bid: 0}) & (Q(**{ask: 0}) | Q(**{ask: 1}))
        return Q(**{f"{bid}__isnull": False, f"{ask}__isnull": False}) & ~empty

    priced = qs.filter(usable("yes_bid", "yes_ask"), usable("previous_yes_bid", "previous_yes_ask"))
    priced = priced.annotate(
        p1=ExpressionWrapper((F("yes_bid") + ask_or_one("yes_ask")) / 2, _DECIMAL),
        p0=ExpressionWrapper((F("previous_yes_bid") + ask_or_one("previous_yes_ask")) / 2, _DECIMAL),
    )
    if max_spread is not None:
        priced = priced.annotate(
            s1=ExpressionWrapper(ask_or_one("yes_ask") - F("yes_bid"), _DECIMAL),
            s0=ExpressionWrapper(ask_or_one("previous_yes_ask") - F("previous_yes_bid"), _DECIMAL),
        ).filter(s1__lte=max_spread, s0__lte=max_spread)
    priced = priced.annotate(change=ExpressionWrapper(F("p1") - F("p0"), _DECIMAL))
    columns = ("id", "p0", "p1", "volume_24h")

    def candidates(rows: QuerySet[Market]) -> list[_Candidate]:
        return [_Candidate(i, p0, p1, vol) for i, p0, p1, vol in rows.values_list(*columns)]

    ranked = {
        "up": candidates(priced.filter(Q(change__gt=0)).order_by(F("change").desc(), "id")[:limit]),
        "down": candidates(priced.filter(Q(change__lt=0)).order_by(F("change").asc(), "id")[:limit]),
        "volume": [],
    }
    # Volume leaders need no usable day-ago quote; their mids are shown where there is one.
    leaders = list(
        qs.filter(volume_24h__gt=0)
        .order_by(F("volume_24h").desc(), "id")
        .values_list("id", flat=True)[:limit]
    )
    mids = {c.market_id: c for c in candidates(priced.filter(id__in=leaders))}
    volumes = dict(Market.objects.filter(id__in=leaders).values_list("id", "volume_24h"))
    ranked["volume"] = [mids.get(i) or _Candidate(i, None, None, volumes[i]) for i in leaders]
    as_of = qs.order_by("-last_snapshot_at").values_list("last_snapshot_at", flat=True).first()
    return _movers_result(
        ranked,
        priced.count(),
        window=MOVER_WINDOWS["24h"],
        as_of=as_of,
        basis=BASIS_KALSHI,
        max_spread=max_spread,
    )


def _movers_result(
    ranked: dict[str, list[_Candidate]],
    compared: int,
    *,
    window: timedelta,
    as_of: datetime | None,
    basis: str,
    max_spread: Decimal | None,
) -> Movers:
    ids = {c.market_id for group in ranked.values() for c in group}
    info = {
        row["id"]: row
        for row in Market.objects.filter(id__in=ids).values(
            "id", "ticker", "title", "yes_sub_title", "event__ticker", "close_time"
        )
    }

    def move(c: _Candidate) -> Move:
        row = info[c.market_id]
        change = c.change
        return Move(
            ticker=row["ticker"],
            title=row["title"],
            subtitle=row["yes_sub_title"],
            event_ticker=row["event__ticker"],
            close_time=row["close_time"],
            price_before=_q(c.before) if c.before is not None else None,
            price_now=_q(c.now) if c.now is not None else None,
            change=_q(change) if change is not None else None,
            volume=c.volume.quantize(_CENTS) if c.volume is not None else None,
        )

    return Movers(
        window=window,
        as_of=as_of,
        basis=basis,
        gainers=[move(c) for c in ranked["up"]],
        losers=[move(c) for c in ranked["down"]],
        volume_leaders=[move(c) for c in ranked["volume"]],
        compared=compared,
        max_spread=max_spread,
    )
