"""The README's first command, `./dev run --offline`, really runs: web, beat, poller, worker and the
fake exchange come up, poll cycles land in SQLite, a few days of hourly history are backfilled from
the exchange (settled markets with their outcomes), and stopping it stops everything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from markets.tests.subprocesses import closed_port


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:  # not created or not migrated yet
        return []


def poll_runs(db: Path) -> list[tuple[str, int]]:
    return query(db, "SELECT outcome, snapshots_written FROM markets_pollrun ORDER BY id")


def backfills(db: Path) -> list[tuple[str, str]]:
    return query(
        db,
        "SELECT outcome, params FROM markets_historyrun WHERE kind = 'backfill' AND finished_at IS NOT NULL",
    )


def test_dev_run_offline_polls_the_fake_exchange_into_sqlite(tmp_path):
    web, exchange = closed_port(), closed_port()
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        # The embedded mode, whatever ./dev test or a developer's .env says.
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",
        "KALSHI_POLL_INTERVAL": "1",
    }
    log = tmp_path / "run.log"
    stray = Path(settings.BASE_DIR) / "control"
    stray_before = stray.exists()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["./dev", "run", "--offline", f"--port={web}", f"--exchange-port={exchange}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (
            len([r for r in poll_runs(db) if r[0] == "ok"]) < 2 or "History ready" not in log.read_text()
        ):
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        runs = poll_runs(db)
        assert len([r for r in runs if r[0] == "ok"]) >= 2, log.read_text()[-3000:]
        assert runs[0][1] > 1000  # the first cycle stores every open market (1,000 synthetic + recorded)
        assert httpx.get(f"http://127.0.0.1:{web}/admin/login/", timeout=10).status_code == 200
        state = httpx.get(f"http://127.0.0.1:{exchange}/_fake/state", timeout=10).json()
        assert state["requests"]["GET /markets"] >= 2
        # Three days of hourly history, settled markets first, both runs complete.
        history = backfills(db)
        assert [outcome for outcome, _ in history] == ["ok", "ok"], log.read_text()[-3000:]
        assert [json.loads(params)["selection"] for _, params in history] == ["status settled", "status open"]
        backfilled = "SELECT market_id FROM markets_marketsnapshot WHERE source = 'backfill'"
        [(rows, markets)] = query(db, f"SELECT count(*), count(DISTINCT market_id) FROM ({backfilled})")
        assert markets > 1000 and rows > markets * 24
        [(settled,)] = query(
            db,
            "SELECT count(*) FROM markets_market WHERE status = 'finalized' AND result IN ('yes', 'no') "
            f"AND id IN ({backfilled})",
        )
        assert settled >= 30
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    text = log.read_text()
    for name in ("web", "poller", "worker", "beat", "exchange", "history"):
        assert f"{name}.1 stopped" in text, f"{name} did not stop:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-5000:]
    # Everything the embedded mode keeps lives in the var directory, the broker's bindings too.
    assert (tmp_path / "celery-broker" / "control" / "polling.exchange").exists()
    assert stray_before or not stray.exists()
