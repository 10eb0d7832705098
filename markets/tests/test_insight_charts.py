"""The insights figures are plain dicts built from results whose values are known."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from markets import insight_charts, insights

D = Decimal


def _calibration(bins: list[insights.CalibrationBin]) -> insights.Calibration:
    return insights.Calibration(
        horizon=timedelta(hours=1),
        bins=bins,
        markets=sum(b.count for b in bins),
        yes=sum(b.yes for b in bins),
        brier_score=None,
        base_rate=None,
        mean_predicted=None,
        expected_calibration_error=None,
        excluded=insights.CalibrationExclusions(),
        scalar=insights.ScalarOutcomes(),
        confidence=0.95,
    )


def _bins() -> list[insights.CalibrationBin]:
    bins = [
        insights.CalibrationBin(i, D(i) / 4, D(i + 1) / 4, 0, 0, None, None, None, None) for i in range(4)
    ]
    bins[2] = insights.CalibrationBin(
        2, D("0.5"), D("0.75"), 10, 7, D("0.700000"), D("0.700000"), D("0.396778"), D("0.892209")
    )
    return bins


def test_it_draws_observed_points_with_asymmetric_wilson_error_bars():
    figure = insight_charts.calibration_figure(_calibration(_bins()))

    bars, diagonal, observed = figure["data"]
    assert diagonal["x"] == [0, 1] and diagonal["y"] == [0, 1]
    assert observed["x"] == [0.7] and observed["y"] == [0.7]
    assert observed["error_y"]["array"] == [float(D("0.892209") - D("0.7"))]
    assert observed["error_y"]["arrayminus"] == [float(D("0.7") - D("0.396778"))]
    assert "10 markets, 7 YES" in observed["text"][0]
    assert "95% CI 39.7%–89.2%" in observed["text"][0]
    assert bars["y"] == [0, 0, 10, 0]
    assert bars["x"] == [0.125, 0.375, 0.625, 0.875]
    assert bars["yaxis"] == "y2"
    assert figure["layout"]["xaxis"]["range"] == [0, 1]
    assert "1h before close" in figure["layout"]["xaxis"]["title"]["text"]
    assert "annotations" not in figure["layout"]
    json.dumps(figure)  # plain JSON: what json_script embeds


def test_it_says_so_when_nothing_is_binned():
    empty = [
        insights.CalibrationBin(i, D(i) / 2, D(i + 1) / 2, 0, 0, None, None, None, None) for i in range(2)
    ]

    figure = insight_charts.calibration_figure(_calibration(empty))

    assert figure["data"][2]["x"] == []
    assert "No settled" in figure["layout"]["annotations"][0]["text"]


def _move(ticker: str, before: str, now: str) -> insights.Move:
    return insights.Move(ticker, "t", "s", "e", None, D(before), D(now), D(now) - D(before), None)


def test_it_draws_movers_as_bars_in_cents():
    result = insights.Movers(
        window=timedelta(hours=1),
        as_of=None,
        basis="",
        gainers=[_move("UP", "0.50", "0.60"), _move("UP2", "0.10", "0.12")],
        losers=[_move("DOWN", "0.40", "0.30")],
        volume_leaders=[],
        compared=3,
        max_spread=None,
    )

    bars = insight_charts.movers_figure(result)["data"][0]

    # Plotly draws the first y category at the bottom: losers below, the biggest gain on top.
    assert bars["y"] == ["DOWN", "UP2", "UP"]
    assert bars["x"] == [-10.0, 2.0, 10.0]
    assert bars["marker"]["color"] == [insight_charts.RED, insight_charts.GREEN, insight_charts.GREEN]
    assert bars["text"][2] == "50.0% → 60.0%"


def test_it_formats_percentages():
    assert insight_charts.percent(D("0.7")) == "70.0%"
    assert insight_charts.percent(D("0.396778")) == "39.7%"
    assert insight_charts.percent(None) == "–"
