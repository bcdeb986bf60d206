"""Generic validation of a YAML mapping into frozen dataclasses: every field required, no unknown
keys, types checked (Optional, Literal, nested dataclasses, dict[str, X], tuple[X, ...]), then each
class's own ``check``. Messages name the dotted key."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Literal

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ParamsError(ValueError):
    """A params.yaml problem; the message names the dotted key."""


def _coerce(value, tp, key: str):
    if tp is typing.Any:  # already validated by its owner (config: the method sections)
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if value is None:
        raise ParamsError(f"{key}: must not be null")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return types.MappingProxyType({str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()})
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__}")
        (et, *_) = typing.get_args(tp)
        return tuple(_coerce(v, et, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)  # `dvc exp run -S x=1e-05` writes a string PyYAML will not parse
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {tp} at {key}")


def build(cls, raw, prefix: str = ""):
    """Build dataclass ``cls`` from mapping ``raw``; every field required, no unknown keys."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dot = f"{prefix}." if prefix else ""
    for k in raw:
        if k not in hints:
            raise ParamsError(f"{dot}{k}: unknown key (expected one of {', '.join(names)})")
    for k in names:
        if k not in raw:
            raise ParamsError(f"{dot}{k}: missing key")
    obj = cls(**{k: _coerce(raw[k], hints[k], f"{dot}{k}") for k in names})
    check = getattr(cls, "check", None)
    if check is not None:
        check(obj, prefix)
    return obj


def require_positive(obj, prefix: str, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ParamsError(f"{prefix}.{name}: must be positive, got {getattr(obj, name)!r}")
