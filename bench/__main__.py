"""Dispatch `python -m bench <name> [args...]` to `bench/<name>.py`'s `main(argv)`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )


def main(argv: list[str]) -> None:
    names = available()
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: ./dev bench <name> [options]   (./dev bench <name> --help for its options)")
        print("benchmarks:", ", ".join(names) or "none")
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"Unknown benchmark {name!r}; available: {', '.join(names)}", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(f"bench.{name}").main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
