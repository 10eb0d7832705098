"""The strategy registry: every `Strategy` subclass defined in a module of this package.

Adding a strategy means adding one module here; `STRATEGIES` finds it by its `name`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Param, ParameterError, Strategy


def _discover() -> dict[str, type[Strategy]]:
    found: dict[str, type[Strategy]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Strategy)
                and obj is not Strategy
                and obj.__module__ == module.__name__
            ):
                if obj.name in found:
                    raise ImportError(f"two strategies are named {obj.name!r}")
                found[obj.name] = obj
    return found


STRATEGIES: dict[str, type[Strategy]] = _discover()


class UnknownStrategy(ParameterError):
    pass


def get_strategy(name: str) -> Strategy:
    """An instance of the named strategy; UnknownStrategy lists the valid names."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise UnknownStrategy(
            f"unknown strategy {name!r}. Valid strategies: {', '.join(sorted(STRATEGIES))}"
        ) from None


__all__ = ["STRATEGIES", "Param", "ParameterError", "Strategy", "UnknownStrategy", "get_strategy"]
