"""`POST /api/events/` against hostile input: a body or item it cannot take is a 400 (a
401 without the bearer token) and stores nothing of the batch; nothing answers 5xx."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.analytics.models import Event

TOKEN = "test-ingest-token"  # ANALYTICS_INGEST_TOKEN in tests/settings.py
PLACEHOLDER = "__hostile__"


def post(body: bytes, authorization: str | None = f"Bearer {TOKEN}"):
    """The reply as a client sees it: an exception in the view is a 500, not raised here."""
    headers = {} if authorization is None else {"Authorization": authorization}
    return Client(raise_request_exception=False).post(
        "/api/events/", body, content_type="application/json", headers=headers)


def batch_with(path: str, raw: str | bytes) -> bytes:
    """A valid one-event batch with the JSON text `raw` at `path` (dotted, list indexes as
    numbers; `.` alone is the whole body). A str is encoded as UTF-8, surrogates and all."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if path == ".":
        return raw
    body: dict = {"events": [{"name": "signup", "occurred_at": "2026-11-24T10:15:00Z",
                              "properties": {"plan": "pro"}}]}
    *parents, last = path.split(".")
    target: dict | list = body
    for name in parents:
        target = target[int(name)] if isinstance(target, list) else target[name]
    if isinstance(target, list):
        target[int(last)] = PLACEHOLDER
    else:
        target[last] = PLACEHOLDER
    return json.dumps(body).encode().replace(json.dumps(PLACEHOLDER).encode(), raw)


DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE_BATCHES = {
    "a body nested 100k deep": (".", DEEP),
    "events nested 100k deep": ("events", DEEP),
    "properties nested 100k deep": ("events.0.properties.plan", DEEP),
    "properties nested 40 deep": ("events.0.properties.plan", '{"a":' * 40 + "1" + "}" * 40),
    "an integer past the int-to-str limit": ("events.0.properties.plan", "9" * 5000),
    "NaN": ("events.0.properties.plan", "NaN"),
    "Infinity": ("events.0.properties.plan", "Infinity"),
    "-Infinity": ("events.0.properties.plan", "-Infinity"),
    "1e999": ("events.0.properties.plan", "1e999"),
    "NUL in a value": ("events.0.properties.plan", '"pro\\u0000"'),
    "NUL in a key": ("events.0.properties", '{"pl\\u0000an": "pro"}'),
    "a lone surrogate in a value": ("events.0.properties.plan", '"\\udc00"'),
    "a lone surrogate in a key": ("events.0.properties", '{"\\ud800": 1}'),
    "a lone surrogate as raw text": ("events.0.properties.plan", '"\ud800"'),
    "a Latin-1 body": ("events.0.properties.plan", '"café"'.encode("latin-1")),
    "a name with a trailing newline": ("events.0.name", '"signup\\n"'),
    "occurred_at past year 9999 in UTC": ("events.0.occurred_at",
                                          '"9999-12-31T23:00:00-05:00"'),
    "occurred_at before year 1 in UTC": ("events.0.occurred_at", '"0001-01-01T00:00:00+05:00"'),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(HOSTILE_BATCHES))
def test_hostile_batches_are_refused_and_nothing_is_stored(kind):
    response = post(batch_with(*HOSTILE_BATCHES[kind]))

    assert response.status_code == 400, (kind, response.content[:200])
    assert response.json()["errors"]
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_occurred_at_must_lie_between_2000_and_a_day_from_now_in_utc():
    now = datetime.now(UTC)
    refused = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00",
               "1999-12-31T23:59:59Z", "2000-01-01T00:30:00+01:00",
               (now + timedelta(days=2)).isoformat()]
    accepted = ["2000-01-01T00:00:00Z", "2026-11-24T05:15:00-05:00",
                (now + timedelta(hours=1)).isoformat()]
    events = [{"name": "e", "occurred_at": at} for at in refused + accepted]

    response = post(json.dumps({"events": events}).encode())

    assert response.status_code == 400
    assert [error["index"] for error in response.json()["errors"]] == list(range(len(refused)))
    assert all("occurred_at must lie between 2000-01-01 and a day from now"
               in error["reason"] for error in response.json()["errors"])
    assert not Event.objects.exists()

    response = post(json.dumps({"events": events[len(refused):]}).encode())
    assert response.status_code == 202
    # What is stored reads back (psycopg cannot read a time past year 9999 in UTC).
    stored = sorted(Event.objects.values_list("occurred_at", flat=True))
    assert stored[0] == datetime(2000, 1, 1, tzinfo=UTC)
    assert stored[1] == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)


@pytest.mark.django_db
@pytest.mark.parametrize(("authorization", "status"), [
    (TOKEN, 401),  # the raw token, without its scheme
    (f"Token {TOKEN}", 401),
    (f"Basic {TOKEN}", 401),
    (f"Bearer{TOKEN}", 401),
    (f"Bearer  {TOKEN}", 401),
    (f"Bearer {TOKEN}x", 401),
    (f"Bearer {TOKEN}\u00e9", 401),
    ("Bearer \udcff", 401),
    (None, 401),
    (f"Bearer {TOKEN}", 202),
    (f"bearer {TOKEN}", 202),  # the scheme is case-insensitive
])
def test_the_token_is_taken_only_with_the_bearer_scheme(authorization, status):
    response = post(json.dumps({"events": [{"name": "e", "occurred_at":
                                            "2026-11-24T10:15:00Z"}]}).encode(), authorization)
    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"] == "Bearer"
        assert not Event.objects.exists()


# Hostile JSON text: nesting, numbers Python or PostgreSQL cannot hold, NUL, surrogates,
# and any small JSON value of the wrong type.
hostile_json = st.one_of(
    st.integers(14, 100_000).map(lambda n: "[" * n + "]" * n),
    st.integers(14, 50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(-10 ** 30, 10 ** 30).map(str),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5", "true", "null",
                     "[]", "{}", '""', '"signup\\n"', '"9999-12-31T23:00:00-05:00"',
                     '"0001-01-01T00:00:00+05:00"', '"2026-11-24T10:15:00"']),
    st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "\udfff"]),
            max_size=200).map(json.dumps),
    st.datetimes(timezones=st.timezones()).map(lambda at: json.dumps(at.isoformat())),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                 lambda children: st.lists(children, max_size=3)
                 | st.dictionaries(st.text(max_size=5), children, max_size=3),
                 max_leaves=8).map(json.dumps),
)
paths = st.sampled_from([".", "events", "events.0", "events.0.name", "events.0.occurred_at",
                         "events.0.properties", "events.0.properties.plan"])


@pytest.mark.django_db
@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=paths, raw=hostile_json)
def test_hostile_batches_never_answer_5xx_and_a_refusal_stores_nothing(path, raw):
    before = Event.objects.count()
    response = post(batch_with(path, raw))
    assert response.status_code < 500, (path, raw[:200], response.content[:300])
    if response.status_code >= 400:
        assert Event.objects.count() == before
    else:
        assert Event.objects.count() == before + 1
        stored = Event.objects.latest("pk")  # and it reads back
        assert stored.occurred_at.year >= 2000


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), authorization=st.none() | st.text(
    st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=60).map(
    lambda text: text if text.startswith("Bearer") else f"Bearer {text}"))
def test_random_bytes_and_headers_are_a_4xx_and_store_nothing(body, authorization):
    response = post(body, f"Bearer {TOKEN}" if authorization is None else authorization)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert not Event.objects.exists()
