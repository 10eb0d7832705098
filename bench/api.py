"""API throughput under gunicorn, against a plain Django JsonResponse view measured in the same run.

    ./dev bench api [--markets 50000] [--workers 3] [--connections 8] [--duration 10] [--runs 3]

Seeds the benchmark database (BENCH_DATABASE_URL) with synthetic markets built from a real Kalshi
recording through the real ingest path, starts gunicorn (DEBUG off, production settings, API
throttling off: one client would hit any real limit at once) on a free port in 18300-18399, and
drives it with `wrk` (Debian package `wrk`) or, without it, a small asyncio/httpx client. Each
scenario is measured `--runs` times, interleaved with the baseline so machine noise hits both;
the median is reported with p50/p99 latency and its ratio to the baseline.

Targets (issue 4): market detail >= 3,000 req/s, a 100-row market list >= 600 req/s.
Nothing is asserted: this prints figures. Because req/s on a shared 2-core machine mostly measures
the neighbours, each scenario's Django CPU time per request (in-process, no HTTP) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ._db import create_database_if_missing

BASE_DIR = Path(__file__).resolve().parent.parent
PORTS = range(18300, 18400)
TEMPLATE = BASE_DIR / "markets" / "tests" / "fixtures" / "kalshi" / "2026-10_markets_page.json"
SNAPSHOTS_PER_MARKET = 20_000
SNAPSHOT_MARKETS = 5


@dataclass
class Scenario:
    name: str
    paths: list[str]
    target: float | None = None
    baseline: bool = False


@dataclass
class Measurement:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def ensure_database() -> None:
    """Create the benchmark database if it does not exist, then migrate it."""
    from django.conf import settings
    from django.core.management import call_command

    create_database_if_missing(settings.DATABASES["default"])
    call_command("migrate", verbosity=0)


def seed(markets: int) -> list[str]:
    """Synthetic markets (and a few long histories) from a real recording; reused when present."""
    from django.db import connection

    from markets import ingest
    from markets.kalshi import KalshiMarket, parse_market
    from markets.models import Event, Market, Series, SnapshotSource

    marker = f"BENCHSEED-{markets}"
    if Series.objects.filter(ticker=marker).exists() and Market.objects.count() == markets:
        print(f"Reusing the seeded database ({markets:,} markets).")
        return list(Market.objects.order_by("?").values_list("ticker", flat=True)[:2000])

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE markets_marketsnapshot, markets_market, markets_event, markets_series, "
            "markets_pollrun CASCADE"
        )
    template = json.loads(TEMPLATE.read_text())["markets"][0]
    rng = random.Random(42)
    series = [f"KXBENCH{n:02d}" for n in range(20)]
    Series.objects.bulk_create(
        [
            Series(
                ticker=t,
                title=f"Bench series {t}",
                category=rng.choice(["Sports", "Economics", "Politics"]),
                categories=["Sports"],
                tags=["Bench"],
                fee_type="quadratic_with_maker_fees",
                fee_multiplier=Decimal(1),
                synced_at=datetime.now(UTC),
            )
            for t in series
        ]
        + [Series(ticker=marker)]
    )
    now = datetime.now(UTC)
    batch: list[tuple[KalshiMarket, bytes]] = []
    for i in range(markets):
        event = f"{series[i % 20]}-26OCT{i // 10:06d}"
        bid = Decimal(rng.randrange(1, 98)) / 100
        m = dict(template)
        m.update(
            ticker=f"{event}-M{i % 10}",
            event_ticker=event,
            title=f"Bench market {i} wins",
            yes_bid_dollars=str(bid),
            yes_ask_dollars=str(bid + Decimal("0.01")),
            no_bid_dollars=str(1 - bid - Decimal("0.01")),
            no_ask_dollars=str(1 - bid),
            last_price_dollars=str(bid),
            volume_fp=f"{rng.randrange(0, 10**8) / 100:.2f}",
            volume_24h_fp=f"{rng.randrange(0, 10**7) / 100:.2f}",
            open_interest_fp=f"{rng.randrange(0, 10**7) / 100:.2f}",
            close_time=(now + timedelta(hours=rng.randrange(1, 2000))).isoformat().replace("+00:00", "Z"),
            status="active" if i % 4 else "finalized",
        )
        raw = json.dumps(m).encode()
        batch.append((parse_market(raw), raw))
        if len(batch) == 2000:
            ingest.record_markets(batch)
            batch = []
    if batch:
        ingest.record_markets(batch)
    for t in series:
        Event.objects.filter(ticker__startswith=f"{t}-").update(series=Series.objects.get(ticker=t))
    Market.objects.update(last_snapshot_at=now)

    ids = list(Market.objects.order_by("ticker").values_list("id", flat=True)[:SNAPSHOT_MARKETS])
    for market_id in ids:
        rows = [
            ingest.SnapshotRow(
                market_id=market_id,
                captured_at=now - timedelta(minutes=SNAPSHOTS_PER_MARKET - k),
                source=SnapshotSource.POLL,
                quote=(
                    Decimal("0.41"),
                    Decimal("0.42"),
                    Decimal("0.58"),
                    Decimal("0.59"),
                    Decimal("0.41"),
                    Decimal("10.00"),
                    Decimal("12.50"),
                    Decimal(1000 + k),
                    Decimal(k),
                    Decimal("500.00"),
                ),
            )
            for k in range(SNAPSHOTS_PER_MARKET)
        ]
        ingest.write_snapshots(rows)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"Seeded {markets:,} markets in {time.perf_counter() - started:.1f}s.")
    return list(Market.objects.order_by("?").values_list("ticker", flat=True)[:2000])


# --------------------------------------------------------------------------------------------------
# Server and load
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit("No free port in 18300-18399 for gunicorn.")


@contextmanager
def gunicorn(*, workers: int) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.api_settings"}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "kalshi_insights.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--chdir",
            str(BASE_DIR),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/bench/baseline/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("gunicorn did not start; see its output above.")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check(base: str, scenario: Scenario) -> None:
    """One request per scenario before timing it: 200 and the body we mean to measure."""
    import httpx

    response = httpx.get(base + scenario.paths[0], timeout=10)
    if response.status_code != 200:
        sys.exit(
            f"{scenario.name}: {scenario.paths[0]} answered {response.status_code}: {response.text[:300]}"
        )
    body = response.json()
    size = re.search(r"page_size=(\d+)", scenario.paths[0])
    if size and len(body["results"]) != int(size.group(1)):
        sys.exit(f"{scenario.name}: expected {size.group(1)} rows, got {len(body['results'])}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(wrk: str, base: str, paths: Sequence[str], *, duration: float, connections: int) -> Measurement:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n")
        script.write(
            "local i = 0\nrequest = function()\n  i = i + 1\n"
            "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n"
        )
    try:
        out = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        n_errors += sum(int(g) for g in socket_errors.groups())
    return Measurement(rps, p50, p99, n_errors)


def run_httpx(base: str, paths: Sequence[str], *, duration: float, connections: int) -> Measurement:
    """The fallback load generator: `connections` keep-alive clients in one asyncio loop."""
    import httpx

    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, offset: int, stop: float) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            response = await client.get(paths[i % len(paths)])
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += response.status_code != 200
            i += connections

    async def drive() -> float:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            start = time.perf_counter()
            await asyncio.gather(*(worker(client, k, start + duration) for k in range(connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(drive())
    quantiles = statistics.quantiles(latencies, n=100)
    return Measurement(len(latencies) / elapsed, quantiles[49], quantiles[98], errors)


def cpu_per_request(paths: Sequence[str], *, requests: int = 200) -> float:
    """Milliseconds of this process's CPU per request through Django in-process (no HTTP, no gunicorn).

    CPU time, unlike req/s, hardly changes when other processes compete for the cores, so it is
    the steadier figure on a shared machine. PostgreSQL's own CPU is not included.
    """
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    for path in paths[:20]:
        client.get(path)
    started = time.process_time()
    for i in range(requests):
        client.get(paths[i % len(paths)])
    return (time.process_time() - started) * 1000 / requests


# --------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench api", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--markets", type=int, default=50_000, help="markets in the database (default 50,000)"
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (default 3)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="measurements per scenario (default 3)")
    parser.add_argument(
        "--httpx", action="store_true", help="use the httpx load generator even if wrk exists"
    )
    args = parser.parse_args(argv)
    if args.markets < 1000 or args.workers < 1 or args.connections < 1 or args.runs < 1 or args.duration <= 0:
        parser.error(
            "--markets must be at least 1000; --workers, --connections, --runs and --duration positive"
        )

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.api_settings"
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    ensure_database()
    tickers = seed(args.markets)

    from markets.models import Market

    pages = min(50, args.markets // 100)
    history = list(Market.objects.order_by("ticker").values_list("ticker", flat=True)[:SNAPSHOT_MARKETS])
    scenarios = [
        Scenario("baseline: Django JsonResponse", ["/bench/baseline/"], baseline=True),
        Scenario("market detail", [f"/api/v1/markets/{t}/" for t in tickers], target=3000),
        Scenario(
            "market list, 100 rows",
            [f"/api/v1/markets/?page_size=100&page={p}" for p in range(1, pages + 1)],
            target=600,
        ),
        Scenario(
            "market list, 100 rows, status=open, ordering=-volume_24h",
            [
                f"/api/v1/markets/?page_size=100&status=open&ordering=-volume_24h&page={p}"
                for p in range(1, 11)
            ],
        ),
        Scenario(
            "snapshots, 1,000 rows",
            [f"/api/v1/markets/{t}/snapshots/?page_size=1000" for t in history],
        ),
    ]
    wrk = None if args.httpx else shutil.which("wrk")
    generator = f"wrk -t1 -c{args.connections}" if wrk else f"httpx asyncio, {args.connections} connections"
    print(
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run. "
        f"gunicorn {args.workers} sync workers; load: {generator}; {args.duration:g}s x {args.runs} runs."
    )

    results: dict[str, list[Measurement]] = {s.name: [] for s in scenarios}
    with gunicorn(workers=args.workers) as base:
        for scenario in scenarios:
            check(base, scenario)
            # Warm every worker (imports, database connection, caches) before timing.
            if wrk:
                run_wrk(wrk, base, scenario.paths, duration=2, connections=args.connections)
            else:
                run_httpx(base, scenario.paths, duration=2, connections=args.connections)
        for run in range(args.runs):
            for scenario in scenarios:
                if wrk:
                    m = run_wrk(
                        wrk, base, scenario.paths, duration=args.duration, connections=args.connections
                    )
                else:
                    m = run_httpx(base, scenario.paths, duration=args.duration, connections=args.connections)
                results[scenario.name].append(m)
                print(
                    f"  run {run + 1}: {scenario.name:<58} {m.requests_per_second:>8.0f} req/s  "
                    f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms"
                    + (f"  ERRORS {m.errors}" if m.errors else "")
                )

    cpu = {s.name: cpu_per_request(s.paths) for s in scenarios}

    baseline = statistics.median(m.requests_per_second for m in results[scenarios[0].name])
    print(
        f"\nMedian of {args.runs} runs, {args.markets:,} markets; load average now {os.getloadavg()[0]:.2f}:"
    )
    print(
        f"{'scenario':<58} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs baseline':>12} {'target':>14}"
        f" {'CPU ms/req':>11}"
    )
    for scenario in scenarios:
        ms = results[scenario.name]
        rps = statistics.median(m.requests_per_second for m in ms)
        p50 = statistics.median(m.p50_ms for m in ms)
        p99 = statistics.median(m.p99_ms for m in ms)
        spread = f"{min(m.requests_per_second for m in ms):.0f}-{max(m.requests_per_second for m in ms):.0f}"
        target = ""
        if scenario.target:
            target = f">= {scenario.target:,.0f} " + ("met" if rps >= scenario.target else "MISSED")
        print(
            f"{scenario.name:<58} {rps:>8.0f} {p50:>7.2f} {p99:>7.2f} {rps / baseline:>11.2f}x {target:>14}"
            f" {cpu[scenario.name]:>11.2f}   (runs {spread})"
        )
        if any(m.errors for m in ms):
            print(f"  !! {sum(m.errors for m in ms)} non-2xx responses or socket errors in {scenario.name}")
