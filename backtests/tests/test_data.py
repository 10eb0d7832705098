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
