"""The codecs: JsonCodec round trips and errors, PickleCodec (no database needed, but one
end-to-end test of `Saga(..., codec=PickleCodec())`)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

import pytest

from saga import Codec, JsonCodec, PickleCodec, Saga

# -- annotations (module level: hints are resolved with typing.get_type_hints) ------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Money:
    amount: Decimal
    currency: str = "EUR"


@dataclass
class Line:
    sku: str
    qty: int
    price: Money


@dataclass
class Order:
    id: uuid.UUID
    lines: list[Line]
    by_sku: dict[str, Line]
    discount: Optional[Money]  # noqa: UP045 - the typing.Optional spelling on purpose
    note: Money | None
    color: Color
    level: Level
    placed: dt.datetime
    due: dt.date
    tags: set[int] = field(default_factory=set)
    pair: tuple[int, str] = (0, "")
    blob: bytes = b""


@dataclass
class Transfer:
    amount: int
    to: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float


class Opaque:
    """Not JSON-able: a plain class, for PickleCodec."""

    def __init__(self, payload: object) -> None:
        self.payload = payload
        self.seen = {1, 2, 3}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def codec() -> JsonCodec:
    return JsonCodec()


def roundtrip(codec: Codec, value: object, hint: object = None) -> object:
    text = codec.encode(value)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON text, for a jsonb column
    return codec.decode(text, hint)


def sample_order() -> Order:
    line = Line("a-1", 2, Money(Decimal("9.99")))
    return Order(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        lines=[line, Line("b-2", 1, Money(Decimal("0.10"), "USD"))],
        by_sku={"a-1": line},
        discount=None,
        note=Money(Decimal("1.5")),
        color=Color.BLUE,
        level=Level.HIGH,
        placed=dt.datetime(2024, 5, 17, 13, 45, 1, 123456, tzinfo=dt.timezone.utc),
        due=dt.date(2024, 6, 1),
        tags={3, 1, 2},
        pair=(7, "seven"),
        blob=b"\x00\xffbinary",
    )


# -- JsonCodec: round trips -----------------------------------------------------------------


def test_json_codec_is_a_codec() -> None:
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(PickleCodec(), Codec)


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -7, 2**62, 1.25, "", "héllo ✓", [], {}, [1, "a", None, [2.5]],
     {"a": {"b": [1, {"c": None}]}, "d": "e"}],
)
def test_json_scalars_and_nesting_round_trip_without_hint(codec: JsonCodec, value: object) -> None:
    assert roundtrip(codec, value) == value
    assert roundtrip(codec, value, Any) == value


def test_nested_dataclasses_round_trip(codec: JsonCodec) -> None:
    order = sample_order()
    back = roundtrip(codec, order, Order)
    assert back == order
    assert isinstance(back, Order)
    assert isinstance(back.lines[0], Line)
    assert isinstance(back.lines[0].price, Money)
    assert isinstance(back.by_sku["a-1"].price.amount, Decimal)
    assert back.discount is None
    assert isinstance(back.note, Money)
    assert back.color is Color.BLUE
    assert back.level is Level.HIGH
    assert back.tags == {1, 2, 3}
    assert isinstance(back.tags, set)
    assert back.pair == (7, "seven")
    assert isinstance(back.pair, tuple)
    assert back.blob == b"\x00\xffbinary"


def test_optional_dataclass_both_spellings(codec: JsonCodec) -> None:
    m = Money(Decimal("3"))
    assert roundtrip(codec, m, Optional[Money]) == m  # noqa: UP045
    assert roundtrip(codec, m, Money | None) == m
    assert roundtrip(codec, None, Optional[Money]) is None  # noqa: UP045
    assert roundtrip(codec, None, Money | None) is None


def test_containers_of_dataclasses(codec: JsonCodec) -> None:
    points = [Point(1.0, 2.5), Point(-3.0, 0.0)]
    assert roundtrip(codec, points, list[Point]) == points
    by_name = {"a": Point(1.0, 1.0), "b": Point(2.0, 2.0)}
    assert roundtrip(codec, by_name, dict[str, Point]) == by_name
    assert roundtrip(codec, [Point(0.5, 0.5), None], list[Point | None]) == [Point(0.5, 0.5), None]


def test_tuple_and_set(codec: JsonCodec) -> None:
    assert roundtrip(codec, (1, "x"), tuple[int, str]) == (1, "x")
    assert roundtrip(codec, (1, 2, 3), tuple[int, ...]) == (1, 2, 3)
    back = roundtrip(codec, {5, 6}, set[int])
    assert back == {5, 6}
    assert isinstance(back, set)
    assert roundtrip(codec, frozenset({"a"}), frozenset[str]) == frozenset({"a"})
    assert sorted(roundtrip(codec, {"k": {1, 2}})["k"]) == [1, 2]  # type: ignore[index]


def test_dict_with_int_keys(codec: JsonCodec) -> None:
    assert roundtrip(codec, {1: "a", 20: "b"}, dict[int, str]) == {1: "a", 20: "b"}


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (dt.datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
         dt.datetime),
        (dt.date(1999, 12, 31), dt.date),
        (dt.time(23, 59, 58), dt.time),
        (dt.timedelta(seconds=90.5), dt.timedelta),
        (uuid.uuid4(), uuid.UUID),
        (Decimal("12345678901234567890.123456789012345678"), Decimal),
        (Decimal("0.10"), Decimal),
        (Color.RED, Color),
        (Level.LOW, Level),
        (b"\x00\x01 bytes \xff", bytes),
    ],
)
def test_typed_scalars_round_trip(codec: JsonCodec, value: object, hint: type) -> None:
    back = roundtrip(codec, value, hint)
    assert back == value
    assert type(back) is type(value)


def test_aware_datetime_keeps_its_offset(codec: JsonCodec) -> None:
    when = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    back = roundtrip(codec, when, dt.datetime)
    assert isinstance(back, dt.datetime)
    assert back.utcoffset() == dt.timedelta(hours=2)


def test_decimal_keeps_its_precision(codec: JsonCodec) -> None:
    exact = Decimal("0.1000000000000000000000000001")
    back = roundtrip(codec, exact, Decimal)
    assert str(back) == "0.1000000000000000000000000001"  # not a float's 0.1
    assert str(roundtrip(codec, Decimal("2.50"), Decimal)) == "2.50"


def test_decode_without_hint_gives_plain_json(codec: JsonCodec) -> None:
    text = codec.encode(sample_order())
    plain = codec.decode(text)
    assert isinstance(plain, dict)
    assert plain["id"] == "12345678-1234-5678-1234-567812345678"
    assert plain["lines"][0] == {"sku": "a-1", "qty": 2,
                                 "price": {"amount": "9.99", "currency": "EUR"}}
    assert plain["color"] == "blue"
    assert plain["level"] == 2
    assert plain["discount"] is None
    assert sorted(plain["tags"]) == [1, 2, 3]
    assert plain["pair"] == [7, "seven"]


def test_encoding_is_readable_json(codec: JsonCodec) -> None:
    assert json.loads(codec.encode(Transfer(10, "bob"))) == {"amount": 10, "to": "bob"}
    assert codec.encode("é") == '"é"'  # not \u00e9: readable with psql


# -- JsonCodec: decode errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hint", "pattern"),
    [
        ('{"amount": "ten", "to": "bob"}', Transfer, r"\$\.amount.*expected int"),
        ('{"amount": true, "to": "bob"}', Transfer, r"\$\.amount.*expected int"),
        ('{"to": "bob"}', Transfer, r"\$.*missing field 'amount'"),
        ('{"amount": 1, "to": "bob", "extra": 1}', Transfer, r"\$.*unknown field.*extra"),
        ('[1, 2]', Transfer, r"\$.*expected an object"),
        ('{"amount": "x"}', Money, r"\$\.amount.*not a valid Decimal"),
        ('[{"x": 1, "y": "no"}]', list[Point], r"\$\[0\]\.y.*expected float"),
        ('{"a": {"x": 1}}', dict[str, Point], r"\$\.a.*missing field 'y'"),
        ('"green"', Color, r"\$.*green"),
        ('[1]', tuple[int, str], r"\$.*expected 2 items"),
        ('"2024-13-45"', dt.date, r"\$.*not a valid date"),
        ('"not-a-uuid"', uuid.UUID, r"\$.*not a valid UUID"),
        ('"%%%"', bytes, r"\$.*not a valid bytes"),
        ('5', str, r"\$.*expected str"),
        ('{"id": 1}', Order, r"\$\.id"),
    ],
)
def test_decode_errors_are_value_errors_with_a_path(
    codec: JsonCodec, text: str, hint: object, pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        codec.decode(text, hint)


def test_decode_error_path_reaches_nested_fields(codec: JsonCodec) -> None:
    data = json.loads(codec.encode(sample_order()))
    data["lines"][1]["price"]["amount"] = [1]
    with pytest.raises(ValueError, match=r"\$\.lines\[1\]\.price\.amount"):
        codec.decode(json.dumps(data), Order)


def test_decode_of_invalid_json_text_is_a_value_error(codec: JsonCodec) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own message is fine here
        codec.decode("{not json", Transfer)


# -- JsonCodec: encode errors -----------------------------------------------------------------


def circular_list() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (object(), "object is not JSON serializable"),
        ({"a": [object()]}, "not JSON serializable"),
        (float("nan"), "cannot encode nan"),
        (float("inf"), "cannot encode inf"),
        ({"x": [1.0, -float("inf")]}, "cannot encode"),
        ("a\x00b", "NUL"),
        ({"deep": ["ok", {"k": "nul \x00 here"}]}, "NUL"),
        ({"key\x00": 1}, "NUL"),
        ("\\\x00", "NUL"),  # a backslash, then a real NUL
        (circular_list(), "Circular reference"),
    ],
)
def test_encode_errors_are_type_errors(codec: JsonCodec, value: object, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        codec.encode(value)


@pytest.mark.parametrize("text", ["\\u0000", "\\\\u0000", "a\\u0000b", "\\u00001"])
def test_literal_backslash_u0000_text_encodes(codec: JsonCodec, text: str) -> None:
    assert "\x00" not in text  # the six characters \u0000, not a NUL
    assert roundtrip(codec, {"s": text}) == {"s": text}


# -- PickleCodec ----------------------------------------------------------------------------


def test_pickle_round_trips_an_arbitrary_object() -> None:
    codec = PickleCodec()
    value = Opaque({"when": dt.datetime(2024, 1, 1), "set": frozenset({1}), "n": 1 + 2j})
    text = codec.encode(value)
    assert set(json.loads(text)) == {"pickle"}  # wrapped in JSON, for the jsonb column
    back = codec.decode(text)
    assert isinstance(back, Opaque)
    assert back == value
    assert codec.decode(text, Order) == value  # a hint changes nothing
    assert codec.decode(codec.encode(None)) is None


def test_pickle_encode_error_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot pickle"):
        PickleCodec().encode(lambda: None)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        "42",
        "null",
        '{"pickle": 5}',
        "not json at all",
        '{"pickle": "aGVsbG8="}',  # valid base64 of b"hello": not a pickle
        '{"pickle": ""}',
    ],
)
def test_pickle_decode_of_a_non_pickle_payload_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the Codec contract names only the type
        PickleCodec().decode(text)


def test_pickle_codec_end_to_end(make_saga: Callable[..., Saga]) -> None:
    s = make_saga("pickled", codec=PickleCodec())

    @s.step
    def first(input: object, state: object) -> None:
        pass

    value = Opaque([1, {2, 3}, Point(1.0, 2.0)])
    s.start("p-1", first, value, state=Opaque("state"))
    record = s.get("p-1")
    assert record.input == value
    assert record.state == Opaque("state")
    assert s.get_state("p-1") == Opaque("state")


def test_saga_uses_json_codec_by_default() -> None:
    s = Saga("default-codec", "postgresql://unused")
    assert isinstance(s.codec, JsonCodec)
