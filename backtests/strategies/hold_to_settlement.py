"""Baseline: buy one side at the first opportunity and hold it to settlement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backtests.engine import MICRO, first_signal_side

from .base import Param, Strategy

if TYPE_CHECKING:
    from backtests.engine import Int8Array, QuotePanel


class HoldToSettlement(Strategy):
    name = "hold_to_settlement"
    label = "Hold to settlement"
    description = (
        "Buys YES (or NO, or whichever side is the favourite) at the first quote whose ask is within the "
        "price limit and holds it to settlement. The baseline every other strategy has to beat."
    )
    params = {
        "side": Param(str, "yes", "Which side to buy.", choices=("yes", "no", "favourite", "longshot")),
        "max_price": Param(
            float, 0.99, "Only enter while the side's ask is at or below this price.", 0.01, 0.99
        ),
    }

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        limit = round(params["max_price"] * MICRO)
        yes_ok = panel.has_ask & (panel.ask <= limit)
        no_ask = MICRO - panel.bid
        no_ok = panel.has_bid & (no_ask <= limit)
        side = params["side"]
        if side == "yes":
            wanted = np.where(yes_ok, 1, 0)
        elif side == "no":
            wanted = np.where(no_ok, -1, 0)
        else:
            # The favourite is the side whose mid is above 0.5; ties go to YES.
            fav_yes = panel.mid2 >= MICRO
            valid = panel.mid2 >= 0
            if side == "longshot":
                fav_yes = ~fav_yes
            wanted = np.where(valid & fav_yes & yes_ok, 1, np.where(valid & ~fav_yes & no_ok, -1, 0))
        return first_signal_side(wanted.astype(np.int8), panel)
