from __future__ import annotations

import sys
from argparse import ArgumentParser, ArgumentTypeError
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError
from tqdm import tqdm

from markets import backfill
from markets.kalshi import KalshiClient, KalshiError
from markets.models import PollOutcome


def _since(value: str) -> datetime:
    try:
        return backfill.parse_when(value)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None


def _until(value: str) -> datetime:
    try:
        return backfill.parse_when(value, end_of_day=True)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Backfill market history from Kalshi's candlesticks (live and /historical) into snapshots with "
        'source="backfill", and record the selected markets with their results. Safe to rerun: '
        "stored rows are skipped and an interrupted run continues where it stopped."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        which = parser.add_argument_group("which markets (at least one)")
        which.add_argument(
            "--ticker", action="append", default=[], metavar="TICKER", help="A market ticker; repeatable."
        )
        which.add_argument("--event", action="append", default=[], metavar="EVENT", help="An event ticker.")
        which.add_argument("--series", action="append", default=[], metavar="SERIES", help="A series ticker.")
        which.add_argument(
            "--status",
            help="Kalshi's status filter: unopened, open, paused, closed or settled. Alone it lists every "
            "such market; with --event/--series it narrows them.",
        )
        when = parser.add_argument_group("what to fetch")
        when.add_argument(
            "--since",
            type=_since,
            help="UTC date or date-time (2026-08-01, 2026-08-01T12:00Z). Default: each market's open.",
        )
        when.add_argument(
            "--until",
            type=_until,
            help="UTC date (inclusive: the whole day) or date-time. Default: now.",
        )
        when.add_argument(
            "--period",
            type=int,
            choices=sorted(backfill.PERIOD_SECONDS),
            default=60,
            help="Candle length in minutes (default 60).",
        )
        when.add_argument(
            "--trades", action="store_true", help="Also store the public trade tape of these markets."
        )
        when.add_argument(
            "--markets-only",
            action="store_true",
            help="Only record the markets (metadata, results, settlement values); no candles.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar even on a terminal.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            selection = backfill.Selection(
                tickers=tuple(options["ticker"]),
                events=tuple(options["event"]),
                series=tuple(options["series"]),
                status=options["status"],
            )
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc

        show_bar = sys.stderr.isatty() and not options["no_progress"]

        def progress_bar(total: int, what: str) -> tqdm[Any]:
            return tqdm(total=total, desc=f"Backfill {what}", unit="req", file=sys.stderr, leave=False)

        try:
            with KalshiClient.from_settings() as client:
                run = backfill.run_backfill(
                    client=client,
                    selection=selection,
                    since=options["since"],
                    until=options["until"],
                    period=options["period"],
                    trades=options["trades"],
                    candles=not options["markets_only"],
                    trigger="command",
                    progress_bar=progress_bar if show_bar else None,
                )
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc
        except KalshiError as exc:
            raise CommandError(
                f"Backfill interrupted: {exc}\nEverything stored before the failure is kept; run the same "
                "command again to continue where it stopped."
            ) from exc
        except OperationalError as exc:
            raise CommandError(
                f"The database is unreachable ({exc}). Check DATABASE_URL and that the server is running; "
                "rerun the backfill afterwards to continue."
            ) from exc
        except RuntimeError as exc:  # the lock's backing store (Redis) is down
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted. Everything stored before that is kept; run the same command again to continue."
            ) from None
        if run.outcome == PollOutcome.SKIPPED:
            raise CommandError("Another backfill is running; wait for it to finish, then run this again.")
        duration = run.duration.total_seconds() if run.duration else 0.0
        self.stdout.write(
            f"Backfill of {selection.describe()}: {run.summary}; {run.requests} requests in {duration:.1f}s."
        )
        for message in run.error_messages:
            self.stderr.write(f"  {message}")
