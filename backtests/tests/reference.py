"""A deliberately simple, independent event-loop backtester used to check the engine.

It walks every quote of every market in plain Python with Decimal money, recomputes each
strategy's signal with explicit loops, and shares nothing with `backtests.engine` except the
rules written in its docstring. The benchmark uses it as the event-loop baseline too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

ONE = Decimal(1)


@dataclass
class Quote:
    time: int  # ns
    bid: Decimal | None  # None = no yes bid
    ask: Decimal | None  # None = no yes ask
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None


@dataclass
class Market:
    ticker: str
    quotes: list[Quote]
    settlement_value: Decimal | None = None
    close_ns: int | None = None
    fee_multiplier: Decimal = ONE


@dataclass
class Fill:
    ticker: str
    time: int
    action: str
    contracts: Decimal
    price: Decimal
    fee: Decimal


@dataclass
class Outcome:
    fills: list[Fill] = field(default_factory=list)
    pnl: dict[str, Decimal] = field(default_factory=dict)


def fee(contracts: Decimal, price: Decimal, multiplier: Decimal) -> Decimal:
    raw = Decimal("0.07") * contracts * price * (ONE - price) * multiplier
    return raw.quantize(Decimal("0.01"), rounding=ROUND_CEILING)


# ---- signals, one quote at a time -------------------------------------------------------------------


def _mids2(m: Market) -> list[int | None]:
    """2 × mid in micro-dollars, carried over one-sided quotes; None before the first two-sided one."""
    out: list[int | None] = []
    last: int | None = None
    for q in m.quotes:
        if q.bid is not None and q.ask is not None and q.bid <= q.ask:
            last = int((q.bid + q.ask) * 1_000_000)
        out.append(last)
    return out


def _step(prev: int, el: bool, es: bool, xl: bool, xs: bool) -> int:
    xs = xs or el
    xl = xl or es
    if prev == 1 and xl:
        prev = 0
    if prev == -1 and xs:
        prev = 0
    if prev == 0:
        prev = 1 if el else -1 if es else 0
    return prev


def signals(m: Market, strategy: str, p: dict[str, Any]) -> list[int]:
    n = len(m.quotes)
    out = [0] * n
    if strategy == "mean_reversion":
        x = _mids2(m)
        w = p["window"]
        state = 0
        for i in range(n):
            z: float | None = None
            if i >= w - 1 and all(v is not None for v in x[i - w + 1 : i + 1]):
                win = [v for v in x[i - w + 1 : i + 1] if v is not None]
                s1 = sum(win)
                s2 = sum(v * v for v in win)
                var = w * s2 - s1 * s1
                xi = x[i]
                assert xi is not None
                z = 0.0 if var == 0 else (w * xi - s1) / math.sqrt(var)
            if z is None:
                el = es = False
                xl = xs = True
            else:
                el = z < -p["entry_z"]
                es = z > p["entry_z"] and p["allow_no"]
                xl = z >= -p["exit_z"]
                xs = z <= p["exit_z"]
            state = _step(0 if i == 0 else state, el, es, xl or i == 0, xs or i == 0)
            out[i] = state
    elif strategy == "momentum":
        x = _mids2(m)
        n_in, n_out = p["lookback"], p["exit_lookback"]
        thr2 = round(p["threshold"] * 2_000_000)
        state = 0
        for i in range(n):
            xi = x[i]
            prior = x[i - n_in : i] if i >= n_in else None
            el = es = xl = xs = False
            if xi is not None and prior is not None and all(v is not None for v in prior):
                hi = max(v for v in prior if v is not None)
                lo = min(v for v in prior if v is not None)
                el = xi >= hi + thr2 and xi > hi
                es = p["allow_no"] and xi <= lo - thr2 and xi < lo
            prior_x = x[i - n_out : i] if i >= n_out else None
            if xi is not None and prior_x is not None and all(v is not None for v in prior_x):
                xl = xi < min(v for v in prior_x if v is not None)
                xs = xi > max(v for v in prior_x if v is not None)
            state = _step(0 if i == 0 else state, el, es, xl or i == 0, xs or i == 0)
            out[i] = state
    elif strategy in ("hold_to_settlement", "favourite_longshot"):
        chosen = 0
        for i, q in enumerate(m.quotes):
            if chosen == 0:
                chosen = _entry_side(m, i, q, strategy, p)
            out[i] = chosen
    else:
        raise ValueError(strategy)
    return out


def _entry_side(m: Market, i: int, q: Quote, strategy: str, p: dict[str, Any]) -> int:
    yes_ask = q.ask
    no_ask = ONE - q.bid if q.bid is not None else None
    if strategy == "hold_to_settlement":
        limit = Decimal(str(p["max_price"]))
        yes_ok = yes_ask is not None and yes_ask <= limit
        no_ok = no_ask is not None and no_ask <= limit
        if p["side"] == "yes":
            return 1 if yes_ok else 0
        if p["side"] == "no":
            return -1 if no_ok else 0
        mid2 = _mids2(m)[i]
        if mid2 is None:
            return 0
        fav_yes = mid2 >= 1_000_000
        if p["side"] == "longshot":
            fav_yes = not fav_yes
        if fav_yes:
            return 1 if yes_ok else 0
        return -1 if no_ok else 0
    if m.close_ns is None:
        return 0
    left = (m.close_ns - q.time) / 1e9
    if not 0 < left <= p["hours_before_close"] * 3600:
        return 0
    lo, hi = Decimal(str(p["min_price"])), Decimal(str(p["max_price"]))
    if yes_ask is not None and lo <= yes_ask <= hi:
        return 1
    if no_ask is not None and lo <= no_ask <= hi:
        return -1
    return 0


# ---- the event loop --------------------------------------------------------------------------------------


def run(
    markets: list[Market],
    strategy: str,
    params: dict[str, Any],
    *,
    contracts: Decimal = Decimal(10),
    end_ns: int | None = None,
    cap: bool = False,
) -> Outcome:
    """Rules: a signal at quote i executes at quote i+1 (or later, while it stands) at the touch;
    buying YES / selling NO needs a yes ask, selling YES / buying NO a yes bid; nothing trades at or
    after close or after the end; close the opposite side before opening; settle at close."""
    outcome = Outcome()
    for m in markets:
        sig = signals(m, strategy, params)
        position = Decimal(0)  # + YES contracts, - NO contracts
        cash = Decimal(0)
        for j in range(1, len(m.quotes)):
            q = m.quotes[j]
            if m.close_ns is not None and q.time >= m.close_ns:
                continue
            if end_ns is not None and q.time > end_ns:
                continue
            goal = sig[j - 1] * contracts
            if position == goal:
                continue
            up = goal > position
            if up and q.ask is None or not up and q.bid is None:
                continue
            shown = (q.ask_size if up else q.bid_size) if cap else None
            avail = shown if shown is not None else Decimal("Infinity")
            price: Decimal | None
            while position != goal and avail > 0:
                if up and position < 0:
                    n = min(-position, avail)
                    action, price = "sell_no", ONE - q.ask  # type: ignore[operator]
                elif up:
                    n = min(goal - position, avail)
                    action, price = "buy_yes", q.ask
                elif position > 0:
                    n = min(position, avail)
                    action, price = "sell_yes", q.bid
                else:
                    n = min(position - goal, avail)
                    action, price = "buy_no", ONE - q.bid  # type: ignore[operator]
                assert price is not None
                f = fee(n, price, m.fee_multiplier)
                buying = action.startswith("buy")
                cash += (-n * price if buying else n * price) - f
                position += n if up else -n
                avail -= n
                outcome.fills.append(Fill(m.ticker, q.time, action, n, price, f))
        settled = (
            m.settlement_value is not None
            and m.close_ns is not None
            and (end_ns is None or m.close_ns <= end_ns)
        )
        if settled:
            assert m.settlement_value is not None
            yes_value, no_value = m.settlement_value, ONE - m.settlement_value
        else:
            bids = [q.bid for q in m.quotes if q.bid is not None and (end_ns is None or q.time <= end_ns)]
            asks = [q.ask for q in m.quotes if q.ask is not None and (end_ns is None or q.time <= end_ns)]
            yes_value = bids[-1] if bids else Decimal(0)
            no_value = ONE - asks[-1] if asks else Decimal(0)
        value = position * yes_value if position > 0 else -position * no_value
        outcome.pnl[m.ticker] = cash + value
    return outcome
