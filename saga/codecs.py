"""How inputs and states become column values and back.

The default `JsonCodec` writes readable `jsonb` and rebuilds typed values from the
step's annotations. `PickleCodec` is an explicit opt-in: unpickling a row lets
whoever can write the table run code in the worker.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import pickle
import re
import types
import typing
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

# Postgres' jsonb rejects \u0000 in strings; catch it in the caller, not at INSERT.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


@runtime_checkable
class Codec(Protocol):
    """Turns Python values into JSON text for a `jsonb` column, and back."""

    def encode(self, value: object) -> str:
        """Return JSON text for *value*; raise `TypeError` if it cannot be encoded."""
        ...

    def decode(self, text: str, hint: object = None) -> object:
        """Return the value of *text*, shaped by the type *hint* when there is one.

        Raise `ValueError` when the data does not fit the hint.
        """
        ...


class JsonCodec:
    """JSON with dataclasses, pydantic models, datetimes, UUIDs, Decimals, enums and sets.

    Encoding is structural; decoding rebuilds classes from the type hint (the step's
    annotation), so a value without a hint comes back as plain JSON values.
    """

    def encode(self, value: object) -> str:
        try:
            text = json.dumps(value, default=_to_json, allow_nan=False, ensure_ascii=False)
        except ValueError as e:  # NaN/Infinity, circular references
            raise TypeError(f"cannot encode {_short(value)} as JSON: {e}") from e
        except TypeError as e:
            raise TypeError(f"cannot encode {_short(value)} as JSON: {e}") from e
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise TypeError("cannot encode a string holding a NUL character (\\x00) as JSON")
        return text

    def decode(self, text: str, hint: object = None) -> object:
        value = json.loads(text)
        if hint is None or hint is typing.Any or hint is object:
            return value
        return from_json(value, hint)

    def __repr__(self) -> str:
        return "JsonCodec()"


class PickleCodec:
    """Pickle, wrapped in JSON: any picklable value round-trips, without annotations.

    Opt-in only. Whoever can write the `instance` table can make a worker that uses
    this codec run arbitrary code, so use it only where the table is as trusted as
    the code.
    """

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def encode(self, value: object) -> str:
        try:
            data = pickle.dumps(value, protocol=self.protocol)
        except (pickle.PicklingError, AttributeError) as e:
            raise TypeError(f"cannot pickle {_short(value)}: {e}") from e
        return json.dumps({"pickle": base64.b64encode(data).decode("ascii")})

    def decode(self, text: str, hint: object = None) -> object:
        wrapped = json.loads(text)
        if not isinstance(wrapped, dict) or not isinstance(wrapped.get("pickle"), str):
            raise ValueError("not a pickled value: expected {\"pickle\": \"<base64>\"}")
        try:
            return pickle.loads(base64.b64decode(wrapped["pickle"], validate=True))
        except Exception as e:  # binascii.Error, UnpicklingError, EOFError, a missing class
            raise ValueError(f"not a valid pickle: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _to_json(value: object) -> object:
    """Encode what `json` does not know; called by `json.dumps` for each such value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    model_dump = getattr(value, "model_dump", None)  # pydantic v2, without importing it
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


def from_json(value: object, hint: Any, path: str = "$") -> object:
    """Shape the plain JSON *value* into the type *hint*; `ValueError` if it does not fit."""
    if hint is None or hint is type(None):
        if value is not None:
            raise ValueError(f"{path}: expected null, got {_short(value)}")
        return None
    if hint is typing.Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _from_union(value, typing.get_args(hint), path)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{path}: {_short(value)} is not one of {typing.get_args(hint)}")
        return value
    if origin is typing.Annotated:
        return from_json(value, typing.get_args(hint)[0], path)
    if origin is not None:
        return _from_generic(value, origin, typing.get_args(hint), path)
    if isinstance(hint, type):
        return _from_class(value, hint, path)
    return value  # a TypeVar, a string forward reference, ...: leave the value alone


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


def _from_generic(value: object, origin: Any, args: tuple[Any, ...], path: str) -> object:
    if origin in (list, set, frozenset, tuple) or origin is typing.Sequence:
        if not isinstance(value, list):
            raise ValueError(f"{path}: expected an array, got {_short(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(from_json(v, a, f"{path}[{i}]") for i, (a, v) in pairs)
        item = args[0] if args else Any
        items = [from_json(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin in (list, typing.Sequence) else origin(items)
    if origin in (dict, Mapping) or origin is typing.Mapping:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object, got {_short(value)}")
        key_hint, val_hint = args if args else (Any, Any)
        return {
            _dict_key(k, key_hint, path): from_json(v, val_hint, f"{path}.{k}")
            for k, v in value.items()
        }
    return value


def _dict_key(key: str, hint: Any, path: str) -> object:
    # JSON object keys are strings: rebuild int, UUID, enum, ... keys from the hint.
    if hint is int:
        try:
            return int(key)
        except ValueError:
            raise ValueError(f"{path}: key {key!r} is not an integer") from None
    return from_json(key, hint, f"{path}.{key}")


_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,),
    bool: (bool,),
    int: (int,),
    float: (int, float),
}


def _from_class(value: object, cls: type, path: str) -> object:
    if cls in _SCALARS:
        if not isinstance(value, _SCALARS[cls]) or (cls is not bool and isinstance(value, bool)):
            raise ValueError(f"{path}: expected {cls.__name__}, got {_short(value)}")
        return float(value) if cls is float else value  # type: ignore[arg-type]
    if dataclasses.is_dataclass(cls):
        return _from_dataclass(value, cls, path)
    if issubclass(cls, enum.Enum):
        try:
            return cls(value)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    parse = _PARSERS.get(cls)
    if parse is not None:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{path}: expected {cls.__name__} text, got {_short(value)}")
        try:
            return parse(value)
        except (ValueError, TypeError, ArithmeticError) as e:
            raise ValueError(f"{path}: not a valid {cls.__name__}: {_short(value)}") from e
    validate = getattr(cls, "model_validate", None)  # pydantic v2
    if callable(validate):
        try:
            return validate(value)
        except Exception as e:  # pydantic's ValidationError is a ValueError subclass
            raise ValueError(f"{path}: {e}") from e
    if cls in (list, dict, tuple, set, frozenset):
        return _from_generic(value, cls, (), path)
    if isinstance(value, cls):
        return value
    raise ValueError(f"{path}: expected {cls.__qualname__}, got {_short(value)}")


def _from_dataclass(value: object, cls: type, path: str) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object for {cls.__qualname__}, got {_short(value)}")
    hints = type_hints(cls)
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


def type_hints(obj: Any) -> dict[str, Any]:
    """The resolved annotations of a class or function; `NameError` names what is missing."""
    return typing.get_type_hints(obj, include_extras=True)


def _parse_datetime(value: str | int | float) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value))


def _parse_date(value: str | int | float) -> dt.date:
    return dt.date.fromisoformat(str(value))


def _parse_time(value: str | int | float) -> dt.time:
    return dt.time.fromisoformat(str(value))


def _parse_timedelta(value: str | int | float) -> dt.timedelta:
    return dt.timedelta(seconds=float(value))


_PARSERS: dict[type, typing.Callable[[str | int | float], object]] = {
    dt.datetime: _parse_datetime,
    dt.date: _parse_date,
    dt.time: _parse_time,
    dt.timedelta: _parse_timedelta,
    uuid.UUID: lambda v: uuid.UUID(str(v)),
    Decimal: lambda v: Decimal(str(v)),
    bytes: lambda v: base64.b64decode(str(v), validate=True),
}
