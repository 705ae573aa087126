"""The webhook against hostile input: signed or not, a body the endpoint cannot take is a
400 and leaves no event and no job behind; nothing a client sends makes it answer 5xx."""

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing.models import PaymentEvent
from apps.billing.samples import stripe_event
from tests.factories import WEBHOOK_SECRET, WEBHOOK_URL
from workers.core.models import OutboxMessage

PLACEHOLDER = "__hostile__"


def signature(body: bytes, *, secret: str = WEBHOOK_SECRET) -> str:
    """Stripe's scheme over the raw bytes: an HMAC of `<t>.<body>`."""
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def post(body: bytes, header: str | None = None):
    """The reply as a client sees it: an exception in the view is a 500, not raised here."""
    client = Client(raise_request_exception=False)
    return client.post(WEBHOOK_URL, body, content_type="application/json",
                       headers={"Stripe-Signature": signature(body) if header is None else header})


def event_with(path: str, raw: str | bytes) -> bytes:
    """A valid invoice.paid event with the JSON text `raw` at `path` (dotted; `.` alone is
    the whole body). A str is encoded as UTF-8, surrogates and all; bytes go in as they are."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if path == ".":
        return raw
    event = stripe_event("invoice.paid", {"id": "in_hostile", "object": "invoice"})
    *parents, last = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    target[last] = PLACEHOLDER
    return json.dumps(event).encode().replace(json.dumps(PLACEHOLDER).encode(), raw)


def stored() -> tuple[int, int]:
    return PaymentEvent.objects.count(), OutboxMessage.objects.count()


DEEP = "[" * 100_000 + "]" * 100_000

SIGNED_HOSTILE_BODIES = {
    "created negative": ("created", "-1"),
    "created past year 9999": ("created", "253402300800"),
    "created a huge integer": ("created", "1" + "0" * 30),
    "created past the int-to-str limit": ("created", "9" * 5000),
    "created a float": ("created", "1764000000.5"),
    "created a string": ("created", '"1764000000"'),
    "created NaN": ("created", "NaN"),
    "created Infinity": ("created", "Infinity"),
    "created 1e999": ("created", "1e999"),
    "id longer than its column": ("id", json.dumps("evt_" + "x" * 300)),
    "type longer than its column": ("type", json.dumps("invoice." + "x" * 100)),
    "NUL in the type": ("type", '"invoice.paid\\u0000"'),
    "NUL in the object": ("data.object.description", '"a\\u0000b"'),
    "lone surrogate in the object": ("data.object.description", '"\\ud800"'),
    "lone surrogate as raw text": ("data.object.description", '"\ud800"'),
    "deep nesting": ("data.object.lines", DEEP),
    "data.object a list": ("data.object", "[]"),
    "data.object.id an object": ("data.object.id", '{"id": "in_1"}'),
    "data.object.id past the int-to-str limit": ("data.object.id", "9" * 5000),
    "data.object.id longer than its column": ("data.object.id", json.dumps("in_" + "x" * 300)),
    "NaN in the object": ("data.object.amount_due", "NaN"),
    "-Infinity in the object": ("data.object.amount_due", "-Infinity"),
    "a huge integer in the object": ("data.object.amount_due", "9" * 5000),
    "a Latin-1 body": ("data.object.description", '"café"'.encode("latin-1")),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(SIGNED_HOSTILE_BODIES))
def test_signed_hostile_bodies_are_refused_and_nothing_is_stored(kind):
    path, raw = SIGNED_HOSTILE_BODIES[kind]
    before = stored()

    response = post(event_with(path, raw))

    assert response.status_code == 400, (kind, response.content[:200])
    assert response.json()["error"]
    assert stored() == before


@pytest.mark.django_db
@pytest.mark.parametrize("header", [
    "t=1764000000,v1=é", "t=1764000000,v1=" + "\u2603" * 64, "\x80\xff", "t=١٢٣,v1=00",
])
def test_a_signature_header_that_is_not_ascii_is_refused(header):
    body = event_with("id", '"evt_header"')
    response = post(body, header)
    assert response.status_code == 400
    assert "signature rejected" in response.json()["error"]
    assert stored() == (0, 0)


@pytest.mark.django_db
def test_an_unsigned_body_that_is_not_utf8_is_refused():
    response = post(b'{"id": "\xff\xfe"}', "t=1764000000,v1=00")
    assert response.status_code == 400
    assert stored() == (0, 0)


@pytest.mark.django_db
def test_created_must_lie_between_2000_and_a_day_from_now():
    for created, status in ((946684800 - 1, 400), (946684800, 200),
                            (int(time.time()) + 3600, 200), (int(time.time()) + 2 * 86400, 400)):
        response = post(event_with("created", str(created)))
        assert response.status_code == status, created


# Hostile JSON text: nesting, numbers Python or PostgreSQL cannot hold, NUL, surrogates,
# long strings, and any small JSON value of the wrong type.
hostile_json = st.one_of(
    st.integers(20, 100_000).map(lambda n: "[" * n + "]" * n),
    st.integers(20, 50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(-10 ** 30, 10 ** 30).map(str),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5", "true", "null",
                     "[]", "{}", '""']),
    st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "\udfff"]),
            max_size=400).map(json.dumps),
    st.text(min_size=1, max_size=30).map(lambda s: json.dumps(s * 40)),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                 lambda children: st.lists(children, max_size=3)
                 | st.dictionaries(st.text(max_size=5), children, max_size=3),
                 max_leaves=8).map(json.dumps),
)
paths = st.sampled_from(["created", "id", "type", "api_version", "data", "data.object",
                         "data.object.id", "data.object.amount_due", "."])


@pytest.mark.django_db
@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=paths, raw=hostile_json)
def test_signed_hostile_bodies_never_answer_5xx_and_a_refusal_stores_nothing(path, raw):
    before = stored()
    response = post(event_with(path, raw))
    assert response.status_code < 500, (path, raw[:200], response.content[:300])
    if response.status_code >= 400:
        assert stored() == before


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), header=st.none() | st.text(
    st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=120))
def test_random_bytes_and_headers_are_a_4xx_and_store_nothing(body, header):
    """Unsigned: a forged header never matches; a signed random body is no event."""
    response = post(body, header)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert stored() == (0, 0)
