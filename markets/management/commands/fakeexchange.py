from __future__ import annotations

import errno
import logging
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from markets.fakeexchange import API_PREFIX, CONTROL_PREFIX, FakeExchange, FaultConfig, make_server


def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise ArgumentTypeError(f"{text} must not be negative")
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ArgumentTypeError(f"{text} must not be negative")
    return value


class Command(BaseCommand):
    help = (
        "Serve a fake Kalshi Trade API v2 built from real recorded responses, for offline demos and "
        "tests. Quotes move every --tick-seconds on each market's price grid; faults can be injected. "
        "Point the poller at it with KALSHI_API_BASE=http://HOST:PORT/trade-api/v2."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="Port (default 8765; 0 picks a free one).")
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed for quote moves and faults (default 0)."
        )
        parser.add_argument(
            "--markets", type=count, default=0, help="Extra synthetic markets cloned from the recorded ones."
        )
        parser.add_argument(
            "--tick-seconds",
            type=non_negative,
            default=5.0,
            help="Move quotes at most this often, on the next request (default 5; "
            "0 = only through POST /_fake/advance).",
        )
        parser.add_argument(
            "--move-fraction",
            type=rate,
            default=0.2,
            help="Share of open markets whose quote moves per tick (default 0.2).",
        )
        parser.add_argument("--fault-429", type=rate, default=0.0, help="Share of requests answered 429.")
        parser.add_argument("--fault-5xx", type=rate, default=0.0, help="Share answered 500/502/503/504.")
        parser.add_argument(
            "--slow", type=rate, default=0.0, help="Share of responses delayed by --slow-seconds."
        )
        parser.add_argument("--slow-seconds", type=non_negative, default=2.0, help="Delay of slow responses.")
        parser.add_argument("--malformed", type=rate, default=0.0, help="Share answered with truncated JSON.")
        parser.add_argument(
            "--as-recorded",
            action="store_true",
            help="Serve the recorded times as they are, instead of moving each recording to within "
            "the day before the exchange starts.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["move_fraction"] == 0:
            raise CommandError("--move-fraction must be above 0; use --tick-seconds 0 to keep quotes still.")
        exchange = FakeExchange(
            seed=options["seed"],
            extra_markets=options["markets"],
            tick_seconds=options["tick_seconds"] or None,
            move_fraction=options["move_fraction"],
            shift_recordings=not options["as_recorded"],
            faults=FaultConfig(
                rate_429=options["fault_429"],
                rate_5xx=options["fault_5xx"],
                slow_rate=options["slow"],
                slow_seconds=options["slow_seconds"],
                malformed_rate=options["malformed"],
            ),
        )
        host, port = options["host"], options["port"]
        try:
            server = make_server(exchange, host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {port} on {host} is already in use; pass --port with a free one."
                ) from None
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from None
        if options["verbosity"] >= 2:
            logging.getLogger("markets.fakeexchange").setLevel(logging.DEBUG)
        url = f"http://{host}:{server.server_address[1]}"
        state = exchange.state()
        self.stdout.write(
            f"Fake Kalshi exchange at {url}{API_PREFIX}: {state['markets']} markets "
            f"({state['open_markets']} open), {state['events']} events, {state['series']} series; "
            f"seed {exchange.seed}."
        )
        self.stdout.write(
            f"Poll it with KALSHI_API_BASE={url}{API_PREFIX}; control API at {url}{CONTROL_PREFIX}/state."
        )
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        self.stdout.write("Stopped.")
