"""Bounded JSON input: every hostile body is one JSONInputError, never another exception."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.json_input import MAX_INTEGER, JSONInputError, parse_json

LIMITS = {"max_depth": 8, "max_bytes": 1_000_000}


def parse(body: bytes | str, **limits: int):
    return parse_json(body.encode() if isinstance(body, str) else body, **(LIMITS | limits))


@pytest.mark.parametrize(("body", "reason"), [
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 8 levels"),
    ('{"a":' * 9 + "1" + "}" * 9, "nests deeper than 8 levels"),
    ("[" * 100_000, "nests deeper than 8 levels"),  # never closed, still never parsed
    ("9" * 5000, "integers must lie within"),
    ('{"n": -' + "9" * 5000 + "}", "integers must lie within"),
    (str(MAX_INTEGER + 1), "integers must lie within"),
    (str(-MAX_INTEGER - 1), "integers must lie within"),
    ("NaN", "NaN is not a JSON number"),
    ('{"x": Infinity}', "Infinity is not a JSON number"),
    ("[-Infinity]", "-Infinity is not a JSON number"),
    ("1e999", "out of range"),
    ("[-1e999]", "out of range"),
    ('"a\\u0000b"', "NUL"),
    ('{"\\u0000": 1}', "NUL"),
    ('["\\ud800"]', "lone surrogate"),
    ('{"k": {"\\udfff": 1}}', "lone surrogate"),
    (b'"\xff"', "not UTF-8"),
    (b'"\xed\xa0\x80"', "not UTF-8"),  # a surrogate encoded as UTF-8 bytes
    (b"{not json", "not JSON"),
    (b"", "not JSON"),
    (b'"' + b"x" * 999_999 + b'"', "exceeds 1000000 bytes"),
])
def test_hostile_bodies_are_refused_with_the_reason(body, reason):
    with pytest.raises(JSONInputError, match=reason.replace("(", r"\(")):
        parse(body)


def test_what_is_within_bounds_parses_as_json_does():
    body = ('{"a": [1, -2.5, true, null, "[[[[[[[[[[", "\\"{{{{{{{{", "\\ud83d\\ude00 ok"], '
            f'"big": {MAX_INTEGER}, "small": {-MAX_INTEGER}' + '}')
    assert parse(body) == json.loads(body)
    assert parse("[" * 8 + "]" * 8) == json.loads("[" * 8 + "]" * 8)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_INTEGER, MAX_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"],
                                            exclude_characters="\x00")), children,
                      max_size=4),
    max_leaves=20)


def _depth(value) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(child) for child in children), default=0)
    return 0


@settings(max_examples=150, deadline=None, database=None)
@given(value=json_values)
def test_any_json_within_the_bounds_round_trips(value):
    body = json.dumps(value).encode()
    if _depth(value) <= LIMITS["max_depth"]:
        assert parse(body) == value
    else:
        with pytest.raises(JSONInputError):
            parse(body)


hostile_text = st.one_of(
    st.binary(max_size=200),
    st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"0" + b"}" * n),
    st.integers(4000, 6000).map(lambda n: b"9" * n),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"[1E+999]"]),
    st.text().map(lambda s: json.dumps(s).encode()),
    st.text().map(lambda s: json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b":", b",", b"1", b"\x00",
                              b"\\u0000", b"\\ud800", b"e999", b"NaN"]), max_size=60)
    .map(b"".join),
)


@settings(max_examples=300, deadline=None, database=None)
@given(body=hostile_text)
def test_any_input_parses_or_is_refused_with_json_input_error(body):
    try:
        value = parse(body)
    except JSONInputError:
        return
    # What passes is JSON PostgreSQL stores and reads back as it was.
    assert json.loads(json.dumps(value, allow_nan=False)) == value
    assert "\x00" not in json.dumps(value, ensure_ascii=False)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # no lone surrogate
