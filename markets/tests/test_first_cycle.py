"""The first poll cycle in the embedded mode of `./dev run` (SQLite, separate web and poller
processes): it stores thousands of new markets, and meanwhile the web keeps answering, shows each
page as soon as it is stored, and the poller's log says how far it got."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import httpx
from django.conf import settings

from markets.fakeexchange import QueuedFault, serve
from markets.tests.subprocesses import closed_port, manage


def test_the_web_answers_and_shows_progress_during_the_first_cycle(tmp_path):
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
        "API_THROTTLE_ANON": "off",
    }
    assert manage("migrate", "--noinput", env=env).returncode == 0
    port = closed_port()
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/v1/markets/?page_size=1"
    log = tmp_path / "poller.log"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(api, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the web server did not start"
            time.sleep(0.2)

        with serve(seed=4, extra_markets=12_000) as fake, log.open("w") as out:
            # A little latency per page, as from Kalshi, so the cycle lasts a few seconds.
            fake.exchange.set_faults(queue=[QueuedFault("slow", "/markets", seconds=0.3)] * 20)
            poller = subprocess.Popen(
                [sys.executable, "manage.py", "pollmarkets", "--once"],
                cwd=settings.BASE_DIR,
                env={**env, "KALSHI_API_BASE": fake.base_url},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            seen: list[int] = []
            writes = 0
            while poller.poll() is None:
                response = httpx.get(api, timeout=30)
                assert response.status_code == 200, response.text[:500]
                seen.append(response.json()["count"])
                # A write from another process (the web's sessions, an admin edit) gets its turn
                # between two pages instead of failing with "database is locked".
                with sqlite3.connect(db, timeout=20) as conn:
                    conn.execute("INSERT INTO django_session VALUES (?, 'x', '2099-01-01')", [f"s{writes}"])
                writes += 1
                time.sleep(0.05)
            assert poller.wait(timeout=120) == 0, log.read_text()[-3000:]
            total = len(
                [m for m in fake.exchange.markets.values() if m.status == "active" and not m.is_combo]
            )
    finally:
        web.terminate()
        web.wait(timeout=30)

    # Pages became visible one by one while the cycle ran, not all at its end.
    partial = sorted({n for n in seen if 0 < n < total})
    assert len(partial) >= 3, seen
    assert writes >= 5
    text = log.read_text()
    assert "First poll cycle: storing every open market" in text
    assert "First poll cycle: 10000 markets so far (10000 new) in 10 pages" in text
    assert f"{total} snapshots written" in text
