"""Dataclasses to JSON-ready data and back, for snapshots, recordings and every JSON document.

`to_plain` turns dataclasses, enums, tuples and dicts into plain data; `from_plain` rebuilds a
value of a given type from it, guided by the type hints. A field whose type has its own compact
form (the firewall ruleset) names its converters in the field's metadata:
`field(metadata=codec(to_fn, from_fn))`. Nothing here keeps state.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Callable

_CODEC = "portdoctor.codec"


def codec(to_fn: Callable[[Any], Any], from_fn: Callable[[Any], Any]) -> dict[str, Any]:
    """Field metadata naming a type's own converters (used as `field(metadata=codec(...))`)."""
    return {_CODEC: (to_fn, from_fn)}


def to_plain(obj: Any) -> Any:
    """Convert dataclasses, enums, tuples and dicts to JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            conv = f.metadata.get(_CODEC)
            out[f.name] = conv[0](value) if conv and value is not None else to_plain(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` from `to_plain` output (dataclasses, enums, containers).

    Keys a dataclass does not know are ignored (a newer writer may add fields); missing keys
    take the field's default.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_plain(args[0], data)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"{tp.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                conv = f.metadata.get(_CODEC)
                value = data[f.name]
                kwargs[f.name] = conv[1](value) if conv and value is not None else from_plain(hints[f.name], value)
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], x) for x in data)
        return tuple(from_plain(a, x) for a, x in zip(args, data))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        return {(int(k) if key_t is int else k): from_plain(val_t, v) for k, v in data.items()}
    return data
