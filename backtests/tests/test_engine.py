"""The engine on its own: hand-computed cases to the cent, the reference loop, lookahead. No database."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtests import engine
from backtests import engine as backtests_engine
from backtests.engine import (
    BacktestConfig,
    BacktestError,
    MarketInfo,
    QuotePanel,
    backtest_frame,
    trading_fee,
)
from backtests.strategies import STRATEGIES, ParameterError, get_strategy
from backtests.tests import reference

T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


def quotes(ticker, rows, *, step=timedelta(minutes=1)):
    """rows: (yes_bid, yes_ask) pairs as strings; None is a missing side."""
    return pd.DataFrame(
        {
            "ticker": [ticker] * len(rows),
            "time": [T0 + i * step for i in range(len(rows))],
            "yes_bid": [None if b is None else D(b) for b, _ in rows],
            "yes_ask": [None if a is None else D(a) for _, a in rows],
        }
    )


def market(ticker="M", settlement="1", close=T0 + timedelta(days=1), **kw):
    return MarketInfo(
        ticker=ticker, settlement_value=None if settlement is None else D(settlement), close_time=close, **kw
    )


# ---- hand-computed cases -------------------------------------------------------------------------------


def test_it_buys_10_yes_at_040_and_settles_yes_for_583():
    df = quotes("M", [("0.38", "0.40"), ("0.38", "0.40"), ("0.45", "0.47")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market()])
    trade = r.trades.iloc[0]
    assert (trade.side, trade.contracts, trade.entry_price) == ("yes", D(10), D("0.40"))
    assert trade.fees == D("0.17")  # ceil(0.07 × 10 × 0.4 × 0.6 = 0.168)
    assert trade.exit_reason == "settlement"
    assert trade.pnl == D("5.83")  # 10 × 0.60 − 0.17
    assert r.net_pnl == D("5.83")
    assert r.metrics["net_pnl"] == "5.83"
    assert r.metrics["fees_paid"] == "0.17"
    assert r.equity.equity.iloc[-1] == D("1005.83")


def test_it_scales_the_fee_by_the_fee_multiplier():
    df = quotes("M", [("0.38", "0.40"), ("0.38", "0.40")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market(fee_multiplier=D("0.5"))])
    assert r.trades.iloc[0].fees == D("0.09")  # ceil(0.084)
    assert r.net_pnl == D("5.91")


def test_it_settles_a_scalar_outcome_for_both_sides():
    df = quotes("M", [("0.40", "0.40"), ("0.40", "0.40")])
    yes = backtest_frame(df, "hold_to_settlement", {"side": "yes"}, markets=[market(settlement="0.38")])
    assert yes.net_pnl == D("-0.37")  # 10 × (0.38 − 0.40) − 0.17
    no = backtest_frame(df, "hold_to_settlement", {"side": "no"}, markets=[market(settlement="0.38")])
    # NO bought at 1 − 0.40 = 0.60, pays 1 − 0.38 = 0.62
    assert no.trades.iloc[0].entry_price == D("0.60")
    assert no.net_pnl == D("0.03")


def test_it_holds_a_no_position_to_a_no_settlement():
    df = quotes("M", [("0.40", "0.42"), ("0.40", "0.42")])
    r = backtest_frame(df, "hold_to_settlement", {"side": "no"}, markets=[market(settlement="0")])
    trade = r.trades.iloc[0]
    assert (trade.side, trade.entry_price, trade.fees) == ("no", D("0.60"), D("0.17"))
    assert r.fills_frame.action.tolist() == ["buy_no"]
    assert r.net_pnl == D("3.83")  # 10 × 0.40 − 0.17


def test_it_does_not_fill_against_an_empty_side():
    # No yes ask at the second quote (Kalshi's "1.0000"), nor at the third (legacy 0): the buy waits.
    df = quotes("M", [("0.38", "0.40"), ("0.38", "1.00"), ("0.38", "0"), ("0.41", "0.43")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market()])
    fill = r.fills_frame.iloc[0]
    assert fill.time == T0 + timedelta(minutes=3)
    assert fill.price == D("0.43")
    one_sided = quotes("M", [("0.38", None), ("0.38", "1.0000"), ("0.39", None)])
    r2 = backtest_frame(one_sided, "hold_to_settlement", markets=[market()])
    assert r2.trades.empty
    assert r2.net_pnl == 0


def test_it_fills_at_the_next_quote_not_the_signal_quote():
    df = quotes("M", [("0.30", "0.31"), ("0.50", "0.52")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market()])
    assert r.fills_frame.iloc[0].price == D("0.52")
    # A single quote can decide but never fill.
    assert backtest_frame(df.iloc[:1], "hold_to_settlement", markets=[market()]).trades.empty


def test_it_does_not_trade_at_or_after_close():
    df = quotes("M", [("0.40", "0.41"), ("0.40", "0.41"), ("0.40", "0.41")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market(close=T0 + timedelta(minutes=1))])
    assert r.trades.empty


def test_it_marks_an_unsettled_market_to_the_bid_and_flags_it():
    df = quotes("M", [("0.40", "0.42"), ("0.40", "0.42"), ("0.45", "0.47"), ("0", "0.46")])
    r = backtest_frame(df, "hold_to_settlement", markets=[market(settlement=None)])
    trade = r.trades.iloc[0]
    assert trade.exit_reason == "marked_to_bid"
    assert trade.exit_price == D("0.45")  # the last bid; the final quote has none
    assert r.net_pnl == D("0.12")  # 10 × (0.45 − 0.42) − ceil(0.07×10×0.42×0.58 = 0.17052)
    assert not r.positions.settled.iloc[0]
    assert any("marked to the bid" in w for w in r.warnings)


def test_it_ignores_an_outcome_that_lies_after_the_end_of_the_test():
    df = quotes("M", [("0.40", "0.42"), ("0.40", "0.42"), ("0.50", "0.52")])
    r = backtest_frame(
        df, "hold_to_settlement", markets=[market(settlement="1")], end=T0 + timedelta(minutes=5)
    )
    assert r.trades.iloc[0].exit_reason == "marked_to_bid"
    assert r.net_pnl == D("0.62")  # 10 × (0.50 − 0.42) − 0.18


def test_it_caps_fills_at_the_displayed_size():
    df = quotes("M", [("0.40", "0.42"), ("0.40", "0.42"), ("0.40", "0.42"), ("0.40", "0.42")])
    df["yes_ask_size"] = [D("100"), D("4"), D("3.5"), D("100")]
    r = backtest_frame(df, "hold_to_settlement", markets=[market()], cap_to_displayed_size=True)
    assert r.fills_frame.contracts.tolist() == [D(4), D("3.5"), D("2.5")]
    # Fees are per fill, each rounded up to the cent.
    assert r.fills_frame.fee.tolist() == [D("0.07"), D("0.06"), D("0.05")]
    assert r.trades.iloc[0].contracts == D(10)
    assert r.net_pnl == D("10") * D("0.58") - D("0.18")


def test_it_flips_through_two_fills_at_one_quote():
    panel = QuotePanel.from_frame(quotes("M", [("0.40", "0.42")] * 4), [market(settlement="0")])
    target = np.array([1, -1, -1, -1], dtype=np.int8)
    r = engine.run_backtest(panel, "hold_to_settlement", target=target)
    assert r.fills_frame.action.tolist() == ["buy_yes", "sell_yes", "buy_no"]
    assert r.fills_frame.time.tolist() == [T0 + timedelta(minutes=1)] + [T0 + timedelta(minutes=2)] * 2
    # yes: −0.42×10 −0.18 + 0.40×10 −0.17 ; no: −0.60×10 −0.17, settles NO at 1 × 10
    assert r.net_pnl == D("-4.20") - D("0.18") + D("4.00") - D("0.17") - D("6.00") - D("0.17") + D("10")
    assert [t.exit_reason for t in r.trades.itertuples()] == ["signal", "settlement"]


def test_it_computes_kalshis_fee_table():
    assert trading_fee(10, "0.50") == D("0.18")  # ⌈0.175⌉
    assert trading_fee(10, "0.40") == D("0.17")
    assert trading_fee(100, "0.50") == D("1.75")  # exactly on a cent: no extra cent
    assert trading_fee(1, "0.99") == D("0.01")
    assert trading_fee(10, "0.40", multiplier="0.5") == D("0.09")
    assert trading_fee(10, "0.40", maker=True, fee_type="quadratic_with_maker_fees") == D("0.05")  # ⌈0.042⌉
    assert trading_fee(10, "0.40", maker=True, fee_type="quadratic") == 0
    assert trading_fee(10, "0.40", maker=True, fee_type="quadratic_with_combo_maker_fees") == D("0.09")


def test_it_computes_fees_exactly_for_every_cent_and_many_sizes():
    for cents in range(1, 100):
        price = D(cents) / 100
        for contracts in (D(1), D("0.01"), D("2.5"), D(10), D(100), D("1234.56")):
            expected = (D("0.07") * contracts * price * (1 - price)).quantize(
                D("0.01"), rounding="ROUND_CEILING"
            )
            assert trading_fee(contracts, price) == expected


def test_it_keeps_the_equity_curve_cent_exact():
    rng = random.Random(7)
    df, infos = random_frame(rng, markets=4, rows=400)
    r = backtest_frame(df, "mean_reversion", {"window": 20, "entry_z": 1.5, "exit_z": 0.2}, markets=infos)
    assert len(r.trades) > 5
    assert sum(r.trades.pnl, D(0)) == r.net_pnl
    assert r.equity.pnl.iloc[-1] == r.net_pnl
    assert sum(r.positions.pnl, D(0)) == r.net_pnl
    assert D(r.metrics["fees_paid"]) == sum(r.fills_frame.fee, D(0))


def test_it_rejects_bad_frames_and_parameters():
    with pytest.raises(BacktestError, match="yes_ask"):
        backtest_frame(pd.DataFrame({"ticker": [], "time": [], "yes_bid": []}), "momentum")
    with pytest.raises(ParameterError, match="Valid strategies: favourite_longshot, hold_to_settlement"):
        get_strategy("nope")
    with pytest.raises(
        ParameterError, match=r"unknown parameter\(s\) for momentum: windw. Valid parameters: lookback"
    ):
        get_strategy("momentum").validate({"windw": 3})
    with pytest.raises(ParameterError, match="above the maximum"):
        get_strategy("mean_reversion").validate({"window": "5000"})
    with pytest.raises(ParameterError, match="not a valid integer"):
        get_strategy("mean_reversion").validate({"window": "ten"})
    with pytest.raises(ParameterError, match="exit_z"):
        get_strategy("mean_reversion").validate({"entry_z": 1, "exit_z": 2})
    with pytest.raises(BacktestError, match="2 decimals"):
        BacktestConfig(contracts=D("1.005"))


# ---- metrics ---------------------------------------------------------------------------------------------


def test_it_annualises_daily_sharpe_over_365_days():
    # Hold YES for days while the bid moves; compare with a direct pandas computation.
    rows = [("0.50", "0.51")] + [(f"0.{50 + (i % 7) - 3:02d}", "0.60") for i in range(1, 30)]
    df = quotes("M", rows, step=timedelta(hours=13))
    r = backtest_frame(df, "hold_to_settlement", markets=[market(settlement=None)])
    eq = r.equity.set_index("time").equity.astype(float)
    daily = eq.resample("1D").last().ffill()
    daily = pd.concat([pd.Series([1000.0]), daily.reset_index(drop=True)])
    rets = daily.pct_change().dropna()
    assert r.metrics["sharpe"] == pytest.approx(rets.mean() / rets.std() * np.sqrt(365))
    downside = np.sqrt(np.mean(np.minimum(rets, 0) ** 2))
    assert r.metrics["sortino"] == pytest.approx(rets.mean() / downside * np.sqrt(365))
    assert "365" in r.metrics["annualisation"]


def test_it_measures_drawdown_win_rate_and_brier():
    a = quotes("A", [("0.40", "0.40"), ("0.40", "0.40"), ("0.20", "0.22"), ("0.30", "0.32")])
    b = quotes("B", [("0.70", "0.70"), ("0.70", "0.70")])
    r = backtest_frame(pd.concat([a, b]), "hold_to_settlement", markets=[market("A", "1"), market("B", "0")])
    assert r.metrics["trades"] == 2
    assert r.metrics["win_rate"] == 0.5
    # A: +6 − 0.17 = 5.83; B: −7 − ceil(0.147) = −7.15
    assert r.net_pnl == D("-1.32")
    assert r.metrics["profit_factor"] == pytest.approx(5.83 / 7.15)
    assert r.metrics["brier_score"] == pytest.approx(((0.4 - 1) ** 2 + (0.7 - 0) ** 2) / 2)
    # Worst point: A bought at 0.40 marked at 0.20 (−2.00 −0.17) and B at 0.70 marked 0.70 (−0.15).
    assert D(r.metrics["max_drawdown_dollars"]) == D("2.32")


# ---- the independent reference loop ---------------------------------------------------------------------


def random_frame(rng, *, markets=5, rows=300, sizes=False):
    frames, infos = [], []
    for m in range(markets):
        ticker = f"R{m}"
        bid = rng.randint(10, 80)
        t = T0 + timedelta(seconds=rng.randint(0, 3600))
        recs = []
        for _ in range(rows):
            bid = min(97, max(1, bid + rng.choice([-2, -1, 0, 0, 0, 1, 2])))
            ask = bid + rng.choice([1, 1, 2, 3])
            b: D | None = D(bid) / 100
            a: D | None = D(min(ask, 99)) / 100
            roll = rng.random()
            if roll < 0.03:
                b = None  # no bid
            elif roll < 0.06:
                a = None  # no ask
            elif roll < 0.07:
                a = D(0)  # legacy "no ask"
            rec = {"ticker": ticker, "time": t, "yes_bid": b, "yes_ask": a}
            if sizes:
                rec["yes_bid_size"] = D(rng.randint(0, 1500)) / 100
                rec["yes_ask_size"] = D(rng.randint(0, 1500)) / 100
            recs.append(rec)
            t += timedelta(seconds=rng.choice([15, 15, 30, 60, 600]))
        frames.append(pd.DataFrame(recs))
        close = T0 + timedelta(seconds=rng.randint(3600, rows * 60))
        settlement = rng.choice(["1", "0", "0.38", None])
        infos.append(
            MarketInfo(
                ticker,
                D(settlement) if settlement else None,
                close,
                fee_multiplier=rng.choice([D(1), D("0.5")]),
            )
        )
    return pd.concat(frames, ignore_index=True), infos


def to_reference(df, infos):
    out = []
    for info in infos:
        rows = df[df.ticker == info.ticker]
        qs = [
            reference.Quote(
                time=int(pd.Timestamp(r.time).value),
                bid=r.yes_bid if r.yes_bid is not None and r.yes_bid > 0 else None,
                ask=r.yes_ask if r.yes_ask is not None and 0 < r.yes_ask < 1 else None,
                bid_size=getattr(r, "yes_bid_size", None),
                ask_size=getattr(r, "yes_ask_size", None),
            )
            for r in rows.itertuples()
        ]
        out.append(
            reference.Market(info.ticker, qs, info.settlement_value, info.close_ns, info.fee_multiplier)
        )
    return out


PARAMS: dict[str, list[dict[str, Any]]] = {
    "mean_reversion": [
        {"window": 10, "entry_z": 1.2, "exit_z": 0.3},
        {"window": 30, "entry_z": 2.0, "exit_z": 0.0, "allow_no": False},
    ],
    "momentum": [
        {"lookback": 8, "exit_lookback": 4, "threshold": 0.0},
        {"lookback": 20, "exit_lookback": 10, "threshold": 0.02},
    ],
    "hold_to_settlement": [
        {"side": "yes"},
        {"side": "favourite", "max_price": 0.6},
        {"side": "longshot"},
        {"side": "no", "max_price": 0.5},
    ],
    "favourite_longshot": [{"hours_before_close": 2.0, "min_price": 0.55, "max_price": 0.9}],
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("cap", [False, True])
def test_it_agrees_trade_for_trade_with_a_simple_event_loop(seed, strategy, cap):
    rng = random.Random(seed * 100 + len(strategy))
    df, infos = random_frame(rng, sizes=cap)
    end = T0 + timedelta(hours=rng.randint(2, 6))
    total = 0
    for params in PARAMS[strategy]:
        full = get_strategy(strategy).validate(params)
        r = backtest_frame(df, strategy, params, markets=infos, end=end, cap_to_displayed_size=cap)
        ref = reference.run(
            to_reference(df[df.time <= end], infos),
            strategy,
            full,
            end_ns=int(pd.Timestamp(end).value),
            cap=cap,
        )
        ff = r.fills_frame
        ours = list(
            zip(
                ff.ticker.tolist(),
                [int(t.value) for t in ff.time],
                ff.action.tolist(),
                ff.contracts.tolist(),
                ff.price.tolist(),
                ff.fee.tolist(),
                strict=True,
            )
        )
        theirs = [(f.ticker, f.time, f.action, f.contracts, f.price, f.fee) for f in ref.fills]
        assert ours == theirs, (strategy, params)
        total += len(ours)
        pnl = dict(zip(r.positions.ticker, r.positions.pnl, strict=True))
        assert {t: pnl[t] for t in ref.pnl} == ref.pnl
    assert total > 0


# ---- lookahead ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_it_never_lets_later_data_change_an_earlier_decision(strategy):
    rng = random.Random(42)
    df, infos = random_frame(rng, markets=3, rows=500)
    df = df.sort_values(["ticker", "time"], ignore_index=True)
    cut = T0 + timedelta(hours=3)
    later = df.time > cut
    perturbed = df.copy()
    noise = np.random.default_rng(1)
    perturbed.loc[later, "yes_bid"] = [D(int(x)) / 100 for x in noise.integers(1, 50, later.sum())]
    perturbed.loc[later, "yes_ask"] = [D(int(x)) / 100 for x in noise.integers(51, 99, later.sum())]
    # Outcomes are in the future too.
    flipped = [
        MarketInfo(
            i.ticker,
            D(1) - i.settlement_value if i.settlement_value is not None else D(1),
            i.close_time,
            fee_multiplier=i.fee_multiplier,
        )
        for i in infos
    ]
    for params in PARAMS[strategy]:
        a = backtest_frame(df, strategy, params, markets=infos)
        b = backtest_frame(perturbed, strategy, params, markets=flipped)
        before = (df.time <= cut).to_numpy()
        assert np.array_equal(a.target[before], b.target[before])
        fa, fb = a.fills_frame, b.fills_frame
        assert list(fa[fa.time <= cut].itertuples(index=False)) == list(
            fb[fb.time <= cut].itertuples(index=False)
        )
    assert before.sum() > 100 and (~before).sum() > 100


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("oos_fraction", [0.0, 0.3])
def test_a_sweep_gives_each_parameter_set_the_metrics_of_a_single_run(seed, oos_fraction):
    """Sweeps take shortcuts single runs do not (per-row lookup arrays built once, events ordered by
    a cached time rank): every row of a sweep must still equal a plain run on a fresh panel."""
    from backtests.sweeps import run_sweep, split_panels, split_time

    rng = random.Random(seed)
    df, infos = random_frame(rng, markets=8)
    # Several markets settle after the last quote, at different instants with no quote between.
    last = pd.Timestamp(df.time.max()).to_pydatetime()
    infos = [
        dataclasses.replace(
            i, settlement_value=D("1"), close_time=last + timedelta(minutes=rng.randint(1, 90))
        )
        if k % 2
        else i
        for k, i in enumerate(infos)
    ]
    grid: dict[str, list[Any]] = {"window": [5, 12], "entry_z": [1.0, 1.8], "exit_z": [0.0, 0.4]}
    sweep = run_sweep(QuotePanel.from_frame(df, infos), "mean_reversion", grid, oos_fraction=oos_fraction)
    assert len(sweep.rows) == 8
    for row in sweep.rows:
        panel = QuotePanel.from_frame(df, infos)
        if not oos_fraction:
            assert row.in_sample == backtests_engine.run_backtest(panel, "mean_reversion", row.params).metrics
            continue
        target = get_strategy("mean_reversion").target(panel, row.params)
        split_ns = split_time(panel, oos_fraction)
        assert split_ns is not None
        is_panel, oos_panel, is_mask, oos_mask = split_panels(panel, split_ns)
        ins = backtests_engine.run_backtest(is_panel, "mean_reversion", row.params, target=target[is_mask])
        oos = backtests_engine.run_backtest(oos_panel, "mean_reversion", row.params, target=target[oos_mask])
        assert (row.in_sample, row.out_of_sample) == (ins.metrics, oos.metrics)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_change_points_handed_over_by_a_strategy_match_the_engines_own(seed):
    """Mean reversion finds its change points on runs of quotes, and a sweep maps them onto the
    halves of a time split: both must be exactly the rows `target_changes` finds by a full scan."""
    from backtests.sweeps import SubPanelChanges, split_panels, split_time

    rng = random.Random(seed)
    df, infos = random_frame(rng, markets=8)
    panel = QuotePanel.from_frame(df, infos)
    strategy = get_strategy("mean_reversion")
    for oos_fraction in (0.1, 0.3, 0.8):
        split_ns = split_time(panel, oos_fraction)
        assert split_ns is not None
        is_panel, oos_panel, is_mask, oos_mask = split_panels(panel, split_ns)
        halves = [(is_panel, is_mask), (oos_panel, oos_mask)]
        for window, entry_z, exit_z, allow_no in ((3, 1.0, 0.0, True), (12, 1.8, 0.4, False)):
            params = strategy.validate(
                {"window": window, "entry_z": entry_z, "exit_z": exit_z, "allow_no": allow_no}
            )
            target, changes = strategy.target_and_changes(panel, params)
            assert np.array_equal(target, strategy.target(panel, params))
            assert np.array_equal(changes, backtests_engine.target_changes(panel, target))
            for half, mask in halves:
                mapped = SubPanelChanges(panel, mask)(target, changes)
                assert np.array_equal(mapped, backtests_engine.target_changes(half, target[mask]))
