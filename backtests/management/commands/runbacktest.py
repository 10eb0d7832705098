"""manage.py runbacktest: run a backtest or a parameter sweep from the shell and save it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from backtests import runs
from backtests.engine import BacktestError
from backtests.formatting import METRIC_ROWS, format_metric
from backtests.models import BacktestRun, RunStatus
from backtests.strategies import STRATEGIES, ParameterError, get_strategy
from backtests.sweeps import RANK_METRICS


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--{what} expects NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--{name} {value!r} is not an ISO date or time (e.g. 2026-08-01 or 2026-08-01T12:00Z)"
        ) from None
    # Dates without a zone are UTC, like everything else in the project.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Run a backtest (or, with --grid, a parameter sweep) on collected quotes and save it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strategy", help=f"One of: {', '.join(sorted(STRATEGIES))}.")
        parser.add_argument(
            "--param", action="append", default=[], metavar="NAME=VALUE", help="Strategy parameter."
        )
        parser.add_argument("--ticker", action="append", default=[], help="Market ticker (repeatable).")
        parser.add_argument("--event", action="append", default=[], help="Event ticker (repeatable).")
        parser.add_argument("--series", action="append", default=[], help="Series ticker (repeatable).")
        parser.add_argument("--start", help="Start of the period (ISO; UTC if no zone).")
        parser.add_argument("--end", help="End of the period (ISO; UTC if no zone).")
        parser.add_argument(
            "--grid",
            action="append",
            default=[],
            metavar="NAME=V1,V2",
            help="Sweep these values (repeatable).",
        )
        parser.add_argument(
            "--metric", default="sharpe", help=f"Sweep ranking metric: {', '.join(RANK_METRICS)}."
        )
        parser.add_argument(
            "--oos-fraction", type=float, default=0.0, help="Hold out this share of the period."
        )
        parser.add_argument("--contracts", default="10", help="Contracts per position (default 10).")
        parser.add_argument(
            "--capital", default="1000", help="Capital in dollars for returns (default 1000)."
        )
        parser.add_argument("--cap-size", action="store_true", help="Cap fills at the displayed size.")
        parser.add_argument(
            "--list-strategies", action="store_true", help="List strategies and their parameters."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list_strategies"] or not options["strategy"]:
            if not options["list_strategies"]:
                self.stderr.write("--strategy is required.")
            self.list_strategies()
            if not options["list_strategies"]:
                raise CommandError(f"Give --strategy, one of: {', '.join(sorted(STRATEGIES))}")
            return
        grid = {
            k: [v for v in vs.split(",") if v.strip()]
            for k, vs in parse_pairs(options["grid"], "grid").items()
        }
        try:
            run = runs.create_run(
                strategy=options["strategy"],
                params=parse_pairs(options["param"], "param"),
                grid=grid,
                tickers=options["ticker"],
                event_tickers=options["event"],
                series_tickers=options["series"],
                start=parse_time(options["start"], "start"),
                end=parse_time(options["end"], "end"),
                rank_metric=options["metric"],
                oos_fraction=options["oos_fraction"],
                contracts=options["contracts"],
                capital=options["capital"],
                cap_to_displayed_size=options["cap_size"],
            )
        except (ParameterError, runs.RunInputError, BacktestError) as exc:
            raise CommandError(str(exc)) from None

        self.stdout.write(f"Backtest run #{run.pk}: {run.strategy} on {run.selection_label}")
        with tqdm(
            total=100, file=self.stderr, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}"
        ) as bar:

            def progress(fraction: float, message: str) -> None:
                bar.n = round(fraction * 100)
                bar.set_postfix_str(message, refresh=False)
                bar.refresh()

            run = runs.execute_run(run, progress=progress)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} failed: {run.error}")
        self.report(run)

    def report(self, run: BacktestRun) -> None:
        self.stdout.write(
            f"{run.quotes_count} quotes in {run.markets_count} market(s); parameters {run.params}"
        )
        if run.is_sweep:
            self.sweep_table(run)
        columns: list[tuple[str, dict[str, Any]]] = [
            ("Full period" if not run.is_sweep else "Best (in sample)", run.metrics)
        ]
        if run.split_metrics:
            columns = [
                ("Full period", run.metrics),
                ("In sample", run.split_metrics["in_sample"]),
                ("Out of sample", run.split_metrics["out_of_sample"]),
            ]
        elif run.is_sweep and run.sweep_results.get("split_at"):
            best = run.sweep_results["rows"][0]
            columns = [("Best in sample", best["in_sample"]), ("Same, out of sample", best["out_of_sample"])]
        width = max(len(label) for _, label in METRIC_ROWS) + 2
        header = "".ljust(width) + "".join(name.rjust(22) for name, _ in columns)
        self.stdout.write(header)
        for key, label in METRIC_ROWS:
            cells = "".join(format_metric(key, m.get(key)).rjust(22) for _, m in columns)
            self.stdout.write(label.ljust(width) + cells)
        self.stdout.write(str(run.metrics.get("annualisation", "")))
        for warning in run.warnings:
            self.stdout.write(self.style.WARNING(warning))
        self.stdout.write(self.style.SUCCESS(f"Saved as run #{run.pk}."))

    def sweep_table(self, run: BacktestRun) -> None:
        results = run.sweep_results
        metric = results["metric"]
        self.stdout.write(f"Top parameter sets by in-sample {metric}:")
        for row in results["rows"][:10]:
            oos = row["out_of_sample"]
            oos_text = f"   out of sample {format_metric(metric, oos.get(metric))}" if oos else ""
            self.stdout.write(
                f"  #{row['rank']:<3} {row['params']}  {metric} "
                f"{format_metric(metric, row['in_sample'].get(metric))}{oos_text}"
            )

    def list_strategies(self) -> None:
        for name in sorted(STRATEGIES):
            strat = get_strategy(name)
            self.stdout.write(f"{name}: {strat.description}")
            for key, param in strat.params.items():
                self.stdout.write(f"    {key}: {param.describe()} — {param.help}")
