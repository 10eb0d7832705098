from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from markets import reference
from markets.kalshi import KalshiClient, KalshiError


class Command(BaseCommand):
    help = "Re-read every series (and the open events) so fee fields and titles are current."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--no-events", action="store_true", help="Only the series list (one request).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with KalshiClient.from_settings() as client:
                run = reference.refresh_series(client=client, events=not options["no_events"])
        except KalshiError as exc:
            raise CommandError(f"Series refresh failed: {exc}") from exc
        except OperationalError as exc:
            raise CommandError(
                f"The database is unreachable ({exc}). Check DATABASE_URL and that the server is running."
            ) from exc
        self.stdout.write(f"Series refresh: {run.summary}; {run.requests} requests.")
        for message in run.error_messages:
            self.stdout.write(f"  {message}")
