"""Self-consistency: aggregate n sampled answers into one value plus an agreement score in [0, 1].

Default rule, per field of the schema:

* categorical fields (``bool``, ``Literal[...]``, ``Enum``) -> majority vote on the *tuple* of all
  categorical fields (ties: the earliest sample wins);
* numeric fields (``int``, ``float``) -> mean over the samples in the majority (``int`` rounded);
* anything else (free text such as a ``reason``) -> taken from the first sample in the majority.

``agreement`` = samples in the majority / ``n`` requested (failed samples count as disagreeing). A
schema with no categorical field has agreement = valid samples / ``n``.

A custom ``aggregate(values)`` gets the list of valid schema instances and returns either a value
or ``(value, agreement)``; without an explicit agreement it is the share of the ``n`` samples equal
to the returned value (or valid / ``n`` when none is equal, e.g. a mean).
"""

from __future__ import annotations

import enum
import types
import typing
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError


def _kind(annotation: Any) -> str:
    """'cat', 'int', 'float' or 'other' for a field annotation (Optional[...] unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(args[0]) if len(args) == 1 else "other"
    if origin is typing.Literal or annotation is bool:
        return "cat"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "cat"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "other"


def _freeze(v: Any) -> Any:
    return v.value if isinstance(v, enum.Enum) else v


def aggregate_samples(values: list[Any], n: int, schema: type[BaseModel],
                      aggregate: Callable[[list[Any]], Any] | None = None) -> tuple[Any, float]:
    """(value, agreement) of the valid sample ``values`` out of ``n`` requested."""
    n = max(1, n)
    if not values:
        return None, 0.0
    if aggregate is not None:
        out = aggregate(values)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (int, float)):
            return out[0], float(out[1])
        same = sum(1 for v in values if _equal(v, out))
        return out, (same if same else len(values)) / n
    kinds = {name: _kind(f.annotation) for name, f in schema.model_fields.items()}
    cats = [k for k, kind in kinds.items() if kind == "cat"]
    if cats:
        tuples = [tuple(_freeze(getattr(v, c)) for c in cats) for v in values]
        top, count = Counter(tuples).most_common(1)[0]
        group = [v for v, t in zip(values, tuples) if t == top]
    else:
        group, count = values, len(values)
    rep = group[0].model_dump()
    for name, kind in kinds.items():
        nums = [getattr(v, name) for v in group if getattr(v, name) is not None]
        if kind in ("int", "float") and nums:
            mean = sum(nums) / len(nums)
            rep[name] = round(mean) if kind == "int" else mean
    try:
        value = schema.model_validate(rep)
    except ValidationError:
        value = group[0]
    return value, count / n


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, BaseModel) and isinstance(b, BaseModel):
        return a.model_dump() == b.model_dump()
    return a == b
