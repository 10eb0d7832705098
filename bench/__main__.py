"""Dispatch `python -m bench NAME [args]` to `bench/NAME.py`'s `main(argv)`; no NAME lists them."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

# Modules in bench/ that support a benchmark rather than being one.
_SUPPORT_SUFFIXES = ("_settings", "_urls")


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_") and not m.name.endswith(_SUPPORT_SUFFIXES)
    )


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: ./dev bench NAME [options]   (NAME --help for its options; `all` runs every one)")
        print("benchmarks: " + ", ".join(names))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        for each in names:
            print(f"\n=== bench/{each}.py ===", flush=True)
            importlib.import_module(f"bench.{each}").main([])
        return 0
    if name not in names:
        print(f"Unknown benchmark {name!r}; choose from: {', '.join(names)}", file=sys.stderr)
        return 2
    importlib.import_module(f"bench.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
