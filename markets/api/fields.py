"""Serializer fields for money, counts and times, and the fast read path the serializers share.

Every price leaves the API as a dollar string ("0.4100", sub-cent digits kept), every count as a
contract string with 2 decimals ("2843.05") and every time as ISO 8601 UTC ending in "Z". The
formatting is `markets.formatting`'s, so pages, CSV and the API always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any, ClassVar, TypeVar

from django.db import models
from django.db.models.constants import LOOKUP_SEP
from rest_framework import serializers
from rest_framework.serializers import LIST_SERIALIZER_KWARGS, LIST_SERIALIZER_KWARGS_REMOVE

from markets import formatting

_M = TypeVar("_M", bound=models.Model)
_ZERO = timedelta(0)

# Quotes repeat a lot (a few hundred distinct prices across a page), so formatting each distinct
# value once is worth a cache. Decimal hashes by value, and the output depends only on the value.
dollars: Callable[[Decimal | None], str | None] = lru_cache(maxsize=1 << 16)(formatting.dollars)
contracts: Callable[[Decimal | None], str | None] = lru_cache(maxsize=1 << 16)(formatting.contracts)


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a "Z" suffix, exactly as DRF's DateTimeField writes it with USE_TZ."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _optional_iso_utc(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


# Times repeat too (a poll cycle stamps every market it saw with one quote time). An aware
# datetime hashes by instant, and the text depends only on the instant once converted to UTC.
# None-safe like `dollars`, so a cache hit costs no Python call at all.
_cached_iso_utc: Callable[[datetime | None], str | None] = lru_cache(maxsize=1 << 16)(_optional_iso_utc)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_optional


def plain_decimal(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: strikes such as "60" or "84.5"."""
    return format(value.normalize(), "f")


class DollarsField(serializers.DecimalField):
    """A price in dollars, 0..1, as a string: at least 4 decimals, up to 6 for sub-cent prices."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(max_digits=10, decimal_places=6, coerce_to_string=True, **kwargs)

    # None-safe, for the column-wise path of FastListSerializer.
    format_value = staticmethod(dollars)

    def to_representation(self, value: Decimal) -> str:
        return dollars(value)  # type: ignore[return-value]


class ContractsField(serializers.DecimalField):
    """A number of contracts as a string with exactly 2 decimals (fractional contracts exist)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(max_digits=20, decimal_places=2, coerce_to_string=True, **kwargs)

    format_value = staticmethod(contracts)

    def to_representation(self, value: Decimal) -> str:
        return contracts(value)  # type: ignore[return-value]


class PlainDecimalField(serializers.DecimalField):
    """A decimal such as a strike or a fee multiplier, as a string without padding."""

    def __init__(self, *, max_digits: int, decimal_places: int, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(
            max_digits=max_digits, decimal_places=decimal_places, coerce_to_string=True, **kwargs
        )

    format_value = staticmethod(_optional(plain_decimal))

    def to_representation(self, value: Decimal) -> str:
        return plain_decimal(value)


class UTCDateTimeField(serializers.DateTimeField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    format_value = staticmethod(_cached_iso_utc)

    def to_representation(self, value: datetime) -> str:
        return _cached_iso_utc(value)  # type: ignore[return-value]


def _identity(value: Any) -> Any:
    return value


def _getter(source_attrs: Sequence[str]) -> Callable[[Any], Any]:
    if len(source_attrs) == 1:
        return attrgetter(source_attrs[0])

    # A missing link (an event whose series is not known yet) reads as None, not an error.
    def get(instance: Any) -> Any:
        for attr in source_attrs:
            instance = getattr(instance, attr)
            if instance is None:
                return None
        return instance

    return get


_Plan = tuple[tuple[str, Callable[[Any], Any], Callable[[Any], Any]], ...]
_ColumnPlan = tuple[tuple[str, str, Callable[[Any], Any] | None], ...]


class FastReadSerializer(serializers.ModelSerializer[_M]):
    """A read-only ModelSerializer whose output is built from a plan computed once per class.

    The declared fields stay the single source of truth for the schema and for the values (each
    field's own `to_representation` does the formatting); what is skipped is DRF's generic
    per-field dispatch, which costs more than the formatting itself on a 100-row page. The test
    suite checks that the output equals DRF's standard `to_representation` field for field.
    """

    _plans: ClassVar[dict[tuple[type, bool], _Plan]] = {}

    def _plan(self, rows: bool) -> _Plan:
        key = (type(self), rows)
        plan = FastReadSerializer._plans.get(key)
        if plan is None:
            plan = FastReadSerializer._plans[key] = self._build_plan(rows)
        return plan

    def _build_plan(self, rows: bool) -> _Plan:
        steps = []
        for name, field in self.fields.items():
            if field.write_only:
                continue
            convert: Callable[[Any], Any]
            if isinstance(field, serializers.ListSerializer):
                child = field.child
                # A plain Serializer child describes JSON stored in that very shape
                # (price ranges, settlement sources): it is passed through.
                convert = _many(child) if isinstance(child, FastReadSerializer) else _identity
            elif isinstance(
                field,
                FastReadSerializer | DollarsField | ContractsField | PlainDecimalField | UTCDateTimeField,
            ):
                convert = field.to_representation
            elif isinstance(
                field,
                serializers.CharField
                | serializers.ChoiceField
                | serializers.BooleanField
                | serializers.IntegerField
                | serializers.JSONField
                | serializers.ListField
                | serializers.DictField,
            ):
                # Values come from the database already in their JSON type.
                convert = _identity
            else:
                raise TypeError(f"{type(self).__name__}.{name}: no fast path for {type(field).__name__}")
            # Rows from `.values()` are keyed by lookup path: "event__series__ticker".
            get = itemgetter(LOOKUP_SEP.join(field.source_attrs)) if rows else _getter(field.source_attrs)
            steps.append((name, get, convert))
        return tuple(steps)

    def to_representation(self, instance: _M | dict[str, Any]) -> dict[str, Any]:
        """The output for a model instance, or for a row from `.values(*columns)`."""
        out: dict[str, Any] = {}
        for name, get, convert in self._plan(isinstance(instance, dict)):
            value = get(instance)
            out[name] = None if value is None else convert(value)
        return out

    _column_plans: ClassVar[dict[type, _ColumnPlan | None]] = {}

    def _column_plan(self) -> _ColumnPlan | None:
        """(name, `.values()` key, None-safe formatter or None) per field; None if a field nests."""
        cls = type(self)
        if cls not in FastReadSerializer._column_plans:
            steps = []
            for (name, _get, convert), field in zip(
                self._plan(True), (f for f in self.fields.values() if not f.write_only), strict=True
            ):
                if isinstance(field, serializers.BaseSerializer):
                    FastReadSerializer._column_plans[cls] = None
                    break
                fmt = getattr(field, "format_value", None)
                if fmt is None and convert is not _identity:
                    raise TypeError(f"{cls.__name__}.{name}: {type(field).__name__} has no format_value")
                steps.append((name, LOOKUP_SEP.join(field.source_attrs), fmt))
            else:
                FastReadSerializer._column_plans[cls] = tuple(steps)
        return FastReadSerializer._column_plans[cls]

    def represent_rows(self, rows: Sequence[dict[str, Any] | tuple[Any, ...]]) -> list[dict[str, Any]]:
        """`to_representation` of many rows at once, a column at a time.

        Rows are `.values(*columns())` dicts or `.values_list(*columns())` tuples (in that order;
        cheaper, as Django builds no dict per row). Formatting a column with `map` keeps the
        per-value work in C (the formatters are `lru_cache`s), where calling `to_representation`
        per row paid Python's per-field loop.
        """
        plan = self._column_plan()
        if plan is None:
            keys = self.columns()
            return [
                self.to_representation(row if type(row) is dict else dict(zip(keys, row, strict=True)))
                for row in rows
            ]
        names = [name for name, _key, _fmt in plan]
        if rows and type(rows[0]) is tuple:
            raw_columns: Iterable[Iterable[Any]] = zip(*rows, strict=True)
        else:
            raw_columns = (map(itemgetter(key), rows) for _name, key, _fmt in plan)
        columns = [
            column if fmt is None else map(fmt, column)
            for column, (_name, _key, fmt) in zip(raw_columns, plan, strict=True)
        ]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    @classmethod
    def many_init(cls, *args: Any, **kwargs: Any) -> serializers.ListSerializer[Any]:
        """DRF's `many_init`, with FastListSerializer as the list class unless a Meta names one."""
        list_kwargs = {key: kwargs.pop(key) for key in LIST_SERIALIZER_KWARGS_REMOVE if key in kwargs}
        list_kwargs = {key: value for key, value in list_kwargs.items() if value is not None}
        list_kwargs["child"] = cls(*args, **kwargs)
        list_kwargs.update({key: value for key, value in kwargs.items() if key in LIST_SERIALIZER_KWARGS})
        list_class = getattr(getattr(cls, "Meta", None), "list_serializer_class", FastListSerializer)
        return list_class(*args, **list_kwargs)

    _columns: ClassVar[dict[type, tuple[str, ...]]] = {}

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The `.values()` columns `to_representation` reads: only what the fields show."""
        columns = FastReadSerializer._columns.get(cls)
        if columns is None:
            columns = FastReadSerializer._columns[cls] = tuple(
                LOOKUP_SEP.join(field.source_attrs)
                for field in cls().fields.values()
                if not field.write_only and not isinstance(field, serializers.BaseSerializer)
            )
        return columns


class FastListSerializer(serializers.ListSerializer[Any]):
    """A list of FastReadSerializer items; a page of rows (`.values()` dicts or `.values_list()`
    tuples in `columns()` order) is formatted column-wise."""

    child: FastReadSerializer[Any]

    def to_representation(self, data: Any) -> list[Any]:
        items = data.all() if isinstance(data, models.manager.BaseManager) else data
        if isinstance(items, list) and items:
            row_type = type(items[0])
            if row_type in (dict, tuple) and all(type(item) is row_type for item in items):
                return self.child.represent_rows(items)
        return [self.child.to_representation(item) for item in items]


def _many(child: FastReadSerializer[Any]) -> Callable[[Any], list[dict[str, Any]]]:
    def convert(related: Any) -> list[dict[str, Any]]:
        items = related.all() if hasattr(related, "all") else related
        return [child.to_representation(item) for item in items]

    return convert
