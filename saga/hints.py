"""Rebuild typed values from plain JSON values, guided by type hints.

This is how `JsonCodec` turns a step's stored input and state back into the dataclasses,
datetimes, enums, ... that the step's annotations name.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import enum
import json
import types
import typing
import uuid
from collections import abc
from decimal import Decimal
from typing import Any, Final


def short(value: object) -> str:
    """*value*'s repr, cut to 80 characters, for messages."""
    try:
        text = repr(value)
    except Exception:  # RecursionError for a deep value, or a broken __repr__
        return f"<{type(value).__qualname__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def from_json(value: object, hint: Any, path: str = "$") -> object:
    """Shape the plain JSON *value* into the type *hint*; `ValueError` if it does not fit."""
    if hint is None or hint is type(None):
        if value is not None:
            raise ValueError(f"{path}: expected null, got {short(value)}")
        return None
    if hint is typing.Any or hint is object:
        return value
    supertype = getattr(hint, "__supertype__", None)  # a NewType is its supertype at run time
    if supertype is not None:
        return from_json(value, supertype, path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _from_union(value, args, path)
    if origin is typing.Literal:
        return _from_literal(value, args, path)
    if origin is typing.Annotated or getattr(origin, "_name", None) in _QUALIFIERS:
        return from_json(value, args[0], path)
    if origin is not None:
        return _from_generic(value, origin, args, path)
    if isinstance(hint, type):
        return _from_class(value, hint, path)
    return value  # a TypeVar, a string forward reference, ...: leave the value alone


# What only qualifies the hint it wraps (TypedDict keys, Final); matched by name, as
# typing_extensions has its own Required, ... on old Pythons.
_QUALIFIERS: Final = ("Required", "NotRequired", "ReadOnly", "Final")

# The concrete type a JSON array or object becomes for each container origin, abstract or not.
_ARRAYS: dict[Any, type] = {
    list: list, tuple: tuple, set: set, frozenset: frozenset, collections.deque: collections.deque,
    abc.Sequence: list, abc.MutableSequence: list, abc.Collection: list, abc.Iterable: list,
    abc.Set: set, abc.MutableSet: set,
}
_OBJECTS: dict[Any, type] = {
    dict: dict, abc.Mapping: dict, abc.MutableMapping: dict,
    collections.OrderedDict: collections.OrderedDict, collections.Counter: collections.Counter,
}


def _from_union(value: object, args: tuple[Any, ...], path: str) -> object:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return from_json(value, arg, path)
        except (ValueError, TypeError) as e:
            errors.append(str(e))
    raise ValueError("; ".join(errors) or f"{path}: no type of the union fits")


def _from_literal(value: object, args: tuple[Any, ...], path: str) -> object:
    for arg in args:
        # Compare types too, as 1 == 1.0 == True; an enum member is stored as its value.
        expected = arg.value if isinstance(arg, enum.Enum) else arg
        if type(value) is type(expected) and value == expected:
            return arg
    raise ValueError(f"{path}: {short(value)} is not one of {args}")


def _from_generic(value: object, origin: Any, args: tuple[Any, ...], path: str) -> object:
    if origin in _ARRAYS:
        return _from_array(value, _ARRAYS[origin], args, path)
    if origin in _OBJECTS:
        return _from_object(value, _OBJECTS[origin], args, path)
    if not isinstance(origin, type):
        return value
    if dataclasses.is_dataclass(origin):  # a generic dataclass, Box[int]
        return _from_dataclass(value, origin, path, args)
    if _is_typeddict(origin):
        return _from_typeddict(value, origin, path, args)
    return _from_class(value, origin, path)  # defaultdict[str, int], type[X], ...: no decoding


def _from_array(value: object, kind: type, args: tuple[Any, ...], path: str) -> object:
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected an array, got {short(value)}")
    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(from_json(v, a, f"{path}[{i}]") for i, (a, v) in pairs)
    item = args[0] if args else Any
    items = [from_json(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    return items if kind is list else kind(items)


def _from_object(value: object, kind: type, args: tuple[Any, ...], path: str) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object, got {short(value)}")
    key_hint = args[0] if args else Any
    val_hint = args[1] if len(args) > 1 else Any  # Counter[str] has no value hint
    items = {
        _dict_key(k, key_hint, path): from_json(v, val_hint, f"{path}.{k}")
        for k, v in value.items()
    }
    return items if kind is dict else kind(items)


def _dict_key(key: str, hint: Any, path: str) -> object:
    # JSON object keys are strings: json.dumps wrote int, float, bool and None keys as JSON
    # ("1", "1.5", "true", "null"), so a key that does not fit as text is read as JSON.
    if hint is str or hint is typing.Any or hint is object:
        return key
    where = f"{path}: key {key!r}"
    try:
        return from_json(key, hint, where)
    except ValueError as e:
        error = e
    try:
        return from_json(json.loads(key), hint, where)
    except (ValueError, RecursionError):
        raise error from None


_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,),
    bool: (bool,),
    int: (int,),
    float: (int, float),  # jsonb writes 1e16 as 10000000000000000: json reads an int
}


def _from_class(value: object, cls: type, path: str) -> object:
    if cls in _SCALARS:
        if not isinstance(value, _SCALARS[cls]) or (cls is not bool and isinstance(value, bool)):
            raise ValueError(f"{path}: expected {cls.__name__}, got {short(value)}")
        if cls is not float:
            return value
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise ValueError(f"{path}: {short(value)} is too large for a float") from None
    if dataclasses.is_dataclass(cls):
        return _from_dataclass(value, cls, path)
    if _is_typeddict(cls):
        return _from_typeddict(value, cls, path)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _from_namedtuple(value, cls, path)
    if issubclass(cls, enum.Enum):
        try:
            return cls(value)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    parse = _PARSERS.get(cls)
    if parse is not None:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{path}: expected {cls.__name__} text, got {short(value)}")
        try:
            return parse(value)
        except (ValueError, TypeError, ArithmeticError) as e:
            raise ValueError(f"{path}: not a valid {cls.__name__}: {short(value)}") from e
    validate = getattr(cls, "model_validate", None)  # pydantic v2
    if callable(validate):
        try:
            return validate(value)
        except Exception as e:  # pydantic's ValidationError is a ValueError subclass
            raise ValueError(f"{path}: {e}") from e
    if cls in _ARRAYS or cls in _OBJECTS:
        return _from_generic(value, cls, (), path)
    try:
        fits = isinstance(value, cls)
    except TypeError:  # a Protocol without @runtime_checkable, ...: nothing to check
        return value
    if fits:
        return value
    raise ValueError(f"{path}: expected {cls.__qualname__}, got {short(value)}")


def _from_dataclass(value: object, cls: type, path: str, args: tuple[Any, ...] = ()) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object for {cls.__qualname__}, got {short(value)}")
    hints = _field_hints(cls, args)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = value.keys() - fields.keys()
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)} for {cls.__qualname__}")
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = from_json(value[name], hints.get(name, Any), f"{path}.{name}")
        elif f.init and f.default is dataclasses.MISSING and (
            f.default_factory is dataclasses.MISSING
        ):
            raise ValueError(f"{path}: missing field {name!r} of {cls.__qualname__}")
    try:
        return cls(**{k: v for k, v in kwargs.items() if fields[k].init})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: cannot build {cls.__qualname__}: {e}") from e


def _is_typeddict(cls: type) -> bool:
    # Structural, so that typing_extensions.TypedDict counts too.
    return issubclass(cls, dict) and hasattr(cls, "__required_keys__")


def _from_typeddict(value: object, cls: type, path: str, args: tuple[Any, ...] = ()) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object for {cls.__qualname__}, got {short(value)}")
    hints = _field_hints(cls, args)
    unknown = value.keys() - hints.keys()
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)} for {cls.__qualname__}")
    missing = [k for k, h in hints.items() if k not in value and _required(cls, k, h)]
    if missing:
        raise ValueError(f"{path}: missing key(s) {sorted(missing)} of {cls.__qualname__}")
    return {k: from_json(v, hints[k], f"{path}.{k}") for k, v in value.items()}


def _required(cls: type, key: str, hint: Any) -> bool:
    # Trust the hint's Required/NotRequired over __required_keys__, which is wrong when the
    # annotations are strings (from __future__ import annotations) before Python 3.14.
    qualifier: object = getattr(typing.get_origin(hint), "_name", None)
    if qualifier in ("Required", "NotRequired"):
        return qualifier == "Required"
    return key in frozenset(getattr(cls, "__required_keys__", ()))


def _from_namedtuple(value: object, cls: type, path: str) -> object:
    fields: tuple[str, ...] = getattr(cls, "_fields", ())
    if not isinstance(value, list) or len(value) > len(fields):
        raise ValueError(f"{path}: expected an array for {cls.__qualname__}, got {short(value)}")
    hints = type_hints(cls)
    items = [from_json(v, hints.get(f, Any), f"{path}[{i}]")
             for i, (f, v) in enumerate(zip(fields, value, strict=False))]
    try:
        return cls(*items)
    except TypeError as e:  # too few items for the fields without defaults
        raise ValueError(f"{path}: cannot build {cls.__qualname__}: {e}") from e


def _field_hints(cls: type, args: tuple[Any, ...]) -> dict[str, Any]:
    """The field hints of *cls*, with its type parameters bound to *args* (`Box[int]`)."""
    hints = type_hints(cls)
    params = getattr(cls, "__parameters__", ())
    if not args or len(args) != len(params):
        return hints
    bound = dict(zip(params, args, strict=True))
    return {name: _bind(hint, bound) for name, hint in hints.items()}


def _bind(hint: Any, bound: dict[Any, Any]) -> Any:
    if isinstance(hint, typing.TypeVar):
        return bound.get(hint, hint)
    params = () if isinstance(hint, type) else getattr(hint, "__parameters__", ())
    return hint[tuple(bound.get(p, p) for p in params)] if params else hint  # list[T][int]


def type_hints(obj: Any) -> dict[str, Any]:
    """The resolved annotations of a class or function; `NameError` names what is missing."""
    return typing.get_type_hints(obj, include_extras=True)


_PARSERS: dict[type, typing.Callable[[str | int | float], object]] = {
    dt.datetime: lambda v: dt.datetime.fromisoformat(str(v)),
    dt.date: lambda v: dt.date.fromisoformat(str(v)),
    dt.time: lambda v: dt.time.fromisoformat(str(v)),
    dt.timedelta: lambda v: dt.timedelta(seconds=float(v)),
    uuid.UUID: lambda v: uuid.UUID(str(v)),
    Decimal: lambda v: Decimal(str(v)),
    bytes: lambda v: base64.b64decode(str(v), validate=True),
    bytearray: lambda v: bytearray(base64.b64decode(str(v), validate=True)),
}
