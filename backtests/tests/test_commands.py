"""`manage.py runbacktest` end to end on quotes ingested from real Kalshi recordings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from backtests.models import BacktestRun, BacktestTrade, RunKind, RunStatus

pytestmark = pytest.mark.django_db

LAD = "KXMLBGAME-26AUG072140LADAZ-LAD"  # settled NO; book 0.62 / 0.63 in the recorded stream
TB = "KXMLBGAME-26AUG072145TBSEA-TB"  # settled YES


def run_command(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command("runbacktest", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_runs_hold_to_settlement_on_recorded_games_and_saves_the_run(recorded):
    out, err = run_command("--strategy", "hold_to_settlement", "--ticker", LAD, "--ticker", TB)

    run = BacktestRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    assert run.progress == 1.0
    assert run.markets_count == 2
    trades = {t.ticker: t for t in BacktestTrade.objects.filter(run=run)}
    lad = trades[LAD]
    # Bought 10 YES at the recorded ask 0.63 at the quote after the first one; KXMLBGAME charges
    # half fees: ceil(0.07 × 10 × 0.63 × 0.37 × 0.5 = 0.0816) = 0.09. It settled NO.
    assert (lad.side, lad.contracts, lad.entry_price, lad.fees) == (
        "yes",
        Decimal(10),
        Decimal("0.63"),
        Decimal("0.09"),
    )
    assert (lad.exit_reason, lad.exit_price) == ("settlement", Decimal(0))
    assert lad.pnl == Decimal("-6.39")
    tb = trades[TB]
    assert tb.exit_price == Decimal(1)
    assert tb.pnl == Decimal(10) * (1 - tb.entry_price) - tb.fees
    assert Decimal(run.metrics["net_pnl_exact"]) == lad.pnl + tb.pnl
    assert "Net P&L ($)" in out and run.metrics["net_pnl"] in out
    assert "annualised over 365 days" in out
    assert f"Saved as run #{run.pk}" in out
    assert "100%" in err  # the progress bar finished


def test_it_marks_unsettled_candle_markets_to_the_bid(recorded):
    out, _ = run_command(
        "--strategy", "hold_to_settlement", "--series", "KXMLBGAME", "--start", "2026-08-07T18:00Z"
    )
    run = BacktestRun.objects.get()
    assert run.markets_count == 3  # only the candle games have quotes after the start
    assert run.metrics["markets_marked_to_bid"] == 3
    assert "marked to the bid" in out
    assert set(BacktestTrade.objects.values_list("exit_reason", flat=True)) == {"marked_to_bid"}


def test_it_sweeps_a_grid_with_an_out_of_sample_split(recorded):
    out, _ = run_command(
        "--strategy",
        "mean_reversion",
        "--series",
        "KXMLBGAME",
        "--series",
        "KXWNBAGAME",
        "--grid",
        "window=2,3",
        "--grid",
        "entry_z=0.5,1.0",
        "--param",
        "exit_z=0.1",
        "--oos-fraction",
        "0.3",
        "--metric",
        "net_pnl",
    )
    run = BacktestRun.objects.get()
    assert run.kind == RunKind.SWEEP
    assert run.status == RunStatus.SUCCEEDED
    rows = run.sweep_results["rows"]
    assert len(rows) == 4
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert all(r["out_of_sample"] is not None for r in rows)
    assert run.sweep_results["heatmap"]["x"] == "window"
    assert "Top parameter sets by in-sample net_pnl" in out
    assert "Same, out of sample" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--strategy", "nope"],
            "unknown strategy 'nope'. Valid strategies: "
            "favourite_longshot, hold_to_settlement, mean_reversion, momentum",
        ),
        (
            ["--strategy", "momentum", "--param", "windw=3"],
            "unknown parameter(s) for momentum: windw. Valid parameters: lookback",
        ),
        (["--strategy", "momentum", "--param", "lookback"], "--param expects NAME=VALUE"),
        (["--strategy", "momentum", "--grid", "lookback=5,x"], "lookback='x' is not a valid integer"),
        (["--strategy", "momentum", "--start", "yesterday"], "is not an ISO date"),
        (
            ["--strategy", "momentum", "--ticker", "KXNOPE-1"],
            "no market with ticker KXNOPE-1 has been collected",
        ),
        (["--strategy", "momentum", "--oos-fraction", "1.5"], "out-of-sample fraction"),
        (["--strategy", "momentum", "--contracts", "ten"], "contracts and capital must be numbers"),
        (["--strategy", "momentum", "--metric", "luck"], "unknown metric 'luck'"),
    ],
)
def test_it_explains_bad_arguments(args, message):
    with pytest.raises(CommandError) as exc:
        run_command(*args)
    assert message in str(exc.value)
    assert not BacktestRun.objects.exists()


def test_it_says_so_when_the_selection_has_no_data(recorded):
    with pytest.raises(CommandError, match="No quotes stored for series KXWNBAGAME between 2027"):
        run_command(
            "--strategy", "momentum", "--series", "KXWNBAGAME", "--start", "2027-01-01", "--end", "2027-02-01"
        )
    run = BacktestRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "No quotes" in run.error


def test_it_lists_strategies_with_their_parameters():
    out, _ = run_command("--list-strategies")
    assert "mean_reversion:" in out
    assert "window: integer, default 60, 2 .. 1000" in out
