"""Calibration and movers on SQLite (the zero-setup database), in a subprocess: the same answers."""

from __future__ import annotations

import json

from markets.tests.subprocesses import manage

SCRIPT = """
import json
from datetime import timedelta
from markets import insights
from markets.tests import insight_data
from markets.tests.insight_data import CLOSE, market

insight_data.calibration_set()
c = insights.calibration(horizon=timedelta(hours=1), series="KXCAL")
now = CLOSE - timedelta(days=1)
market("KXMOV-UP-1", status="active", quotes=[(now - timedelta(hours=2), "0.49", "0.51", "100"),
                                             (now - timedelta(minutes=10), "0.59", "0.61", "150")])
m = insights.movers(window=timedelta(hours=1), now=now)
print(json.dumps({
    "vendor": __import__("django.db").db.connection.vendor,
    "counts": [b.count for b in c.bins],
    "seventy": [str(c.bins[7].observed), str(c.bins[7].ci_low), str(c.bins[7].ci_high)],
    "brier": str(c.brier_score),
    "excluded": [c.excluded.closed_early, c.excluded.no_quote, c.excluded.empty_book],
    "scalar": [c.scalar.count, str(c.scalar.mean_settlement_value), str(c.scalar.mean_mid)],
    "gainers": [(g.ticker, str(g.change), str(g.volume)) for g in m.gainers],
}))
"""


def test_it_gives_the_same_answers_on_sqlite(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
    }
    assert manage("migrate", "--noinput", env=env).returncode == 0

    run = manage("shell", "-c", SCRIPT, env=env)

    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["vendor"] == "sqlite"
    assert result["counts"] == [0, 0, 4, 0, 0, 0, 0, 10, 0, 0]
    assert result["seventy"] == ["0.700000", "0.396778", "0.892209"]
    assert result["brier"] == "0.204286"
    assert result["excluded"] == [1, 1, 1]
    assert result["scalar"] == [1, "0.380000", "0.400000"]
    assert result["gainers"] == [["KXMOV-UP-1", "0.100000", "50.00"]]
