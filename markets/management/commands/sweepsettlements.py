from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from markets import settlement
from markets.kalshi import KalshiClient, KalshiError
from markets.models import PollOutcome


class Command(BaseCommand):
    help = (
        "Run one settlement sweep without Celery: store the status, result and settlement value of "
        "markets that closed or settled since the last sweep, and re-read ones still awaiting a result."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--lookback-hours",
            type=int,
            default=None,
            help="How far back the first sweep looks (default: KALSHI_SETTLEMENT_LOOKBACK_HOURS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["lookback_hours"]
        if hours is not None and hours <= 0:
            raise CommandError("--lookback-hours must be a positive number of hours.")
        try:
            with KalshiClient.from_settings() as client:
                run = settlement.sweep_settlements(
                    client=client,
                    trigger="command",
                    lookback=timedelta(hours=hours) if hours else None,
                )
        except KalshiError as exc:
            raise CommandError(f"Settlement sweep failed: {exc}") from exc
        except OperationalError as exc:
            raise CommandError(
                f"The database is unreachable ({exc}). Check DATABASE_URL and that the server is running."
            ) from exc
        except RuntimeError as exc:  # the lock's backing store (Redis) is down
            raise CommandError(str(exc)) from exc
        if run.outcome == PollOutcome.SKIPPED:
            self.stdout.write("Another settlement sweep is running; skipped.")
            return
        self.stdout.write(f"Settlement sweep: {run.summary}; {run.requests} requests.")
        for message in run.error_messages:
            self.stderr.write(f"  {message}")
