"""Redaction: secrets under a key that names one, in a positional argument of a parameter
that names one, or shaped like one, never show; in data, in every textual notation of it
(JSON, reprs, reprs of reprs, `key=value`, query strings), and in the reprs a published
message carries. What is not a secret is kept as it was."""

import json
import re
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests import tasks  # noqa: F401  # registers tests.tasks.login, whose signature names
from workers.core.redaction import (
    REDACTED,
    call_secrets,
    hide_values,
    redact,
    redact_call,
    redact_everywhere,
    redact_text,
    sensitive_key,
    visible_text,
)

# Each planted secret starts and ends with a marker: neither may survive, whatever the
# secret holds in between (quotes, backslashes, newlines, brackets, any character).
HEAD, TAIL = "TBX", "XBT"
SENSITIVE_KEYS = [
    "password", "Password", "user_password", "newPassword", "passwd", "passphrase", "pwd", "pw",
    "secret", "client_secret", "api_key", "X-Api-Key", "apiKey", "access_token",
    "refresh_token", "csrftoken", "authorization", "Authorization", "auth", "auth_token",
    "credentials", "private_key", "privateKey", "session", "sessionid", "session_id",
    "cookie", "Set-Cookie", "bearer", "jwt", "otp", "pin", "card_number", "cvc", "cvv", "iban",
    "ssn", "dsn", "SENTRY_DSN", "signature", "Stripe-Signature", "access_key", "refresh_key",
    "signing_key", "webhook_secret", "totp_code"]
PLAIN_KEYS = ["user_id", "author", "authority", "authored_by", "key", "dedup_key",
              "idempotency_key", "max_tokens", "note", "email", "order", "items", "company",
              "spin", "opinion", "pinned", "span", "expand", "name", "sku", "queue",
              "reference", "amount", "keyboard", "passenger_count"]
# Lowercase: the markers of a planted secret are capitals.
PROSE = st.text(alphabet=string.ascii_lowercase + " .!?", max_size=30)
PLAIN_SCALARS = (st.none() | st.booleans() | st.integers(-10**11, 10**11)
                 | st.text(alphabet=string.ascii_lowercase + " ", max_size=20))
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
# A bare value (key=value, key: value) ends at whitespace, a quote, a bracket or "&".
TOKEN_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_./+%!~*$#@", max_size=20)
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def plain_keys() -> st.SearchStrategy[str]:
    return st.sampled_from(PLAIN_KEYS) | st.from_regex(r"[a-z]{1,8}(_[a-z]{1,8})?", fullmatch=True
                                                       ).filter(lambda key: not sensitive_key(key))


def plain_data() -> st.SearchStrategy[object]:
    return st.recursive(PLAIN_SCALARS, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(plain_keys(), children, max_size=4), max_leaves=12)


def secrets(core: st.SearchStrategy[str] = ANY_TEXT) -> st.SearchStrategy[str]:
    return core.map(lambda text: f"{HEAD}{text}{TAIL}")


def shows_secret(text: str) -> bool:
    return HEAD in text or TAIL in text


def plant(data: st.DataObject, value: object, key: str, secret: object) -> object:
    """`value` with `key: secret` added in one of its objects (or a new one around it)."""
    if isinstance(value, dict) and (not value or data.draw(st.booleans())):
        return {**value, key: secret}
    children = ([(index, child) for index, child in enumerate(value)]
                if isinstance(value, list) else
                list(value.items()) if isinstance(value, dict) else [])
    if not children:
        return {"wrapped": value, key: secret}
    at, child = data.draw(st.sampled_from(children))
    planted = plant(data, child, key, secret)
    if isinstance(value, list):
        return [*value[:at], planted, *value[at + 1:]]
    return {**value, at: planted}  # type: ignore[dict-item]


def notations(value: object) -> list[str]:
    """`value` as text, the ways it reaches a message, a traceback, a log or Flower."""
    as_json, as_repr = json.dumps(value), repr(value)
    return [as_json, as_repr, repr(as_repr), repr(repr(as_repr)), json.dumps(as_json),
            repr(as_json), repr({"kwargsrepr": as_repr}), repr(as_json.encode()),
            f"login failed for {as_repr}", f"<Context: {{'kwargs': {as_repr}}}>"]


@SETTINGS
@given(data=st.data(), payload=plain_data(), key=st.sampled_from(SENSITIVE_KEYS),
       secret=secrets() | st.dictionaries(plain_keys(), secrets(), min_size=1, max_size=2)
       | st.lists(secrets(), min_size=1, max_size=2))
def test_a_secret_under_a_sensitive_key_never_shows(data, payload, key, secret):
    planted = plant(data, payload, key, secret)

    assert not shows_secret(json.dumps(redact(planted)))
    assert not shows_secret(repr(redact_everywhere(planted)))
    for text in notations(planted):
        shown = redact_text(text)
        assert not shows_secret(shown), (text, shown)
        assert redact_text(shown) == shown  # a second pass finds nothing more


@SETTINGS
@given(payload=plain_data())
def test_what_is_not_a_secret_is_kept(payload):
    assert redact(payload) == payload
    for text in notations(payload):
        assert redact_text(text) == text


@SETTINGS
@given(prefix=PROSE, suffix=PROSE, key=st.sampled_from(SENSITIVE_KEYS),
       token=secrets(TOKEN_TEXT), anything=secrets(), data=st.data())
@example(prefix="", suffix="", key="Authorization", token="Bearer TBXabcXBT",
         anything="TBXXBT", data=None)
def test_a_secret_in_free_text_never_shows(prefix, suffix, key, token, anything, data):
    bare = [f"{key}={token}", f"{key}: {token}", f"{key} = {token},",
            f"https://example.com/cb?{key}={quote(anything, safe='')}&page=2"]
    quoted = [f"{key}={anything!r}", f'"{key}": {json.dumps(anything)}',
              f"'{key}': {anything!r}", f"{key}: {json.dumps(anything)}"]
    for notation in bare + quoted + [repr(notation) for notation in quoted]:
        text = f"{prefix} ({notation}) {suffix}"
        shown = redact_text(text)
        assert not shows_secret(shown), (text, shown)
        assert shown.startswith(f"{prefix} (")
        assert shown.endswith(f" {suffix}")
        assert redact_text(shown) == shown


def luhn_number(digits: str) -> str:
    """`digits` completed with the check digit that makes them a valid card number."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (1 if position % 2 else 2)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


ALNUM = st.text(alphabet=string.ascii_letters + string.digits, min_size=24, max_size=40)
SECRET_LOOKING = st.one_of(
    ALNUM.map(lambda text: f"sk_live_{text}"), ALNUM.map(lambda text: f"rk_test_{text}"),
    ALNUM.map(lambda text: f"whsec_{text}"), ALNUM.map(lambda text: f"Bearer {text}"),
    st.tuples(ALNUM, ALNUM).map(lambda parts: f"eyJ{parts[0]}.eyJ{parts[1]}.{parts[0]}"),
    ALNUM.map(lambda text: f"ghp_{text}{text}"),
    ALNUM.map(lambda text: f"postgres://app:{text}@db.internal:5432/app"),
    st.from_regex(r"[1-9][0-9]{14}", fullmatch=True).map(luhn_number),
    st.from_regex(r"4[0-9]{14}", fullmatch=True).map(luhn_number).map(
        lambda number: " ".join(number[index:index + 4] for index in range(0, 16, 4))),
)


@SETTINGS
@given(data=st.data(), payload=plain_data(), key=plain_keys(), value=SECRET_LOOKING,
       prefix=PROSE, suffix=PROSE)
def test_a_value_shaped_like_a_secret_never_shows_whatever_its_key(data, payload, key, value,
                                                                    prefix, suffix):
    credential = (value.split("://")[1].split(":")[1].split("@")[0] if "://" in value
                  else value.removeprefix("Bearer "))
    assume(credential not in f"{prefix} {suffix}")  # prose that spells it out is not a leak
    planted = plant(data, payload, key, value)

    outputs = [json.dumps(redact(planted)), f"{prefix} {value} {suffix}",
               *notations(planted)]
    for shown in (outputs[0], *map(redact_text, outputs[1:])):
        assert credential not in shown, shown


@SETTINGS
@given(username=PLAIN_SCALARS, password=ANY_TEXT, session=secrets(), extra=st.booleans())
def test_a_positional_argument_is_redacted_by_its_parameter_name(username, password, session,
                                                                 extra):
    secret = f"{HEAD}{password}{TAIL}"
    args = [username, secret, "hold-key"]
    kwargs = {"session": session, **({"note": "kept"} if extra else {})}

    shown_args, shown_kwargs = redact_call(task_name="tests.tasks.login", args=args,
                                           kwargs=kwargs)

    assert shown_args == [redact(username), REDACTED, "hold-key"]
    assert shown_kwargs == {"session": REDACTED, **({"note": "kept"} if extra else {})}
    assert args[1] == secret  # the call itself is untouched
    positional, _ = redact_call(task_name="tests.tasks.permanent", args=["k", secret],
                                kwargs={})
    assert positional == ["k", REDACTED]


def test_a_call_of_a_task_nobody_defines_shows_no_string_of_its_positional_arguments():
    """Without the task's signature any positional string may be its password: fail closed
    (a web process without the module, a task removed since it failed)."""
    args, kwargs = redact_call(task_name="elsewhere.tasks.unknown",
                               args=["maybe-a-password", 7, {"pin": 1234, "note": "n"}],
                               kwargs={"token": "t", "page": 2, "user": "ann"})
    assert args == [REDACTED, 7, {"pin": REDACTED, "note": REDACTED}]
    assert kwargs == {"token": REDACTED, "page": 2, "user": "ann"}  # named: by their keys


@pytest.mark.parametrize(("key", "sensitive"), [
    ("password", True), ("author", False), ("authority", False), ("auth", True),
    ("Authorization", True), ("X-CSRFToken", True), ("max_tokens", False), ("key", False),
    ("dedup_key", False), ("api_key", True), ("apiKey", True), ("private_key", True),
    ("session", True), ("sessionId", True), ("pin", True), ("spin", False), ("pinned", False),
    ("company", False), ("pan", True), ("SENTRY_DSN", True), ("credentials", True),
    ("client_secret", True), ("refresh_key", True), ("access_key", True), ("otp", True),
])
def test_which_keys_name_a_secret(key, sensitive):
    assert sensitive_key(key) is sensitive


@settings(max_examples=500, deadline=None, database=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_any_text_is_redacted_without_error(text):
    assert isinstance(redact_text(text), str)


def test_sensitive_keys_are_redacted_at_any_depth_and_the_rest_kept():
    payload = {"user_id": 42, "password": "hunter2",
               "billing": {"card_number": "4242", "Stripe-Signature": "t=1,v1=x",
                           "items": [{"api_key": "k", "sku": "a"}]},
               "access_token": "t", "client_secret": "s"}
    assert redact(payload) == {
        "user_id": 42, "password": REDACTED,
        "billing": {"card_number": REDACTED, "Stripe-Signature": REDACTED,
                    "items": [{"api_key": REDACTED, "sku": "a"}]},
        "access_token": REDACTED, "client_secret": REDACTED,
    }
    assert payload["password"] == "hunter2"  # the stored payload is untouched


def test_published_messages_show_secret_arguments_redacted_but_carry_the_values(test_redis):
    from celery.signals import before_task_publish

    from config.celery import app
    from tests.tasks import permanent

    seen = []

    def capture(headers=None, body=None, **_):
        seen.append((headers["argsrepr"], headers["kwargsrepr"], body[0], body[1]))

    before_task_publish.connect(capture, weak=False)
    try:
        permanent.apply_async(args=["k"], kwargs={"card_number": "4242"}, queue="bulk",
                              countdown=0, expires=1)
        permanent.apply_async(args=["k", "4242"], queue="bulk", expires=1)  # positional
        # by name, as a dead-letter replay is sent
        app.send_task("tests.tasks.permanent", args=["k"], kwargs={"card_number": "4242"},
                      queue="bulk", expires=1)
    finally:
        before_task_publish.disconnect(capture)
        test_redis.delete("bulk")  # the messages only had to be published
    assert len(seen) == 3
    for argsrepr, kwargsrepr, sent_args, sent_kwargs in seen:
        assert "4242" not in argsrepr + kwargsrepr
        assert "[redacted]" in argsrepr + kwargsrepr
        assert "'k'" in argsrepr
        assert "4242" in json.dumps([sent_args, sent_kwargs])  # the message keeps the values


def test_sensitive_values_inside_reprs_and_nested_strings_are_redacted():
    shown = redact_everywhere({"req": "<Context: {'kwargsrepr': \"{'card_number': '4242'}\", "
                                      "'kwargs': {'card_number': '4242424242424242'}}>",
                               "password": "hunter2", "frames": ["'token': 'abc'"]})
    assert "4242" not in str(shown)
    assert "hunter2" not in str(shown)
    assert "abc" not in str(shown)
    assert "Context" in shown["req"]


def test_a_credential_setting_is_hidden_by_value_in_any_text(settings):
    """An SMTP server that quotes the password it refused: no key, no shape, but the
    process knows the value (EMAIL_URL's password becomes EMAIL_HOST_PASSWORD)."""
    settings.EMAIL_HOST_PASSWORD = "SmtpPassw0rd123"
    text = "451 4.3.0 mailuser SmtpPassw0rd123 not accepted"

    assert redact_text(text) == f"451 4.3.0 mailuser {REDACTED} not accepted"
    settings.EMAIL_HOST_PASSWORD = "short"  # under MIN_LENGTH: ordinary words stay
    assert redact_text("a short reply") == "a short reply"


def test_a_short_text_shown_before_a_secret_setting_changed_is_redacted_anew(settings):
    """Short texts are cached (a worker's log lines repeat them): the cache must not keep
    what was shown before this process knew a secret."""
    text = "login as mailuser with S3cretPassw0rd!"
    settings.EMAIL_HOST_PASSWORD = "another-passw0rd"
    assert redact_text(text) == text

    settings.EMAIL_HOST_PASSWORD = "S3cretPassw0rd!"
    assert redact_text(text) == f"login as mailuser with {REDACTED}"


@given(text=st.text())
def test_shown_text_holds_no_character_that_hides_or_reorders_what_is_read(text):
    shown = visible_text(text)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f"
                         "\u2028-\u202e\u2060-\u2069\ufeff]", shown)
    assert shown.count("\n") == text.count("\n")


def test_a_reversed_word_is_shown_as_written_with_the_override_spelled_out():
    assert visible_text("user \u202eltr\x00 done") == "user \\u202eltr\\u0000 done"


def test_a_call_s_secret_arguments_are_found_by_name_wherever_they_nest():
    found = call_secrets(task_name="tests.tasks.login", args=["ann", "Plain-Pw-3141"],
                         kwargs={"options": {"api_key": "key-6c1b9a", "region": "eu-west"},
                                 "pin": 4321, "session": ["sess-0a1b2c"]})
    assert set(found) == {"Plain-Pw-3141", "key-6c1b9a", "sess-0a1b2c", "4321"}
    assert hide_values("refused Plain-Pw-3141 in eu-west", found) == \
        "refused [redacted] in eu-west"
    # A short one (a PIN) where it stands alone, not inside a longer number or word.
    assert hide_values("PIN 4321 refused; order 443210, ref x4321", found) == \
        "PIN [redacted] refused; order 443210, ref x4321"


@given(secret=st.text(st.characters(exclude_characters=set(REDACTED)), min_size=5,
                     max_size=30))  # a secret spelled within the mark is no leak
def test_a_secret_argument_is_found_as_a_repr_or_json_writes_it_too(secret):
    """Celery logs "Retry in 6s: TransientError('login failed with \\'q\\\\w\\'')": the
    password inside a repr inside a repr."""
    found = call_secrets(task_name="tests.tasks.login", args=["ann", secret], kwargs={})
    error = ValueError(f"login failed with {secret!r} ({json.dumps(secret)})")
    for shown in (str(error), repr(error), repr(repr(error))):
        assert secret not in hide_values(shown, found)
        assert repr(secret)[1:-1] not in hide_values(shown, found)
