"""Start Django in a Jupyter notebook with one call: `from kalshi_insights.notebook import setup; setup()`.

It reads the same settings as the rest of the project (DATABASE_URL, `.env`), so a notebook sees
whatever database the web app and the poller use. When that database has no markets yet — or
cannot be reached, or has not been migrated — it switches the notebook, and only the notebook, to
an in-memory SQLite database filled with the demo dataset built from the real Kalshi recordings
(`markets.demo`), and says so. Nothing is ever written to the configured database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The demo database lives in this process's memory while any connection to it is open.
DEMO_DATABASE = "file:kalshi-insights-demo?mode=memory&cache=shared"


@dataclass(frozen=True)
class NotebookDatabase:
    """Which database the notebook reads, and whether it is the demo."""

    demo: bool
    description: str
    message: str

    def __str__(self) -> str:
        return self.message

    def _repr_markdown_(self) -> str:
        return self.message


def setup(*, demo: bool | None = None, quiet: bool = False) -> NotebookDatabase:
    """Start Django; use the demo dataset if the configured database has no markets (or `demo=True`)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")
    # Jupyter runs the notebook inside an asyncio event loop, where Django refuses synchronous
    # ORM calls unless told that this single-threaded use is intended.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    import django

    django.setup()
    _use_offline_plotly()

    from django.db import connections

    if connections["default"].settings_dict["NAME"] == DEMO_DATABASE:
        # setup() ran before in this kernel and switched to the demo already.
        return _result(True, "the demo dataset (already loaded)", quiet)
    described = _describe(connections["default"].settings_dict)
    reason = None
    if demo is None:
        reason = _why_unusable()
    elif demo:
        reason = "the demo was asked for"
    if reason is None:
        from markets.models import Market

        counts = f"{Market.objects.count():,} markets ({Market.objects.settled().count():,} settled)"
        return _result(False, f"{described}: {counts}", quiet)

    loaded = _switch_to_demo()
    return _result(
        True,
        f"{described} {reason}, so this notebook uses the demo dataset instead: {loaded}, built from the "
        "real Kalshi recordings in markets/tests/fixtures/kalshi/ (an in-memory SQLite database; "
        "nothing is written to yours)",
        quiet,
    )


def _result(demo: bool, description: str, quiet: bool) -> NotebookDatabase:
    message = ("Demo data: " if demo else "Database: ") + description + "."
    if not quiet:
        print(message)
    return NotebookDatabase(demo=demo, description=description, message=message)


def _describe(settings_dict: dict[str, object]) -> str:
    engine = str(settings_dict["ENGINE"]).rsplit(".", 1)[-1]
    name = settings_dict["NAME"]
    host = settings_dict.get("HOST")
    return f"{engine} database {name}" + (f" on {host}" if host else "")


def _why_unusable() -> str | None:
    """None when the configured database has markets; otherwise why the demo is used instead."""
    from django.db import DatabaseError

    from markets.models import Market

    try:
        if Market.objects.exists():
            return None
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot be read ({first_line}; is it up and migrated?)"
    return "has no markets yet"


def _switch_to_demo() -> object:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from markets import demo

    connections["default"].close()
    demo_settings = {"ENGINE": "django.db.backends.sqlite3", "NAME": DEMO_DATABASE}
    configured = connections.configure_settings({"default": demo_settings})["default"]
    settings.DATABASES["default"] = configured
    connections.settings["default"] = configured
    del connections["default"]
    call_command("migrate", verbosity=0, interactive=False)
    return demo.load_demo()


def _use_offline_plotly() -> None:
    """Figures render in Jupyter without fetching plotly.js from a CDN."""
    try:
        import plotly.io as pio
    except ImportError:  # pragma: no cover - plotly is a project dependency
        return
    pio.renderers.default = "plotly_mimetype+notebook"
