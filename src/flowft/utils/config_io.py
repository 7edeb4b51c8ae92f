"""Frozen-dataclass configs <-> JSON (the resolved config saved in every run dir and checkpoint)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from flowft.utils.validate import deferred

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """JSON-normalised dict (tuples become lists), so it compares equal to what config.json reads back."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, where)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"config field '{where}': cannot read {value!r} as {tp}")
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"config field '{where}': {value!r} is not one of {typing.get_args(tp)}")
        return value
    if tp is float and isinstance(value, (int, float)):
        return float(value)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise TypeError(f"config field '{where}': expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Rebuild a (nested) dataclass; unknown keys are an error so that stale or foreign configs are caught."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config {where or cls.__name__}: unknown field(s) {sorted(unknown)}")
    with deferred():  # nested configs are checked by cls's own check, under their full flag names
        kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False))
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
