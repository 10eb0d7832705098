"""How metrics are written for people, in the command's table and on the pages."""

from __future__ import annotations

from typing import Any

METRIC_ROWS = [
    ("net_pnl", "Net P&L ($)"),
    ("fees_paid", "Fees paid ($)"),
    ("return_on_capital", "Return on capital"),
    ("sharpe", "Sharpe (daily, ×√365)"),
    ("sortino", "Sortino (daily, ×√365)"),
    ("max_drawdown", "Max drawdown"),
    ("max_drawdown_duration_seconds", "Max drawdown duration"),
    ("calmar", "Calmar"),
    ("win_rate", "Win rate"),
    ("profit_factor", "Profit factor"),
    ("trades", "Trades"),
    ("average_hold_seconds", "Average hold"),
    ("exposure", "Exposure"),
    ("brier_score", "Brier score of entries"),
]
PERCENT = {"return_on_capital", "max_drawdown", "win_rate", "exposure"}
DURATION = {"max_drawdown_duration_seconds", "average_hold_seconds"}


def format_metric(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name in PERCENT:
        return f"{float(value):.2%}"
    if name in DURATION:
        seconds = float(value)
        if seconds >= 86_400:
            return f"{seconds / 86_400:.1f} d"
        if seconds >= 3600:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 60:.1f} min"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
