"""The embedded setup the README promises (SQLite, file-system broker, no Redis), in a subprocess:
migrate, then two poll cycles against the fake exchange, the second writing only what moved."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from markets.fakeexchange import serve
from markets.tests.subprocesses import manage


def test_it_polls_into_sqlite_without_any_server(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = {
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",  # ./dev test sets one; the embedded mode has none
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
    }
    assert manage("migrate", "--noinput", env=env).returncode == 0

    with serve(seed=41) as fake:
        env["KALSHI_API_BASE"] = fake.base_url
        polled = [m for m in fake.exchange.markets.values() if m.status == "active" and not m.is_combo]

        first = manage("pollmarkets", "--once", env=env)
        assert first.returncode == 0, first.stderr
        assert f"{len(polled)} snapshots written, 0 unchanged" in first.stdout

        moved = fake.exchange.advance(tickers=[polled[0].ticker, polled[5].ticker])
        second = manage("pollmarkets", "--once", env=env)
        assert second.returncode == 0, second.stderr
        assert f"2 snapshots written, {len(polled) - 2} unchanged" in second.stdout
        shown = {t: fake.exchange.markets[t].render() for t in moved}

    # No Redis: the poll lock was a file lock in the var directory.
    assert list(tmp_path.glob("poll-markets-*.lock"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM markets_market").fetchone() == (len(polled),)
        assert conn.execute("SELECT count(*) FROM markets_marketsnapshot").fetchone() == (len(polled) + 2,)
        assert conn.execute("SELECT outcome, count(*) FROM markets_pollrun GROUP BY outcome").fetchall() == [
            ("ok", 2)
        ]
        for ticker, market in shown.items():
            yes_bid, volume = conn.execute(
                "SELECT s.yes_bid, s.volume FROM markets_marketsnapshot s "
                "JOIN markets_market m ON m.id = s.market_id "
                "WHERE m.ticker = ? ORDER BY s.captured_at DESC LIMIT 1",
                [ticker],
            ).fetchone()
            # SQLite keeps Django's decimals as text or numbers; compare exact values.
            assert Decimal(str(yes_bid)) == Decimal(market["yes_bid_dollars"])
            assert Decimal(str(volume)) == Decimal(market["volume_fp"])
