"""Types and helpers shared by the codec and type-hint tests (module level, since hints
are resolved with typing.get_type_hints)."""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

from saga import Codec


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Money:
    amount: Decimal
    currency: str = "EUR"


@dataclass
class Transfer:
    amount: int
    to: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float


class LineDict(TypedDict):
    sku: str
    price: Money


class _DraftBase(TypedDict):
    id: uuid.UUID
    lines: list[LineDict]


class Draft(_DraftBase, total=False):  # id and lines required, note and color optional
    note: str
    color: Color


def roundtrip(codec: Codec, value: object, hint: object = None) -> object:
    text = codec.encode(value)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON text, for a jsonb column
    return codec.decode(text, hint)
