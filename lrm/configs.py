"""Nested dataclass configs <-> JSON-able dicts, strictly (unknown keys are errors)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from lrm.errors import LRMError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`; missing keys take their defaults."""
    if not isinstance(data, dict):
        raise LRMError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise LRMError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    for k, v in kwargs.items():
        check_type(hints[k], v, f"{where}.{k}")
    try:
        return cls(**kwargs)
    except LRMError as exc:  # a __post_init__ range check: say where
        raise LRMError(f"{where}: {exc}") from None


def check_type(tp: Any, value: Any, where: str) -> None:
    """Raise an LRMError naming `where` unless `value` fits type hint `tp` (ints are not bools,
    floats accept ints, Literals their values, tuples their item types; dataclasses were built
    by from_dict and checked there)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        ok = isinstance(value, tp)
    elif origin is typing.Literal:
        ok = value in args and type(value) is type(next(a for a in args if a == value))
    elif origin is tuple:
        kinds = [args[0]] * len(value) if args and args[-1] is Ellipsis and isinstance(value, tuple) else list(args)
        ok = isinstance(value, tuple) and len(value) == len(kinds)
        for i, (kind, item) in enumerate(zip(kinds, value) if ok else ()):
            check_type(kind, item, f"{where}[{i}]")
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp in (str, bool):
        ok = isinstance(value, tp)
    else:
        ok = True
    if not ok and origin is typing.Literal:
        raise LRMError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if not ok:
        raise LRMError(f"{where}: {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def require(checks: list[tuple[bool, str]]) -> None:
    """For __post_init__ range checks: raise an LRMError with the first failing message."""
    for ok, msg in checks:
        if not ok:
            raise LRMError(msg)


def save_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise LRMError(f"{path}: not valid JSON ({exc})") from None
    return from_dict(cls, data, str(path))
