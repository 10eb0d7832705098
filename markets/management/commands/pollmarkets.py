from __future__ import annotations

import signal
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from markets import ingest, locks
from markets.kalshi import KalshiClient, KalshiError
from markets.models import PollOutcome


class Command(BaseCommand):
    help = (
        "Poll Kalshi's open markets and store what changed, without Celery. "
        "--once runs one cycle; --loop repeats every --interval seconds until interrupted."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="Run one cycle and exit (the default).")
        mode.add_argument("--loop", action="store_true", help="Run cycles until interrupted.")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between cycle starts with --loop (default: KALSHI_POLL_INTERVAL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] if options["interval"] is not None else settings.KALSHI_POLL_INTERVAL
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["loop"]:
            self._cycle(raise_errors=True)
            return

        stop = False

        def request_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, request_stop)
        self.stdout.write(f"Polling {settings.KALSHI_API_BASE} every {interval:g}s; Ctrl-C to stop.")
        try:
            while not stop:
                started = time.monotonic()
                self._cycle(raise_errors=False)
                # Sleep in short steps so SIGTERM is honoured promptly.
                while not stop and time.monotonic() - started < interval:
                    time.sleep(min(0.5, interval))
        except KeyboardInterrupt:
            pass
        self.stdout.write("Stopped.")

    def _cycle(self, *, raise_errors: bool) -> None:
        try:
            with KalshiClient.from_settings() as client:
                run = ingest.run_poll_cycle(client=client, trigger="command")
        except KalshiError as exc:
            if raise_errors:
                raise CommandError(str(exc)) from exc
            self.stderr.write(f"Poll cycle failed: {exc}")
            return
        except DatabaseError as exc:
            message = ingest.database_problem(exc)
            if raise_errors:
                raise CommandError(message) from exc
            self.stderr.write(message)
            return
        except locks.LockUnavailable as exc:
            if raise_errors:
                raise CommandError(str(exc)) from exc
            self.stderr.write(str(exc))
            return
        if run.outcome == PollOutcome.SKIPPED:
            self.stdout.write("Another poll cycle is running; skipped.")
            return
        duration = run.duration.total_seconds() if run.duration else 0.0
        self.stdout.write(
            f"{run.outcome}: {run.pages} pages, {run.markets_seen} markets, "
            f"{run.snapshots_written} snapshots written, {run.unchanged_skipped} unchanged, "
            f"{run.errors} errors, {run.requests} requests in {duration:.1f}s"
        )
