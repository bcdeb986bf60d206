"""The base of every ``params.yaml`` section (pydantic v2) and ``ParamsError``.

A section is a frozen pydantic model that rejects unknown keys; every field without a default is
required (``null`` where it does not apply). Integers, booleans and strings are strict (``2.5`` is no
step count, ``"yes"`` no boolean); numbers accept what ``dvc exp run -S x=1e-05`` writes, a string
PyYAML does not read as a float (treeverse/dvc#5971). A cross-field rule is a ``model_validator``
that raises ``ValueError("<key relative to the section>: <problem>")``. ``validate`` turns pydantic's
errors into one ``ParamsError`` whose one-line message names the dotted key.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

__all__ = ["ParamsError", "Section", "Number", "Positive", "PositiveInt", "StrictBool", "StrictInt", "StrictStr",
           "validate"]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ParamsError(ValueError):
    """A params.yaml problem; the message names the dotted key."""


def _number(value):
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)  # `dvc exp run -S x=1e-05` writes a string PyYAML will not parse
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


Number = Annotated[float, BeforeValidator(_number)]
Positive = Annotated[float, BeforeValidator(_number), Field(gt=0)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]


_READ: set[str] | None = None  # dotted keys read since ``trace`` was first called; None: not recording
_PATH: dict[int, str] = {}  # id of a traced section -> its dotted key


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if _READ is not None and name in type(self).model_fields and id(self) in _PATH:
            path = _PATH[id(self)]
            _READ.add(f"{path}.{name}" if path else name)
        return value

    def model_copy(self, *args, **kwargs):
        new = super().model_copy(*args, **kwargs)
        if _READ is not None and id(self) in _PATH:
            _register(new, _PATH[id(self)])  # a copy (e.g. with another step count) is read as the same key
        return new


def _register(obj, path: str) -> None:
    if isinstance(obj, Section):
        _PATH[id(obj)] = path
        for name in type(obj).model_fields:
            _register(obj.__dict__[name], f"{path}.{name}" if path else name)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _register(v, f"{path}.{k}")


def trace(root: Section) -> None:
    """From now on, record every field of ``root``'s tree that code reads, as its dotted key (``reads``):
    how a stage's params are checked against what ``dvc.yaml`` lists for it (``stages.common.parse``)."""
    global _READ
    if _READ is None:
        _READ = set()
    _register(root, "")


def reads() -> list[str]:
    """The dotted keys read since ``trace``, without those only read on the way to a deeper one
    (``train`` when ``train.steps`` was read); a section handed on whole and never opened stays."""
    keys = sorted(_READ or ())
    return [k for k in keys if not any(o.startswith(k + ".") for o in keys)]


def _key(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict) -> str:
    """One pydantic error as ``<dotted key>: <problem>``."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = _key(loc)
    if kind == "value_error":  # ours: "expected a number" (a field) or "<relative key>: ..." (a section rule)
        text = str(ctx.get("error", err["msg"]))
        rel = re.match(r"^([\w.\[\]]+): ", text)
        if rel and not text.startswith("expected a "):
            return f"{key}.{text}" if key else text
        return f"{key}: {text}"
    texts = {
        "missing": "missing key",
        "extra_forbidden": "unknown key",
        "int_type": f"expected an integer, got {value!r}",
        "int_from_float": f"expected an integer, got {value!r}",
        "bool_type": f"expected true/false, got {value!r}",
        "string_type": f"expected a string, got {value!r}",
        "literal_error": f"{value!r} is not one of {ctx.get('expected', '')}",
        "dict_type": f"expected a mapping, got {type(value).__name__}",
        "model_type": f"expected a mapping, got {type(value).__name__}",
        "tuple_type": f"expected a list, got {type(value).__name__}",
        "list_type": f"expected a list, got {type(value).__name__}",
        "greater_than": (f"must be positive, got {value!r}" if ctx.get("gt") == 0 else
                         f"must be > {ctx.get('gt')}, got {value!r}"),
        "greater_than_equal": f"must be >= {ctx.get('ge')}, got {value!r}",
        "less_than": f"must be < {ctx.get('lt')}, got {value!r}",
    }
    return f"{key or 'params'}: {texts.get(kind, err['msg'])}"


def validate(model: type[BaseModel], raw):
    """``model`` from the mapping ``raw``, or ParamsError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: expected a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_message(e.errors(include_url=False)[0])) from None
