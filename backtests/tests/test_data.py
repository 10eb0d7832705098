"""Loading quotes: the PostgreSQL COPY path matches the portable path exactly."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.db import connection

from backtests import data
from markets.models import Market, MarketSnapshot

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_it_loads_the_same_integers_through_copy_and_values_list(recorded):
    qs = MarketSnapshot.objects.all()
    fast = data._copy_arrays(qs)
    slow = data._python_arrays(qs)
    assert len(fast["ts"]) == recorded["snapshots"] > 40
    for name in fast:
        assert np.array_equal(fast[name], slow[name]), name


def test_it_loads_through_the_debug_cursor_too(recorded):
    connection.force_debug_cursor = True
    try:
        arrays = data.load_quote_arrays(MarketSnapshot.objects.all())
    finally:
        connection.force_debug_cursor = False
    assert len(arrays["ts"]) == recorded["snapshots"]


def test_it_builds_a_panel_with_fees_from_the_series_and_overrides(recorded):
    markets = list(Market.objects.selected(series_tickers=["KXMLBGAME"]).with_event().order_by("id"))
    lad = next(m for m in markets if m.ticker.endswith("LADAZ-LAD"))
    lad.event.fee_multiplier_override = Decimal("0.25")
    panel = data.load_panel(markets)
    infos = {m.ticker: m for m in panel.markets}
    assert infos[lad.ticker].fee_multiplier == Decimal("0.25")
    assert infos["KXMLBGAME-26AUG072145TBSEA-TB"].fee_multiplier == Decimal("0.5")
    assert infos["KXMLBGAME-26AUG072145TBSEA-TB"].fee_type == "quadratic_with_maker_fees"
    assert infos["KXMLBGAME-26AUG072145TBSEA-TB"].settlement_value == Decimal(1)
    assert infos["KXMLBGAME-26AUG071840TORPHI-TOR"].settlement_value is None
    tor = panel.markets.index(infos["KXMLBGAME-26AUG071840TORPHI-TOR"])
    rows = slice(panel.starts[tor], panel.starts[tor + 1])
    assert panel.bid[rows][0] == 330_000 and panel.ask[rows][0] == 340_000
    assert panel.volume[rows][0] == 2874  # "28.74" contracts


def test_it_round_trips_six_decimal_prices_and_large_fractional_counts_exactly(recorded):
    from datetime import UTC, datetime

    from markets import ingest
    from markets.models import SnapshotSource

    market_id = next(iter(recorded["markets"].values()))
    ingest.write_snapshots(
        [
            ingest.SnapshotRow(
                market_id=market_id,
                captured_at=datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
                source=SnapshotSource.POLL,
                quote=(
                    Decimal("0.000001"),
                    Decimal("0.999999"),
                    None,
                    None,
                    Decimal("0.123457"),
                    Decimal("0.01"),
                    Decimal("98765432109.99"),
                    Decimal("123456789012.34"),
                    None,
                    None,
                ),
            )
        ]
    )
    qs = MarketSnapshot.objects.filter(captured_at__year=2030)
    fast, slow = data._copy_arrays(qs), data._python_arrays(qs)
    assert {k: v.tolist() for k, v in fast.items()} == {k: v.tolist() for k, v in slow.items()}
    assert fast["bid"].tolist() == [1] and fast["ask"].tolist() == [999_999]
    assert fast["volume"].tolist() == [12345678901234]
    assert fast["ts"].tolist() == [int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000 + 123456]


def test_it_decodes_zero_whole_and_digit_group_boundary_numerics(recorded):
    """PostgreSQL sends numerics as base-10000 digit groups (none at all for zero, trailing zero
    groups dropped); the binary COPY decoder must turn each shape into the exact integer."""
    from datetime import UTC, datetime

    from markets import ingest
    from markets.models import SnapshotSource

    market_id = next(iter(recorded["markets"].values()))
    quotes = [
        (Decimal("0"), Decimal("1"), Decimal("0.5"), Decimal("10000"), Decimal("0"), Decimal("1")),
        (Decimal("0.0001"), Decimal("0.99"), None, Decimal("9999.99"), Decimal("100000000.01"), None),
    ]
    ingest.write_snapshots(
        [
            ingest.SnapshotRow(
                market_id=market_id,
                captured_at=datetime(2031, 1, 1, i, tzinfo=UTC),
                source=SnapshotSource.POLL,
                quote=(bid, ask, None, None, last, bid_size, ask_size, volume, None, None),
            )
            for i, (bid, ask, last, bid_size, ask_size, volume) in enumerate(quotes)
        ]
    )
    qs = MarketSnapshot.objects.filter(captured_at__year=2031)
    fast, slow = data._copy_arrays(qs), data._python_arrays(qs)
    assert {k: v.tolist() for k, v in fast.items()} == {k: v.tolist() for k, v in slow.items()}
    assert fast["bid"].tolist() == [0, 100] and fast["ask"].tolist() == [1_000_000, 990_000]
    assert fast["last"].tolist() == [500_000, -1]
    assert fast["bid_size"].tolist() == [1_000_000, 999_999]
    assert fast["ask_size"].tolist() == [0, 10_000_000_001]
    assert fast["volume"].tolist() == [100, -1]
