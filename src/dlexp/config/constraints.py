"""Value constraints declared in type hints, checked when a config is composed.

A config key's limits sit beside its type, in the builder's signature or the
config dataclass, as ``annotated-types`` markers:

    width_div: Annotated[int, Ge(1)] = 1
    betas: Annotated[List[Annotated[float, Interval(ge=0, lt=1)]], Len(2, 2)] = (0.9, 0.999)
    pool: Literal["avg", "max"] = "avg"

``check(path, hint, value)`` reads them and raises a one-line ConfigError naming
the key's full path; ``plain_type`` strips them down to the types OmegaConf's
structured configs understand (OmegaConf knows neither Annotated nor Literal).
"""
from __future__ import annotations

import dataclasses
import functools
import difflib
import math
import typing
from typing import Annotated, Any, Iterable, List, Literal, Optional, Union

from annotated_types import Ge, GroupedMetadata, Gt, Interval, Le, Len, Lt, MaxLen, MinLen, Predicate

from dlexp.errors import ConfigError

# Shorthands for the limits most keys share.
PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Fraction = Annotated[float, Interval(ge=0, lt=1)]  # [0, 1): dropout, a held-out share that may be 0
Probability = Annotated[float, Interval(ge=0, le=1)]
Seed = Annotated[int, Ge(0)]  # numpy and sklearn reject negative seeds


def suggest(value: Any, choices: Iterable[Any]) -> Optional[Any]:
    """The choice the user most likely meant: a case-insensitive match first, then the closest spelling."""
    lowered = {str(c).lower(): c for c in choices}
    text = str(value).lower()
    if text in lowered:
        return lowered[text]
    hit = difflib.get_close_matches(text, list(lowered), n=1)
    return lowered[hit[0]] if hit else None


def did_you_mean(value: Any, choices: Iterable[Any], prefix: str = "") -> str:
    """`` Did you mean 'x'?`` (with ``prefix`` before the suggestion), or '' when nothing is close."""
    hint = suggest(value, choices)
    return f" Did you mean '{prefix}{hint}'?" if hint is not None else ""


def plain_type(hint: Any) -> Any:
    """``hint`` without constraints: Annotated[T, ...] -> T, Literal['a', 'b'] -> str, a dataclass -> its plain copy."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return plain_type(args[0])
    if origin is Literal:
        return type(args[0])
    if origin is Union:
        return Union[tuple(plain_type(a) for a in args)]
    if origin is list:
        return List[plain_type(args[0])] if args else list
    if origin is dict:
        return typing.Dict[plain_type(args[0]), plain_type(args[1])]
    if dataclasses.is_dataclass(hint):
        return plain_dataclass(hint)
    return hint


@functools.lru_cache(maxsize=None)
def plain_dataclass(schema: type) -> type:
    """A copy of the dataclass ``schema`` whose field types OmegaConf can read (see ``plain_type``); made once
    per schema (each run of a sweep validates the same groups)."""
    hints = typing.get_type_hints(schema, include_extras=True)
    fields = []
    for f in dataclasses.fields(schema):
        typ = plain_type(hints[f.name])
        if dataclasses.is_dataclass(typ):  # a nested group, e.g. trainer.early_stopping
            spec = dataclasses.field(default_factory=typ)
        elif f.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory)
        else:
            spec = dataclasses.field(default=f.default)
        fields.append((f.name, typ, spec))
    return dataclasses.make_dataclass(schema.__name__, fields)


def check_fields(path: str, schema: type, values: dict[str, Any]) -> None:
    """Check every field of the dataclass ``schema`` in ``values`` (a plain dict) against its declared limits."""
    hints = typing.get_type_hints(schema, include_extras=True)
    for f in dataclasses.fields(schema):
        if f.name in values:
            check(f"{path}.{f.name}", hints[f.name], values[f.name])


def check(path: str, hint: Any, value: Any) -> None:
    """Raise ConfigError if ``value`` (already of the plain type) breaks a limit declared in ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        check(path, args[0], value)
        for mark in args[1:]:
            if not _holds(mark, value):
                raise ConfigError(f"{path} must {_describe(mark)}, got {_show(value)}")
    elif origin is Literal:
        if value not in args:
            hint = did_you_mean(value, args)
            raise ConfigError(f"{path} must be one of {', '.join(map(str, args))}, got {_show(value)}{'.' + hint if hint else ''}")
    elif origin is Union:
        if value is not None:
            for arg in args:
                if arg is not type(None):
                    check(path, arg, value)
    elif origin is list and args and isinstance(value, list):
        for i, item in enumerate(value):
            check(f"{path}[{i}]", args[0], item)
    elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
        check_fields(path, hint, value)


def _holds(mark: Any, value: Any) -> bool:
    if isinstance(mark, GroupedMetadata):  # Interval, Len: several bounds at once
        return all(_holds(m, value) for m in mark)
    if isinstance(mark, Gt):
        return value > mark.gt
    if isinstance(mark, Ge):
        return value >= mark.ge
    if isinstance(mark, Lt):
        return value < mark.lt
    if isinstance(mark, Le):
        return value <= mark.le
    if isinstance(mark, MinLen):
        return len(value) >= mark.min_length
    if isinstance(mark, MaxLen):
        return len(value) <= mark.max_length
    if isinstance(mark, Predicate):  # a rule no bound expresses; its docstring says what it asks
        return bool(mark.func(value))
    raise TypeError(f"constraint {mark!r} is not supported by dlexp.config.constraints")


def _describe(mark: Any) -> str:
    """What ``mark`` asks for, to follow 'must': 'be > 0', 'be in [0, 1)', 'have 2 values'."""
    if isinstance(mark, Interval):
        low = f"[{_num(mark.ge)}" if mark.ge is not None else f"({_num(mark.gt)}" if mark.gt is not None else "(-inf"
        high = f"{_num(mark.le)}]" if mark.le is not None else f"{_num(mark.lt)})" if mark.lt is not None else "inf)"
        return f"be in {low}, {high}"
    if isinstance(mark, Len):
        top = mark.max_length
        if top == mark.min_length:
            return f"have {top} value{'s' * (top != 1)}"
        return f"have {mark.min_length} to {top} values" if top is not None else f"have at least {mark.min_length} value(s)"
    if isinstance(mark, MinLen):
        return f"have at least {mark.min_length} value{'s' * (mark.min_length != 1)}"
    if isinstance(mark, MaxLen):
        return f"have at most {mark.max_length} values"
    if isinstance(mark, Predicate):
        return (mark.func.__doc__ or "pass its check").strip()
    for cls, op, attr in ((Gt, ">", "gt"), (Ge, ">=", "ge"), (Lt, "<", "lt"), (Le, "<=", "le")):
        if isinstance(mark, cls):
            return f"be {op} {_num(getattr(mark, attr))}"
    return f"satisfy {mark!r}"


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() and not math.isinf(x) else str(x)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
