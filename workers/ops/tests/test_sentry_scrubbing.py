"""`scrub_event` over events built by hand, a secret planted in each place an event carries
data (the end-to-end runs through a real worker and web process are in test_sentry.py)."""

import json
import logging

from sentry_sdk.utils import AnnotatedValue

from tests.tasks import scrubbed_while_running
from workers.core.redaction import REDACTED
from workers.ops.sentry import event_scrubber, scrub_breadcrumb, scrub_event

PLACES = [
    "exception_value", "thread_frame", "given", "token_var", "bearer_value",
    "request_repr_query", "setting_value", "escaped_kwargsrepr", "args_var",
    "log_param", "log_dict_param", "message", "url_query", "query_string", "query_sig",
    "authorization", "cookie_header", "stripe_signature", "api_key_header", "cookie",
    "body", "env", "crumb_message", "crumb_data", "crumb_query", "celery_args",
    "celery_kwargs", "argv_equals", "argv_next", "log_extra_kwargsrepr", "context", "tag",
    "span_description", "span_query", "source_line",
]


def planted() -> dict[str, str]:
    """A distinct secret per place: one that leaks names its place."""
    return {place: f"planted-{place.replace('_', '-')}-{index:02d}q7" for index, place
            in enumerate(PLACES)}


def leaks(event: dict, secrets: dict[str, str]) -> str:
    """Each secret still in `event`, with what surrounds it (empty when none is)."""
    text = json.dumps(event)
    return "\n".join(f"{place}: ...{text[max(0, text.find(secret) - 120):text.find(secret) + 40]}"
                     for place, secret in secrets.items() if secret in text)


def event_with(s: dict[str, str]) -> dict:
    """An error event as the SDK hands it to `before_send`: serialised (a frame's locals
    are reprs), from a web request, with breadcrumbs, the Celery integration's `extra`
    and a transaction's spans."""
    frame_vars = {
        "given": repr(s["given"]),
        "token": repr(s["token_var"]),
        "value": repr(f"Bearer {s['bearer_value']}"),
        "request": f"<WSGIRequest: POST '/api/events/?api_key={s['request_repr_query']}"
                   f"&page=2'>",
        "configured": repr(f"prefix {s['setting_value']} suffix"),
        # Celery's request, repr'd inside a repr: the kwargsrepr's quotes escaped twice
        "req": repr({"task": "tests.tasks.fails", "kwargsrepr": repr(
            {"password": f"it's {s['escaped_kwargsrepr']}"})}),
        "args": [repr("s-key"), repr(s["args_var"])],
        "count": "3",
    }
    return {
        "level": "error",
        "exception": {"values": [{
            "type": "ValueError", "module": None,
            "value": f"login failed for {{'password': '{s['exception_value']}'}}",
            "stacktrace": {"frames": [{
                "function": "ingest_events", "lineno": 30, "module": "apps.analytics.views",
                "vars": frame_vars, "pre_context": ["def ingest_events(request):"],
                "context_line": f'    api_key = "{s["source_line"]}"'}]},
        }]},
        "threads": {"values": [{"stacktrace": {"frames": [
            {"function": "run", "vars": {"password": repr(s["thread_frame"])}}]}}]},
        "logentry": {
            "message": "the provider refused api key %s for order %s with %s",
            "params": [s["log_param"], "order-42", {"secret": s["log_dict_param"]}],
            "formatted": f"the provider refused api key {s['log_param']} for order order-42 "
                         f"with {{'secret': '{s['log_dict_param']}'}}",
        },
        "message": f"charge refused: {{'api_key': '{s['message']}'}}",
        "request": {
            "url": f"https://example.com/api/events/?api_key={s['url_query']}&page=2",
            "method": "POST",
            "query_string": f"api_key={s['query_string']}&page=2&sig={s['query_sig']}",
            "headers": {"Authorization": f"Bearer {s['authorization']}",
                        "Cookie": f"sessionid={s['cookie_header']}",
                        "Stripe-Signature": f"t=1,v1={s['stripe_signature']}",
                        "X-Api-Key": s["api_key_header"], "Content-Type": "application/json"},
            "cookies": {"sessionid": s["cookie"]},
            "data": {"events": [{"name": "signup", "properties": {"api_token": s["body"]}}]},
            "env": {"SERVER_NAME": "web", "HTTP_COOKIE": s["env"]},
        },
        "breadcrumbs": {"values": [
            {"type": "log", "category": "apps.billing",
             "message": f"GET https://api.stripe.com/v1/charges?api_key={s['crumb_message']}",
             "data": {"auth_token": s["crumb_data"], "task_name": "tests.tasks.fails"}},
            {"type": "http", "category": "httplib",
             "data": {"url": "https://api.example.com/v1/x", "method": "GET",
                      "http.query": f"code={s['crumb_query']}&page=2"}},
        ]},
        "extra": {
            "celery-job": {"task_name": "tests.tasks.fails", "args": [s["celery_args"]],
                           "kwargs": {"memo": s["celery_kwargs"]}},
            "sys.argv": ["celery", "-A", "config", "flower",
                         f"--basic-auth=admin:{s['argv_equals']}", "--password", s["argv_next"]],
            "data": {"name": "tests.tasks.fails",
                     "kwargsrepr": repr({"memo": s["log_extra_kwargsrepr"]})},
        },
        "contexts": {"trace": {"trace_id": "4bf92f3577b34da6", "span_id": "00f067aa0ba902b7",
                               "op": "queue.task.celery"},
                     "payment": {"client_secret": s["context"], "currency": "eur"}},
        "tags": {"celery_task_id": "0b1c6b0e", "api_token": s["tag"]},
        "transaction": "tests.tasks.fails",
        "spans": [{"span_id": "00f067aa0ba902b8", "op": "http.client",
                   "description": f"GET https://api.example.com/v1/x?api_key="
                                  f"{s['span_description']}",
                   "data": {"http.query": f"sig={s['span_query']}", "http.method": "GET"}}],
    }


def test_no_planted_secret_survives_and_the_event_still_says_what_failed(settings):
    secrets = planted()
    settings.STRIPE_API_KEY = secrets["setting_value"]  # known by its setting's name only

    event = scrub_event(event_with(secrets), {})

    leaked = leaks(event, secrets)
    assert not leaked, leaked
    assert event["exception"]["values"][0]["type"] == "ValueError"
    assert event["transaction"] == event["extra"]["celery-job"]["task_name"] == "tests.tasks.fails"
    assert event["logentry"]["message"] == "the provider refused api key %s for order %s with %s"
    assert event["logentry"]["params"][:2] == [REDACTED, "order-42"]
    assert "order order-42" in event["logentry"]["formatted"]
    assert event["request"]["query_string"] == f"api_key={REDACTED}&page=2&sig={REDACTED}"
    assert event["request"]["headers"]["Content-Type"] == "application/json"
    assert event["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]["count"] == "3"
    assert event["breadcrumbs"]["values"][1]["data"]["http.query"].endswith("&page=2")
    assert event["extra"]["sys.argv"][:4] == ["celery", "-A", "config", "flower"]
    assert event["contexts"]["trace"]["span_id"] == "00f067aa0ba902b7"
    assert event["contexts"]["payment"]["currency"] == "eur"
    assert event["tags"]["celery_task_id"] == "0b1c6b0e"


def test_a_running_tasks_arguments_are_hidden_wherever_they_are_copied(test_redis):
    """With send_default_pii off the SDK withholds a task's arguments from `extra`; a
    positional one, which has no key, must not come back through a local or a message."""
    positional, keyword = "planted-positional-4f1e", "planted-keyword-9a0c"
    event = {"exception": {"values": [{
        "type": "KeyError", "value": f"no customer {positional}",
        "stacktrace": {"frames": [{"function": "run", "vars": {
            "reference": repr(positional), "memo": repr(keyword),
            "req": repr({"argsrepr": repr((positional,)), "id": "0b1c6b0e"})}}]}}]}}

    scrubbed = scrubbed_while_running.apply(args=[json.dumps(event), positional],
                                            kwargs={"memo": keyword}).get()

    leaked = leaks(scrubbed, {"positional": positional, "keyword": keyword})
    assert not leaked, leaked
    assert "0b1c6b0e" in json.dumps(scrubbed)  # the rest of Celery's request is still there
    assert positional in json.dumps(scrub_event(event, {}))  # outside the task: unknown


def test_a_log_breadcrumb_loses_the_parameters_its_template_labels_secret():
    record = logging.LogRecord("apps.billing", logging.INFO, __file__, 1,
                               "refund %s refused, token=%s", ("re_123", "planted-crumb-0d"), None)
    crumb = {"type": "log", "message": record.getMessage()}

    assert scrub_breadcrumb(crumb, {"log_record": record})["message"] == \
        f"refund re_123 refused, token={REDACTED}"


def test_the_sdks_own_scrubber_knows_the_names_it_missed():
    """It runs before serialisation, on live values: exact names only."""
    event = {"request": {"headers": {"Stripe-Signature": "t=1,v1=abc", "Accept": "*/*"}},
             "exception": {"values": [{"stacktrace": {"frames": [
                 {"vars": {"given": "tok", "kwargsrepr": "{...}", "count": 3}}]}}]}}

    event_scrubber().scrub_event(event)

    assert isinstance(event["request"]["headers"]["Stripe-Signature"], AnnotatedValue)
    assert event["request"]["headers"]["Accept"] == "*/*"
    frame_vars = event["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]
    assert isinstance(frame_vars["given"], AnnotatedValue)
    assert isinstance(frame_vars["kwargsrepr"], AnnotatedValue)
    assert frame_vars["count"] == 3
