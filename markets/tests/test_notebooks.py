"""The research notebooks run, top to bottom, in a real Jupyter kernel against the test database.

A notebook kernel is another process: it is pointed at the test database through DATABASE_URL,
and the tests commit their data (`transaction=True`) so the kernel can see it. Each notebook runs
twice: on a test database holding the demo dataset (the PostgreSQL paths), and on an empty one,
where it must fall back to the in-memory demo database and leave the test database untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from django.conf import settings
from django.db import connection
from nbclient import NotebookClient

from markets import demo
from markets.models import Market, MarketSnapshot
from markets.tests.subprocesses import test_database_url

NOTEBOOK_DIR = Path(settings.BASE_DIR) / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01-data-exploration", "02-strategy-development", "03-backtest-analysis", "04-calibration"]


def test_the_four_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path):
    book = nbformat.read(path, as_version=4)

    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
    assert "widgets" not in book.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_django_with_the_one_helper(path):
    book = nbformat.read(path, as_version=4)

    first_code = next(c for c in book.cells if c.cell_type == "code")
    assert "from kalshi_insights.notebook import setup" in first_code.source
    assert book.cells[0].cell_type == "markdown"


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        # The test database (test_<name>), never the one DATABASE_URL names for the test run.
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "KALSHI_INSIGHTS_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "kalshi_insights.settings",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def _run(path: Path, tmp_path: Path) -> Any:
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute(env=_kernel_env(tmp_path))  # raises CellExecutionError with the traceback
    return book


def _text(book: nbformat.NotebookNode) -> str:
    return "\n".join(
        output.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "stream"
    )


def _figures(book: nbformat.NotebookNode) -> int:
    return sum(
        "application/vnd.plotly.v1+json" in output.get("data", {})
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def _counts() -> tuple[int, int]:
    return Market.objects.count(), MarketSnapshot.objects.count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_on_the_test_database(path, tmp_path):
    demo.load_demo()
    before = _counts()

    book = _run(path, tmp_path)

    text = _text(book)
    assert f"Database: postgresql database {connection.settings_dict['NAME']}" in text
    assert "Demo data" not in text
    assert _counts() == before  # notebooks only read
    assert _figures(book), "no Plotly figure was drawn"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_falls_back_to_the_demo_on_an_empty_database(path, tmp_path):
    book = _run(path, tmp_path)

    text = _text(book)
    assert "has no markets yet, so this notebook uses the demo dataset instead: 53 markets" in text
    assert "nothing is written to yours" in text
    assert _figures(book), "no Plotly figure was drawn"
    assert _counts() == (0, 0)  # the demo went into the kernel's memory, not the test database
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "staticfiles"])
