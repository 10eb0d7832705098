"""Favourite–longshot bias near close: buy the favourite late and hold it to settlement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backtests.engine import MICRO, first_signal_side

from .base import Param, ParameterError, Strategy

if TYPE_CHECKING:
    from backtests.engine import Int8Array, QuotePanel


class FavouriteLongshot(Strategy):
    name = "favourite_longshot"
    label = "Favourite–longshot near close"
    description = (
        "Longshots tend to be overpriced and favourites underpriced. Within `hours_before_close` of the "
        "close, buys the side whose ask is between min_price and max_price (the favourite) and holds it "
        "to settlement."
    )
    params = {
        "hours_before_close": Param(
            float, 6.0, "Only enter within this many hours of the close.", 0.01, 720.0
        ),
        "min_price": Param(float, 0.75, "Lowest ask that counts as a favourite.", 0.5, 0.99),
        "max_price": Param(float, 0.95, "Highest ask worth paying (fees eat the edge above it).", 0.5, 0.99),
    }

    def check(self, values: Mapping[str, Any]) -> None:
        if values["min_price"] > values["max_price"]:
            raise ParameterError("min_price must not exceed max_price")

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        lo = round(params["min_price"] * MICRO)
        hi = round(params["max_price"] * MICRO)
        window = panel.seconds_to_close <= params["hours_before_close"] * 3600
        window &= panel.seconds_to_close > 0
        yes_ask = panel.ask
        no_ask = MICRO - panel.bid
        yes_fav = window & panel.has_ask & (yes_ask >= lo) & (yes_ask <= hi)
        no_fav = window & panel.has_bid & (no_ask >= lo) & (no_ask <= hi)
        side = np.where(yes_fav, 1, np.where(no_fav, -1, 0)).astype(np.int8)
        return first_signal_side(side, panel)
