"""How inputs and states become column values and back.

The default `JsonCodec` writes readable `jsonb` and rebuilds typed values from the
step's annotations. `PickleCodec` is an explicit opt-in: unpickling a row lets
whoever can write the table run code in the worker.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import enum
import json
import pickle
import re
import typing
import uuid
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from .hints import from_json, short

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
    """JSON with dataclasses, TypedDicts, pydantic models, enums, datetimes, UUIDs, Decimals, sets.

    Encoding is structural; decoding rebuilds classes from the type hint (the step's
    annotation), so a value without a hint comes back as plain JSON values.
    """

    def encode(self, value: object) -> str:
        try:
            text = _dumps(value)
        except (ValueError, TypeError, RecursionError) as e:  # NaN, circular or too deep
            raise TypeError(f"cannot encode {short(value)} as JSON: {e}") from e
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise TypeError("cannot encode a string holding a NUL character (\\x00) as JSON")
        if not text.isascii():  # isascii() is O(1); psycopg sends UTF-8, which has no surrogates
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                bad = e.object[e.start:e.end]
                raise TypeError(
                    f"cannot encode a string holding a lone surrogate ({bad!r}) as JSON: "
                    "it is not valid UTF-8"
                ) from None
        return text

    def decode(self, text: str, hint: object = None) -> object:
        value = _loads(text)
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
        except (pickle.PicklingError, AttributeError, RecursionError) as e:
            raise TypeError(f"cannot pickle {short(value)}: {e}") from e
        return json.dumps({"pickle": base64.b64encode(data).decode("ascii")})

    def decode(self, text: str, hint: object = None) -> object:
        wrapped = _loads(text)
        if not isinstance(wrapped, dict) or not isinstance(wrapped.get("pickle"), str):
            raise ValueError("not a pickled value: expected {\"pickle\": \"<base64>\"}")
        try:
            return pickle.loads(base64.b64decode(wrapped["pickle"], validate=True))
        except Exception as e:  # binascii.Error, UnpicklingError, EOFError, a missing class
            raise ValueError(f"not a valid pickle: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"


def _dumps(value: object) -> str:
    try:
        return json.dumps(value, default=_to_json, allow_nan=False, ensure_ascii=False)
    except TypeError:  # json.dumps calls no default() for dict keys: retry with plain keys
        return json.dumps(_plain(value), allow_nan=False, ensure_ascii=False)


def _plain(value: object) -> object:
    """*value* made of plain JSON values, dict keys too (a UUID, date or Enum key: a string)."""
    if isinstance(value, dict):
        return {_plain_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return _plain(_to_json(value))


def _plain_key(key: object) -> object:
    try:
        plain = key if key is None or isinstance(key, str | int | float) else _to_json(key)
    except TypeError:
        plain = key
    if plain is None or isinstance(plain, str | int | float):
        return plain
    raise TypeError(f"a dict key must encode as a string or number, not {short(key)}")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # json.loads raises it for arrays nested ~1000 deep
        raise ValueError("cannot decode JSON nested too deeply") from None


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
    if isinstance(value, set | frozenset | collections.deque):
        return list(value)
    model_dump = getattr(value, "model_dump", None)  # pydantic v2, without importing it
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")
