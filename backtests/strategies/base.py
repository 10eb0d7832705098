"""What a strategy is: declared, typed parameters and a vectorised target-side function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from backtests.engine import target_changes

if TYPE_CHECKING:
    from backtests.engine import Int8Array, IntArray, QuotePanel


class ParameterError(ValueError):
    """An unknown parameter or a value of the wrong type or out of range; the message lists the valid ones."""


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default, allowed range (inclusive) or choices, and help."""

    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, name: str, raw: Any) -> Any:
        """Convert `raw` (a string from the CLI/API or a Python value) and check the range."""
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value: Any = raw
                elif str(raw).strip().lower() in {"1", "true", "yes", "on"}:
                    value = True
                elif str(raw).strip().lower() in {"0", "false", "no", "off"}:
                    value = False
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(str(raw).strip()) if not isinstance(raw, int | float) else int(raw)
            elif self.type is float:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
                if value != value:  # NaN
                    raise ValueError
            else:
                value = str(raw).strip()
        except (TypeError, ValueError):
            raise ParameterError(f"{name}={raw!r} is not a valid {self.describe_type()}") from None
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{name}={value!r} must be one of {', '.join(self.choices)}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"{name}={value} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"{name}={value} is above the maximum {self.max:g}")
        return value

    def describe_type(self) -> str:
        if self.choices:
            return "choice"
        return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(self.type, "value")

    def describe(self) -> str:
        if self.choices:
            rng = " | ".join(self.choices)
        elif self.min is not None or self.max is not None:
            rng = f"{self.min:g} .. {self.max:g}" if self.min is not None and self.max is not None else ""
        else:
            rng = ""
        return f"{self.describe_type()}, default {self.default}" + (f", {rng}" if rng else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.describe_type(),
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices) if self.choices else None,
            "help": self.help,
        }


class Strategy:
    """Base class: subclasses declare `name`, `label`, `description`, `params` and `target()`.

    `target(panel, params)` returns the side each quote's decision wants (+1 long YES, -1 long NO,
    0 flat), computed only from data at or before that quote. The engine fills it at the next quote.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]]

    def validate(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, every value parsed and range-checked; unknown names rejected."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) for {self.name}: {', '.join(unknown)}. "
                f"Valid parameters: {self.describe_params()}"
            )
        values = {k: p.default for k, p in self.params.items()}
        for key, raw in given.items():
            values[key] = self.params[key].parse(key, raw)
        self.check(values)
        return values

    def check(self, values: Mapping[str, Any]) -> None:
        """Cross-parameter checks; raise ParameterError."""

    def describe_params(self) -> str:
        if not self.params:
            return "(none)"
        return "; ".join(f"{k} ({p.describe()})" for k, p in self.params.items())

    def target(self, panel: QuotePanel, params: Mapping[str, Any]) -> Int8Array:
        raise NotImplementedError

    def target_and_changes(self, panel: QuotePanel, params: Mapping[str, Any]) -> tuple[Int8Array, IntArray]:
        """The target and the rows where it changes (`engine.target_changes`), which is what the
        fill simulation iterates over. Strategies that find their change points on the way to the
        target override this to save the engine a scan of every row."""
        target = self.target(panel, params)
        return target, target_changes(panel, target)

    @staticmethod
    def decimal(value: float) -> Decimal:
        return Decimal(str(value))
