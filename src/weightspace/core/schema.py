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

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

__all__ = ["ParamsError", "Section", "Number", "Positive", "PositiveInt", "NonNegative", "NonNegativeInt", "Fraction",
           "Share", "OpenUnit", "StrictBool", "StrictInt", "StrictStr", "validate"]

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


def _interval(lo: float, hi: float | None, lo_closed: bool, hi_closed: bool) -> AfterValidator:
    """The rule that a number lies in an interval; its error names the interval (``must lie in [0, 1), got 1.5``,
    ``must be >= 0, got -1``)."""
    def check(value):
        above = value >= lo if lo_closed else value > lo
        below = hi is None or (value <= hi if hi_closed else value < hi)
        if above and below:
            return value
        if hi is None:
            raise ValueError(f"must be {'>=' if lo_closed else '>'} {lo:g}, got {value!r}")
        raise ValueError(f"must lie in {'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}, got {value!r}")

    return AfterValidator(check)


# Every range rule of params.yaml, declared once; a section field takes the type whose rule it obeys.
NonNegative = Annotated[float, BeforeValidator(_number), _interval(0, None, True, False)]  # a weight, a KL coefficient
NonNegativeInt = Annotated[StrictInt, _interval(0, None, True, False)]  # a count that may be 0
Fraction = Annotated[float, BeforeValidator(_number), _interval(0, 1, True, False)]  # [0, 1): dropout, warmup share
Share = Annotated[float, BeforeValidator(_number), _interval(0, 1, False, True)]  # (0, 1]: top_p, an engine's memory
# (0, 1): a confidence level; the memory a vLLM engine colocated with the training claims (the rest is the training's)
OpenUnit = Annotated[float, BeforeValidator(_number), _interval(0, 1, False, False)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
