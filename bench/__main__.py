"""Dispatch `python -m bench NAME [args]` to bench/NAME.py's `main(argv)`; no name lists them."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )


def main() -> None:
    names = available()
    if len(sys.argv) < 2 or sys.argv[1] in {"-h", "--help"}:
        print(f"usage: ./dev bench NAME [args]   (NAME one of: {', '.join(names)})")
        return
    name, argv = sys.argv[1], sys.argv[2:]
    if name not in names:
        sys.exit(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}")
    importlib.import_module(f"bench.{name}").main(argv)


if __name__ == "__main__":
    main()
