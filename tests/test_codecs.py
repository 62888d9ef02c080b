"""The codecs: JsonCodec encoding, encode errors and round trips, PickleCodec, Saga end to end."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest

from saga import Codec, JsonCodec, PickleCodec, Saga
from tests.codec_types import Color, Draft, Money, Point, Transfer, roundtrip

# -- annotations (module level: hints are resolved with typing.get_type_hints) ------------


class Opaque:
    """Not JSON-able: a plain class, for PickleCodec."""

    def __init__(self, payload: object) -> None:
        self.payload = payload
        self.seen = {1, 2, 3}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


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


def test_encoding_is_readable_json(codec: JsonCodec) -> None:
    assert json.loads(codec.encode(Transfer(10, "bob"))) == {"amount": 10, "to": "bob"}
    assert codec.encode("é") == '"é"'  # not \u00e9: readable with psql


def test_jsonb_round_trip_through_the_database(make_saga: Callable[..., Saga]) -> None:
    s = make_saga("typed")

    @s.step
    def first(input: Sequence[Point], state: Draft) -> None:
        pass

    draft: Draft = {"id": uuid.UUID(int=5), "lines": [{"sku": "a", "price": Money(Decimal("2"))}]}
    s.start("t-1", first, [Point(1e16, 0.5)], state=draft)
    record = s.get("t-1")
    assert record.input == [Point(1e16, 0.5)]
    assert type(record.input[0].x) is float
    assert record.state == draft
    assert isinstance(record.state["lines"][0]["price"], Money)


# -- JsonCodec: encode errors -----------------------------------------------------------------


def deeply_nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


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
        ("\udc80", "lone surrogate.*not valid UTF-8"),  # from os.fsdecode of a bad file name
        ({"k": ["ok", "a\ud800b"]}, "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
        ({Point(1.0, 2.0): 1}, "dict key must encode as a string or number, not Point"),
        ({(1, 2): 1}, "dict key must encode"),
        ({Color.RED: object()}, "object is not JSON serializable"),
        (deeply_nested(10_000), "recursion"),
    ],
)
def test_encode_errors_are_type_errors(codec: JsonCodec, value: object, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        codec.encode(value)


def test_astral_characters_are_not_lone_surrogates(codec: JsonCodec) -> None:
    assert roundtrip(codec, "emoji \U0001f600 ok", str) == "emoji \U0001f600 ok"
    assert roundtrip(codec, "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")) == (
        "\U0001f600")


@pytest.mark.parametrize("codec", [JsonCodec(), PickleCodec()])
def test_decode_of_too_deeply_nested_json_is_a_value_error(codec: Codec) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        codec.decode("[" * 100_000 + "]" * 100_000)


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
    assert codec.decode(text, Transfer) == value  # a hint changes nothing
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
