"""Shared set-up for benchmarks: a dedicated PostgreSQL database, migrated, and timing helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def create_database_if_missing(db: Mapping[str, Any]) -> None:
    """Create the PostgreSQL database a Django DATABASES entry names, if it does not exist."""
    import psycopg

    if "postgresql" not in db["ENGINE"]:
        raise SystemExit(
            "Benchmarks need PostgreSQL: set BENCH_DATABASE_URL=postgres://... (./dev bench does)."
        )
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def setup_django() -> None:
    """Create the bench database if needed, then django.setup() and migrate.

    Runs with DEBUG off, as production does: with DEBUG on, Django formats and keeps the SQL of
    every query, which on 1,000-parameter queries costs more than the query itself.
    """
    import dj_database_url

    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "benchmarks-only")
    create_database_if_missing(dj_database_url.parse(os.environ.get("DATABASE_URL", "")))
    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")
    django.setup()
    call_command("migrate", verbosity=0)


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    """Wall-clock and this process's CPU time of the block."""
    t = Timing()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    yield t
    t.wall = time.perf_counter() - wall0
    t.cpu = time.process_time() - cpu0


def best_of(n: int, fn: Callable[[], None]) -> Timing:
    """The fastest of n runs: the least disturbed by other load on a shared machine."""
    best = Timing(wall=float("inf"), cpu=float("inf"))
    for _ in range(n):
        with timed() as t:
            fn()
        if t.wall < best.wall:
            best = t
    return best
