"""saga.hints through JsonCodec.decode: rebuilding typed values from JSON by type hint."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import sys
import typing
import uuid
from collections import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NamedTuple,
    NewType,
    Optional,
    Protocol,
    TypedDict,
    TypeVar,
)

import pytest

from saga import JsonCodec
from tests.codec_types import Color, Draft, Money, Point, Transfer, roundtrip

# -- annotations (module level: hints are resolved with typing.get_type_hints) ------------


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


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


if sys.version_info >= (3, 11):
    from typing import NotRequired, Required

    class Marked(TypedDict):  # string annotations: __required_keys__ says {"a", "b"}
        a: int
        b: NotRequired[Point]

    class Sparse(TypedDict, total=False):  # and here it says {}
        a: Required[int]
        b: Point
else:
    Marked = Sparse = None  # their test is skipped


T = TypeVar("T")


@dataclass
class Box(Generic[T]):
    item: T
    items: list[T] = field(default_factory=list)
    maybe: T | None = None


class Pair(NamedTuple):
    left: Point
    right: Money | None = None


UserId = NewType("UserId", int)
PointRef = NewType("PointRef", Point)


class Shape(Protocol):  # not @runtime_checkable: isinstance() would raise TypeError
    def area(self) -> float: ...


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


# -- decoding by hint: dataclasses, containers, typed scalars ----------------------------------


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


# -- JsonCodec: more hints: abstract containers, TypedDict, Literal, NewType, generics ----------

POINTS = [Point(1.0, 2.5), Point(-3.0, 0.0)]


@pytest.mark.parametrize(
    "hint",
    [typing.Sequence[Point], Sequence[Point], abc.MutableSequence[Point],
     abc.Iterable[Point], abc.Collection[Point], Optional[Sequence[Point]],  # noqa: UP045
     Sequence[Point] | None, list[Point] | dict[str, Point], Annotated[Sequence[Point], "x"]],
)
def test_abstract_sequences_decode_their_items(codec: JsonCodec, hint: object) -> None:
    back = roundtrip(codec, POINTS, hint)
    assert back == POINTS
    assert type(back) is list
    assert all(isinstance(p, Point) for p in back)


@pytest.mark.parametrize(
    "hint", [abc.Set[Color], typing.AbstractSet[Color], abc.MutableSet[Color]]
)
def test_abstract_sets_become_sets(codec: JsonCodec, hint: object) -> None:
    back = roundtrip(codec, {Color.RED, Color.BLUE}, hint)
    assert back == {Color.RED, Color.BLUE}
    assert type(back) is set


@pytest.mark.parametrize(
    "hint",
    [abc.Mapping[str, Point], abc.MutableMapping[str, Point], typing.Mapping[str, Point],
     typing.MutableMapping[str, Point], Optional[abc.Mapping[str, Point]]],  # noqa: UP045
)
def test_abstract_mappings_decode_their_values(codec: JsonCodec, hint: object) -> None:
    back = roundtrip(codec, {"a": POINTS[0]}, hint)
    assert back == {"a": POINTS[0]}
    assert type(back) is dict
    assert isinstance(back["a"], Point)


def test_bare_abstract_classes(codec: JsonCodec) -> None:
    assert roundtrip(codec, {1, 2}, abc.Set) == {1, 2}
    assert roundtrip(codec, [1, 2], abc.Sequence) == [1, 2]
    assert roundtrip(codec, {"a": 1}, abc.Mapping) == {"a": 1}


def test_nested_generics_in_unions(codec: JsonCodec) -> None:
    value = {"a": [POINTS[0], None], "b": []}
    hint = dict[str, Sequence[Point | None]] | None
    back = roundtrip(codec, value, hint)
    assert back == value
    assert isinstance(back["a"][0], Point)
    assert roundtrip(codec, None, hint) is None
    assert roundtrip(codec, [[1, 2]], list[tuple[int, ...] | None]) == [(1, 2)]


def test_other_concrete_containers(codec: JsonCodec) -> None:
    back = roundtrip(codec, collections.deque(POINTS), collections.deque[Point])
    assert back == collections.deque(POINTS)
    assert isinstance(back, collections.deque)
    ordered = collections.OrderedDict([("z", POINTS[0]), ("a", POINTS[1])])
    back = roundtrip(codec, ordered, collections.OrderedDict[str, Point])
    assert isinstance(back, collections.OrderedDict)
    assert list(back.items()) == list(ordered.items())
    counts = roundtrip(codec, collections.Counter("abca"), collections.Counter[str])
    assert counts == collections.Counter("abca")
    assert isinstance(counts, collections.Counter)


def test_typed_dict(codec: JsonCodec) -> None:
    draft: Draft = {"id": uuid.uuid4(), "lines": [{"sku": "a", "price": Money(Decimal("1.10"))}],
                    "color": Color.RED}
    back = roundtrip(codec, draft, Draft)
    assert back == draft
    assert type(back) is dict
    assert isinstance(back["id"], uuid.UUID)
    assert isinstance(back["lines"][0]["price"], Money)
    assert back["color"] is Color.RED
    assert roundtrip(codec, [draft], list[Draft]) == [draft]


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ({"id": str(uuid.UUID(int=1))}, r"\$: missing key\(s\) \['lines'\] of Draft"),
        ({"lines": []}, r"\$: missing key\(s\) \['id'\] of Draft"),
        ({"id": str(uuid.UUID(int=1)), "lines": [], "extra": 1},
         r"\$: unknown key\(s\) \['extra'\] for Draft"),
        ({"id": "nope", "lines": []}, r"\$\.id: not a valid UUID"),
        ({"id": str(uuid.UUID(int=1)), "lines": [{"sku": "a", "price": {"amount": "x"}}]},
         r"\$\.lines\[0\]\.price\.amount: not a valid Decimal"),
        ({"id": str(uuid.UUID(int=1)), "lines": [{"sku": "a"}]},
         r"\$\.lines\[0\]: missing key\(s\) \['price'\] of LineDict"),
        ([1], r"\$: expected an object for Draft"),
    ],
)
def test_typed_dict_errors_name_the_path(codec: JsonCodec, value: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        codec.decode(json.dumps(value), Draft)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.Required is new in 3.11")
def test_typed_dict_required_and_not_required(codec: JsonCodec) -> None:
    assert roundtrip(codec, {"a": 1}, Marked) == {"a": 1}
    back = roundtrip(codec, {"a": 1, "b": Point(1.0, 2.0)}, Marked)
    assert back == {"a": 1, "b": Point(1.0, 2.0)}
    assert roundtrip(codec, {"a": 1}, Sparse) == {"a": 1}
    with pytest.raises(ValueError, match=r"missing key\(s\) \['a'\] of Marked"):
        codec.decode('{"b": {"x": 1, "y": 2}}', Marked)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['a'\] of Sparse"):
        codec.decode("{}", Sparse)


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ({1.5: "a", -2.0: "b"}, dict[float, str]),
        ({True: "yes", False: "no"}, dict[bool, str]),
        ({Level.LOW: "low", Level.HIGH: "high"}, dict[Level, str]),
        ({Color.RED: 1}, dict[Color, int]),
        ({UserId(7): POINTS[0]}, dict[UserId, Point]),
        ({1: "one", "two": 2}, dict[Literal[1, "two"], Any]),
        ({None: 0, 3: 1}, dict[Optional[int], int]),  # noqa: UP045
        ({dt.date(2024, 1, 31): 5}, dict[dt.date, int]),
        ({uuid.UUID(int=9): [POINTS[0]]}, dict[uuid.UUID, list[Point]]),
        ({Decimal("0.10"): 1}, abc.Mapping[Decimal, int]),
        ({b"\xff": 1}, dict[bytes, int]),
        ({"a": 1}, dict[Annotated[str, "meta"], int]),
    ],
)
def test_dict_keys_are_rebuilt_from_the_hint(codec: JsonCodec, value: Any, hint: object) -> None:
    back = roundtrip(codec, value, hint)
    assert back == value
    assert [type(k) for k in back] == [type(k) for k in value]  # type: ignore[attr-defined]
    assert [str(k) for k in back] == [str(k) for k in value]  # type: ignore[attr-defined]


def test_dict_keys_json_cannot_write_are_encoded_as_text(codec: JsonCodec) -> None:
    value = Box({Color.RED: {uuid.UUID(int=1): dt.date(2024, 1, 1)}})
    assert json.loads(codec.encode(value)) == {
        "item": {"red": {"00000000-0000-0000-0000-000000000001": "2024-01-01"}},
        "items": [], "maybe": None,
    }
    assert roundtrip(codec, value, Box[dict[Color, dict[uuid.UUID, dt.date]]]) == value


def test_enums_in_containers(codec: JsonCodec) -> None:
    back = roundtrip(codec, [Color.RED, Level.HIGH], list[Color | Level])
    assert back == [Color.RED, Level.HIGH]
    assert roundtrip(codec, [Level.LOW], list[Level])[0] is Level.LOW  # type: ignore[index]
    assert roundtrip(codec, (Color.BLUE,), tuple[Color, ...]) == (Color.BLUE,)


def test_literal_matches_type_and_enum_members(codec: JsonCodec) -> None:
    assert roundtrip(codec, "a", Literal["a", "b"]) == "a"
    assert roundtrip(codec, Color.RED, Literal[Color.RED]) is Color.RED
    assert roundtrip(codec, Level.HIGH, Literal[Level.HIGH, None]) is Level.HIGH
    assert roundtrip(codec, 1, Literal[1, True]) is not True
    assert roundtrip(codec, True, Literal[1, True]) is True
    with pytest.raises(ValueError, match=r"\$: 1 is not one of \(True,\)"):
        codec.decode("1", Literal[True])
    with pytest.raises(ValueError, match=r"\$\[0\]: True is not one of \(1, 2\)"):
        codec.decode("[true]", list[Literal[1, 2]])


def test_annotated_and_new_type(codec: JsonCodec) -> None:
    assert roundtrip(codec, POINTS, list[Annotated[Point, "meta"]]) == POINTS
    assert roundtrip(codec, UserId(3), UserId) == 3
    assert roundtrip(codec, PointRef(POINTS[0]), PointRef) == POINTS[0]
    assert roundtrip(codec, [PointRef(POINTS[1])], list[PointRef]) == [POINTS[1]]
    with pytest.raises(ValueError, match=r"\$: expected int"):
        codec.decode('"3"', UserId)


def test_any_inside_containers_keeps_plain_json(codec: JsonCodec) -> None:
    value = {"a": [1, {"b": None}], "c": "2024-01-01"}
    assert roundtrip(codec, value, dict[str, Any]) == value
    assert roundtrip(codec, [value], list[Any]) == [value]
    assert roundtrip(codec, (1, value), tuple[int, Any]) == (1, value)
    assert roundtrip(codec, [value], Sequence[object]) == [value]


def test_generic_dataclass(codec: JsonCodec) -> None:
    box = Box(POINTS[0], POINTS, None)
    back = roundtrip(codec, box, Box[Point])
    assert back == box
    assert isinstance(back.item, Point)
    assert isinstance(back.items[1], Point)
    nested = Box([Money(Decimal("1"))], maybe=[Money(Decimal("2"))])
    assert roundtrip(codec, nested, Box[list[Money]]) == nested
    with pytest.raises(ValueError, match=r"\$\.item\.y: expected float"):
        codec.decode('{"item": {"x": 1, "y": "no"}}', Box[Point])


def test_named_tuple(codec: JsonCodec) -> None:
    pair = Pair(POINTS[0], Money(Decimal("1.5")))
    back = roundtrip(codec, pair, Pair)
    assert back == pair
    assert isinstance(back, Pair)
    assert isinstance(back.left, Point)
    assert roundtrip(codec, [pair], list[Pair]) == [pair]
    with pytest.raises(ValueError, match=r"\$: cannot build Pair"):
        codec.decode("[]", Pair)


def test_protocol_hint_leaves_the_value_alone(codec: JsonCodec) -> None:
    assert roundtrip(codec, {"w": 2}, Shape) == {"w": 2}


def test_float_hint_gives_a_float_even_for_an_integral_number(codec: JsonCodec) -> None:
    # jsonb writes the float 1e16 back as 10000000000000000, which json reads as an int:
    # without a hint it stays an int, but a float hint makes it a float again.
    assert codec.decode("10000000000000000") == 10**16
    for hint in (float, Optional[float], list[float]):  # noqa: UP045
        text = "[10000000000000000]" if hint == list[float] else "10000000000000000"
        back = codec.decode(text, hint)
        assert back in (1e16, [1e16])
        assert type(back if hint != list[float] else back[0]) is float  # type: ignore[index]
    assert roundtrip(codec, Point(1, 2), Point) == Point(1.0, 2.0)
    assert type(codec.decode('{"x": 1, "y": 2}', Point).x) is float  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"\$: .* too large for a float"):
        codec.decode("1" + "0" * 400, float)


@pytest.mark.parametrize("text", ["1.5", "1.0", "1e3", '"1"', "true"])
def test_int_hint_rejects_non_integers(codec: JsonCodec, text: str) -> None:
    got = repr(json.loads(text))
    with pytest.raises(ValueError, match=rf"\$: expected int, got {got}"):
        codec.decode(text, int)


def test_bytearray_round_trips(codec: JsonCodec) -> None:
    back = roundtrip(codec, bytearray(b"\x00\xff"), bytearray)
    assert back == bytearray(b"\x00\xff")
    assert type(back) is bytearray


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
