"""Benchmark of the Show pages on 10k markets and 10M snapshots in PostgreSQL.

    ./dev bench show [--rebuild] [--duration 10] [--connections 8] [--workers 2]

Measures, in one run and against baselines from the same run:

1. the latest-quote query behind the market table (count + first page, every sort) against a
   naive `SELECT DISTINCT ON (market_id) ... ORDER BY market_id, captured_at DESC` over snapshots;
2. a chart over a market with 1M snapshots (`timeseries.downsample`, ≤ 2,000 points) against an
   exact GROUP BY over all of its rows;
3. the snapshot admin (changelist, filters, date drill-down, search, detail) at 10M rows;
4. the table page over real HTTP (gunicorn, DEBUG off) with `wrk` (or a Python client if wrk is
   not installed): requests/s and latency percentiles, against the cheapest page of the same
   stack (a 404 through the same middleware and base template).

The dataset (generated with SQL generate_series, in time order like real polling, backfilled rows
written after polled ones like a real backfill) is built once and reused; --rebuild forces it.
Targets: table query ≤ 30 ms and ≥ 100× the naive query; table page ≥ 300 req/s with p50 ≤ 20 ms;
chart ≤ 50 ms for ≤ 2,000 points. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
DATASET_VERSION = "show-v1"
N_MARKETS = 10_000
N_SNAPSHOTS = 10_000_000
BIG_SNAPSHOTS = 1_000_000
OTHERS_PER_SLOT = 9  # (BIG_SNAPSHOTS slots) x (1 big + 9 others) = 10M rows
BACKFILL_SLOTS = 200_000  # the oldest 20% of slots were backfilled, after polling started
SLOT = timedelta(seconds=15)
BIG_TICKER = "BENCHM-BIG"
SMALL_TICKER = "BENCHM-00042"
PORTS = range(18210, 18240)
TARGETS = {"table_ms": 30.0, "table_ratio": 100.0, "rps": 300.0, "p50_ms": 20.0, "chart_ms": 50.0}

results: list[tuple[str, str]] = []


def report(label: str, value: str) -> None:
    results.append((label, value))
    print(f"  {label:<58} {value}", flush=True)


def timed(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> list[float]:
    """Milliseconds per call, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples):7.2f} ms  (min {min(samples):.2f}, max {max(samples):.2f})"


# --------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit(
            "The Show benchmark needs PostgreSQL: set BENCH_DATABASE_URL "
            "(./dev bench exports it as DATABASE_URL), e.g. postgres://postgres@127.0.0.1:5432/kalshi_insights_bench"
        )


def database_name() -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


def ensure_database() -> None:
    """Create the bench database if it does not exist yet (connects to the server's `postgres` db)."""
    import psycopg
    from django.db import connection

    cfg = connection.settings_dict
    try:
        psycopg.connect(
            host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], password=cfg["PASSWORD"] or None,
            dbname=cfg["NAME"], connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            sys.exit(f"Cannot connect to the bench database {cfg['NAME']!r}: {exc}")
        with psycopg.connect(
            host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], password=cfg["PASSWORD"] or None,
            dbname="postgres", autocommit=True,
        ) as admin:  # fmt: skip
            admin.execute(f'CREATE DATABASE "{cfg["NAME"]}"')


def dataset_built() -> dict[str, Any] | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_show_dataset (version text PRIMARY KEY, info jsonb)")
        cursor.execute("SELECT info FROM bench_show_dataset WHERE version = %s", [DATASET_VERSION])
        row = cursor.fetchone()
    if row is None:
        return None
    info = row[0]
    return info if isinstance(info, dict) else json.loads(info)


def build_dataset() -> dict[str, Any]:
    from django.db import connection

    name = database_name()
    if "bench" not in name:
        sys.exit(f"Refusing to wipe {name!r}: the bench database's name must contain 'bench'.")
    end = datetime.now(UTC).replace(microsecond=0, second=0)
    start = end - SLOT * BIG_SNAPSHOTS
    print(
        f"Building the dataset in {name!r}: {N_MARKETS:,} markets, {N_SNAPSHOTS:,} snapshots (a few minutes)…"
    )

    def run(label: str, sql: str, params: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)

    run(
        "truncate",
        "TRUNCATE markets_marketsnapshot, markets_market, markets_event, markets_series, markets_pollrun "
        "RESTART IDENTITY CASCADE",
    )
    params = {"start": start, "end": end, "slot": SLOT, "markets": N_MARKETS, "slots": BIG_SNAPSHOTS}
    run(
        "series",
        """
        INSERT INTO markets_series (ticker, title, category, categories, tags, frequency, fee_type,
            fee_multiplier, contract_url, contract_terms_url, settlement_sources, exchange_index, created_at,
            synced_at)
        SELECT 'BENCH' || i, 'Benchmark series ' || i,
               (ARRAY['Politics','Sports','Economics','Climate and Weather','Crypto','Financials',
                      'Entertainment','Science and Technology','Companies','World'])[1 + i % 10],
               '[]', '[]', 'daily', 'quadratic', 1, '', '', '[]', 0, now(), now()
        FROM generate_series(0, 99) i
        """,
    )
    run(
        "events",
        """
        INSERT INTO markets_event (ticker, series_id, title, sub_title, category, mutually_exclusive,
            collateral_return_type, strike_period, fee_type_override, exchange_index, created_at, synced_at)
        SELECT 'BENCH' || (i % 100) || '-EV' || lpad(i::text, 4, '0'), s.id, 'Benchmark event ' || i, '',
               s.category,
               true, '', '', '', 0, now(), now()
        FROM generate_series(0, 999) i JOIN markets_series s ON s.ticker = 'BENCH' || (i % 100)
        """,
    )
    # Market 1 is the 1M-snapshot market; 85% of markets are open. The raw JSON is about the
    # size Kalshi returns (~1.5 kB), so the table query pays for not loading it.
    run(
        "markets",
        """
        INSERT INTO markets_market (ticker, event_id, market_type, title, subtitle, yes_sub_title,
            no_sub_title,
            status, result, expiration_value, strike_type, functional_strike, can_close_early,
            early_close_condition, rules_primary, rules_secondary, notional_value, price_level_structure,
            price_ranges, exchange_index, first_seen_at, open_time, close_time, expiration_time,
            yes_bid, yes_ask, no_bid, no_ask, last_price, previous_price, previous_yes_bid, previous_yes_ask,
            yes_bid_size, yes_ask_size, volume, volume_24h, open_interest, updated_time, last_snapshot_at,
            raw)
        SELECT CASE WHEN i = 1 THEN 'BENCHM-BIG' ELSE 'BENCHM-' || lpad(i::text, 5, '0') END,
               e.id, 'binary', 'Will benchmark thing ' || i || ' happen before the deadline?', '',
               'Option ' || (i %% 10), 'Not option ' || (i %% 10),
               CASE WHEN i %% 20 = 3 THEN 'finalized' WHEN i %% 20 = 7 THEN 'closed'
                    WHEN i %% 20 = 11 THEN 'initialized' ELSE 'active' END,
               CASE WHEN i %% 20 = 3 THEN 'yes' ELSE '' END, '', 'structured', '', false, '',
               repeat('If the benchmark thing happens, the market resolves to Yes. ', 4),
               repeat('Secondary rules text. ', 20), 1, 'linear_cent',
               '[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]', 0, now(),
               %(end)s - (i %% 300) * interval '1 hour', %(end)s + (i %% 720) * interval '1 hour',
               %(end)s + (i %% 720) * interval '1 hour',
               q.bid, q.ask, 1 - q.ask, 1 - q.bid, q.last, q.prev, q.bid, q.ask,
               100 + i %% 900, 50 + i %% 700, (i * 7919) %% 1000000, (i * 104729) %% 100000,
               (i * 31) %% 50000, %(end)s, %(end)s,
               jsonb_build_object('ticker', 'BENCHM-' || i, 'rules_primary', repeat('x', 600),
                                  'rules_secondary', repeat('y', 600), 'yes_bid_dollars', q.bid::text)
        FROM generate_series(1, %(markets)s) i
        JOIN markets_event e
          ON e.ticker = 'BENCH' || ((i / 10) %% 100) || '-EV' || lpad(((i / 10) %% 1000)::text, 4, '0')
        CROSS JOIN LATERAL (
            SELECT CASE WHEN i %% 50 = 0 THEN 0 ELSE ((i * 37) %% 90 + 4) / 100.0 END AS bid,
                   CASE WHEN i %% 50 = 0 THEN 1 ELSE ((i * 37) %% 90 + 5 + i %% 4) / 100.0 END AS ask,
                   ((i * 37) %% 90 + 5) / 100.0 AS last,
                   greatest(0.01, least(0.99, ((i * 37) %% 90 + 5 + (i * 13) %% 11 - 5) / 100.0)) AS prev
        ) q
        """,
        params,
    )

    # Snapshots in slot order (as polling writes them): per 15 s slot, the big market and 9 others.
    snapshot_sql = """
        INSERT INTO markets_marketsnapshot (market_id, captured_at, source, yes_bid, yes_ask, no_bid, no_ask,
            last_price, yes_bid_size, yes_ask_size, volume, volume_24h, open_interest)
        SELECT m, %(start)s + s * %(slot)s, %(source)s,
               p.bid, p.bid + 0.01 * (1 + (s + m) %% 3), 0.99 - p.bid, 1 - p.bid, p.bid + 0.01,
               100 + (s + m) %% 500, 80 + (s * m) %% 400, s * 1.5 + m, 1000 + m, 5000 + m
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) s
        CROSS JOIN generate_series(0, %(others)s) k
        CROSS JOIN LATERAL (
            SELECT CASE WHEN k = %(others)s THEN 1 ELSE (s * %(others)s + k) %% (%(markets)s - 1) + 2 END AS m
        ) mm
        CROSS JOIN LATERAL (
            SELECT round((0.45 + 0.35 * sin((s + m * 1000) / 4000.0)
                          + ((s * 7 + m) %% 5) / 100.0)::numeric, 2)
                   AS bid
        ) p
    """
    common = {**params, "others": OTHERS_PER_SLOT}
    run(
        "snapshots, polled",
        snapshot_sql,
        {**common, "source": "poll", "first": BACKFILL_SLOTS + 1, "last": BIG_SNAPSHOTS},
    )
    run(
        "snapshots, backfilled later",
        snapshot_sql,
        {**common, "source": "backfill", "first": 1, "last": BACKFILL_SLOTS},
    )
    # A week of poll cycles every 15 s, with two gaps (the status page's gap query reads them).
    run(
        "poll runs",
        """
        INSERT INTO markets_pollrun (started_at, finished_at, trigger, pages, markets_seen, markets_created,
            markets_updated, snapshots_written, unchanged_skipped, errors, requests, outcome, error_messages)
        SELECT %(end)s - n * interval '15 seconds',
               %(end)s - n * interval '15 seconds' + interval '2 seconds',
               'celery', 10, 8500, 0, 3, 400, 8100, 0, 10, 'ok', '[]'
        FROM generate_series(0, 40319) n
        WHERE n NOT BETWEEN 5000 AND 5120 AND n NOT BETWEEN 20000 AND 20400
        """,
        params,
    )
    run("vacuum analyze", "VACUUM ANALYZE")
    info = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "markets": N_MARKETS,
        "snapshots": N_SNAPSHOTS,
    }
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM bench_show_dataset")
        cursor.execute(
            "INSERT INTO bench_show_dataset (version, info) VALUES (%s, %s)",
            [DATASET_VERSION, json.dumps(info)],
        )
    return info


# --------------------------------------------------------------------------------------------------
# 1. The table's latest-quote query
# --------------------------------------------------------------------------------------------------


def bench_table_query() -> float:
    from django.core.paginator import Paginator
    from django.db import connection

    from markets.forms import PAGE_SIZE
    from markets.models import TABLE_SORTS, Market

    print("\n1. Latest quotes for the market table (count + first page of 50)")
    worst = 0.0
    for sort in TABLE_SORTS:
        qs = Market.objects.for_table().in_status_group("open").sorted_by(sort)

        def page(qs: Any = qs) -> None:
            p = Paginator(qs, PAGE_SIZE).get_page(1)
            list(p.object_list)

        samples = timed(page, repeat=20, warmup=2)
        worst = max(worst, statistics.median(samples))
        report(f"table query, sort={sort}", ms(samples))
    search = Market.objects.for_table().in_status_group("open").search("thing 42").sorted_by("volume")
    report(
        "table query, search 'thing 42', sort=volume",
        ms(timed(lambda: list(Paginator(search, PAGE_SIZE).get_page(1).object_list), repeat=10)),
    )

    naive_sql = (
        "SELECT DISTINCT ON (market_id) market_id, captured_at, yes_bid, yes_ask, last_price "
        "FROM markets_marketsnapshot ORDER BY market_id, captured_at DESC"
    )

    def naive() -> None:
        with connection.cursor() as cursor:
            cursor.execute(naive_sql)
            cursor.fetchall()

    naive_samples = timed(naive, repeat=2, warmup=0)
    naive_ms = min(naive_samples)
    report("baseline: naive DISTINCT ON over 10M snapshots", ms(naive_samples))
    report(
        "=> slowest sort vs target ≤ 30 ms; speed-up vs naive (target ≥ 100×)",
        f"{worst:.2f} ms; {naive_ms / worst:,.0f}×",
    )
    return worst


# --------------------------------------------------------------------------------------------------
# 2. Charts over the 1M-snapshot market
# --------------------------------------------------------------------------------------------------


def bench_chart(info: dict[str, Any]) -> None:
    from django.db import connection

    from markets import timeseries
    from markets.models import Market

    print("\n2. Chart data for the market with 1,000,000 snapshots (≤ 2,000 points)")
    big = Market.objects.get(ticker=BIG_TICKER)
    end = datetime.fromisoformat(info["end"])
    ranges = {
        "all (1,000,000 rows)": None,
        "1 m (172,800 rows)": timedelta(days=30),
        "1 w (40,320 rows)": timedelta(weeks=1),
        "1 d (5,760 rows)": timedelta(days=1),
        "1 h (240 rows)": timedelta(hours=1),
    }
    all_ms = 0.0
    for label, span in ranges.items():
        start = None if span is None else end - span

        def chart(start: datetime | None = start) -> list[Any]:
            return timeseries.downsample(
                big, start=start, end=None if start is None else end, max_points=2000
            )

        buckets = chart()
        samples = timed(chart, repeat=10)
        exact = sum(1 for b in buckets if b.exact)
        if span is None:
            all_ms = statistics.median(samples)
        report(f"downsample {label}", f"{ms(samples)}  {len(buckets)} points ({exact} exact)")

    def full_scan() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT floor(extract(epoch FROM captured_at) / 7200)::bigint AS b, count(*), "
                "min(yes_bid), max(yes_ask), max(captured_at) "
                "FROM markets_marketsnapshot WHERE market_id = %s GROUP BY b",
                [big.pk],
            )
            cursor.fetchall()

    scan = timed(full_scan, repeat=3)
    report("baseline: exact GROUP BY over all 1M rows of the market", ms(scan))
    report(
        "=> 'all' vs target ≤ 50 ms; speed-up vs full scan",
        f"{all_ms:.2f} ms; {statistics.median(scan) / all_ms:.1f}×",
    )


# --------------------------------------------------------------------------------------------------
# 3. The admin at 10M snapshots
# --------------------------------------------------------------------------------------------------


def bench_admin(info: dict[str, Any]) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from markets.models import MarketSnapshot

    print("\n3. Snapshot admin at 10M rows (in-process test client; slowest SQL per page)")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    end = datetime.fromisoformat(info["end"])
    old = datetime.fromisoformat(info["start"]) + timedelta(days=10)
    snapshot = MarketSnapshot.objects.order_by("-id").only("id").first()
    assert snapshot is not None
    base = "/admin/markets/marketsnapshot/"
    pages = {
        "changelist": base,
        "filter source=backfill": f"{base}?source__exact=backfill",
        "filter source=poll": f"{base}?source__exact=poll",
        "date drill-down, a year": f"{base}?captured_at__year={end.year}",
        "date drill-down, a month": f"{base}?captured_at__year={end.year}&captured_at__month={end.month}",
        "date drill-down, a recent day": f"{base}?captured_at__year={end.year}&captured_at__month={end.month}"
        f"&captured_at__day={end.day}",
        "date drill-down, an old (backfilled) day": f"{base}?captured_at__year={old.year}"
        f"&captured_at__month={old.month}&captured_at__day={old.day}",
        "search the 1M-snapshot market": f"{base}?q={BIG_TICKER}",
        "search a 900-snapshot market": f"{base}?q={SMALL_TICKER}",
        "search + date day": f"{base}?q={BIG_TICKER}&captured_at__year={old.year}"
        f"&captured_at__month={old.month}"
        f"&captured_at__day={old.day}",
        "detail page": f"{base}{snapshot.pk}/change/",
    }
    for label, url in pages.items():
        response = client.get(url)
        if response.status_code != 200:
            report(f"admin {label}", f"HTTP {response.status_code} (!)")
            continue

        def get(url: str = url) -> None:
            client.get(url)

        samples = timed(get, repeat=3, warmup=0)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        full_count = any(
            "COUNT(" in q["sql"].upper()
            and "LIMIT" not in q["sql"].upper()
            and "markets_marketsnapshot" in q["sql"]
            for q in queries.captured_queries
        )
        report(
            f"admin {label}",
            f"{ms(samples)}  slowest SQL {float(slowest['time']) * 1000:.0f} ms"
            f"{'  FULL COUNT!' if full_count else ''}",
        )


# --------------------------------------------------------------------------------------------------
# 4. The table page over HTTP
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit(f"No free port in {PORTS.start}-{PORTS.stop - 1}.")


def collect_static(env: dict[str, str]) -> None:
    manifest = Path(env["KALSHI_INSIGHTS_VAR_DIR"]) / "staticfiles" / "staticfiles.json"
    sources = [p for p in (BASE_DIR / "static").rglob("*") if p.is_file()]
    if manifest.exists() and all(p.stat().st_mtime < manifest.stat().st_mtime for p in sources):
        return
    print("  collecting static files for DEBUG=false (once)…", flush=True)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=BASE_DIR, env=env, check=True
    )


def start_server(workers: int, *, page_cache: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "KALSHI_PAGE_CACHE_SECONDS": os.environ.get("KALSHI_PAGE_CACHE_SECONDS", "5") if page_cache else "0",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "KALSHI_INSIGHTS_VAR_DIR": str(BASE_DIR / "var" / "bench-show"),
        "LOG_LEVEL": "ERROR",
    }
    collect_static(env)
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    # The server's own log (Django logs every 404 of the baseline) goes to a file, not the report.
    log = (Path(env["KALSHI_INSIGHTS_VAR_DIR"]) / "gunicorn.log").open("ab")
    process = subprocess.Popen(
        [gunicorn, "kalshi_insights.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--log-level", "warning"],
        cwd=BASE_DIR, env=env, start_new_session=True, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()  # the child keeps its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/status/", timeout=2).read()
            return process, url
        except OSError:
            time.sleep(0.3)
    stop_server(process)
    sys.exit("gunicorn did not come up within 30 s.")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def load(
    url: str, *, duration: int, connections: int, headers: dict[str, str], expect: int = 200
) -> dict[str, float]:
    """Requests/s and latency percentiles for `url` under `connections` concurrent clients."""
    for _ in range(20):  # warm the workers' connections and template caches
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).read()
        except urllib.error.HTTPError as exc:
            if exc.code != expect:
                raise
    wrk = shutil.which("wrk")
    if wrk:
        command = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out) if expect == 200 else None
        return {
            "rps": rps,
            "p50": _to_ms(pct["50"]),
            "p90": _to_ms(pct["90"]),
            "p99": _to_ms(pct["99"]),
            "errors": float(errors.group(1)) if errors else 0.0,
        }
    return _python_load(url, duration=duration, connections=connections, headers=headers, expect=expect)


def _python_load(
    url: str, *, duration: int, connections: int, headers: dict[str, str], expect: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
                    r.read()
                ok = expect == 200
            except urllib.error.HTTPError as exc:
                ok = exc.code == expect
            except OSError:
                ok = False
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {
        "rps": len(latencies) / duration,
        "p50": latencies[len(latencies) // 2],
        "p90": latencies[int(len(latencies) * 0.9)],
        "p99": latencies[int(len(latencies) * 0.99)],
        "errors": float(errors),
    }


def bench_http(*, duration: int, connections: int, workers: int) -> None:
    print(
        f"\n4. Pages over HTTP: gunicorn ({workers} sync workers, DEBUG=false) + "
        f"{'wrk' if shutil.which('wrk') else 'Python threads'}, {connections} connections, {duration} s each"
    )
    cached = [
        ("baseline: 404 page through the same stack", "/markets/NO-SUCH-MARKET/", {}),
        ("table page /", "/", {}),
        ("table fragment / (HX-Request: what each poll fetches)", "/", {"HX-Request": "true"}),
        ("table page /?sort=movers", "/?sort=movers", {}),
        ("table page /?q=thing 42&sort=spread", "/?q=thing+42&sort=spread", {}),
        ("market page (1M-snapshot market)", f"/markets/{BIG_TICKER}/", {}),
        ("chart JSON, 1M-snapshot market, range=all", f"/markets/{BIG_TICKER}/chart/?range=all", {}),
        ("chart JSON, 1M-snapshot market, range=1d", f"/markets/{BIG_TICKER}/chart/?range=1d", {}),
    ]
    uncached = [
        ("table page / (page cache off: every request renders)", "/", {}),
        ("table fragment / (page cache off)", "/", {"HX-Request": "true"}),
    ]
    baseline = 0.0
    for page_cache, cases in ((True, cached), (False, uncached)):
        process, url = start_server(workers, page_cache=page_cache)
        try:
            for label, path, headers in cases:
                expect = 404 if label.startswith("baseline") else 200
                stats = load(
                    url + path, duration=duration, connections=connections, headers=headers, expect=expect
                )
                if label.startswith("baseline"):
                    baseline = stats["rps"]
                errors = f"  ERRORS {int(stats['errors'])}" if stats["errors"] else ""
                share = f"  ({stats['rps'] / baseline:.0%} of baseline)" if baseline and expect == 200 else ""
                report(
                    label,
                    f"{stats['rps']:7.1f} req/s  p50 {stats['p50']:6.2f} ms  p90 {stats['p90']:6.2f} ms  "
                    f"p99 {stats['p99']:6.2f} ms{errors}{share}",
                )
        finally:
            stop_server(process)


def storage() -> None:
    from django.db import connection

    print("\n5. Storage (what each snapshot index costs per row)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'markets_marketsnapshot'")
        rows = max(1, int(cursor.fetchone()[0]))
        cursor.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'markets_marketsnapshot'::regclass ORDER BY 2 DESC"
        )
        indexes = cursor.fetchall()
        cursor.execute("SELECT pg_relation_size('markets_marketsnapshot')")
        heap = int(cursor.fetchone()[0])
    report("snapshot heap", f"{heap / 2**20:9.1f} MiB  {heap / rows:7.1f} bytes/row")
    for name, size in indexes:
        report(f"index {name}", f"{size / 2**20:9.2f} MiB  {size / rows:7.2f} bytes/row")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench show", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="rebuild the 10M-row dataset even if present")
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP load test (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent HTTP connections (default 8)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="gunicorn workers (default: CPUs)"
    )
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP load tests")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--duration, --connections and --workers must be at least 1")

    setup_django()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    info = None if args.rebuild else dataset_built()
    if info is None:
        info = build_dataset()
    else:
        print(
            f"Reusing the dataset built for {info['end']} "
            f"({info['markets']:,} markets, {info['snapshots']:,} snapshots)."
        )

    worst_table = bench_table_query()
    bench_chart(info)
    bench_admin(info)
    if not args.skip_http:
        bench_http(duration=args.duration, connections=args.connections, workers=args.workers)
    storage()
    print(f"\nTargets: table query ≤ {TARGETS['table_ms']:.0f} ms (now {worst_table:.2f} ms), ≥ 100× naive; "
          "table page ≥ 300 req/s, p50 ≤ 20 ms; chart ≤ 50 ms for ≤ 2,000 points.")  # fmt: skip
