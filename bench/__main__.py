from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
    names = [a for a in argv if not a.startswith("-")]
    options = [a for a in argv if a.startswith("-")]
    if names and names[0] in {"list", "help"}:
        print("Benchmarks:", ", ".join(available))
        return
    unknown = [n for n in names if n not in available]
    if unknown:
        sys.exit(f"Unknown benchmark(s): {', '.join(unknown)}. Available: {', '.join(available)}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_insights.settings")
    for name in names or available:
        print(f"\n=== bench/{name}.py ===", flush=True)
        importlib.import_module(f"bench.{name}").main(options)


if __name__ == "__main__":
    main(sys.argv[1:])
