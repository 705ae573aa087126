from workers.api.redaction import REDACTED, redact, redact_everywhere


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


def test_published_messages_show_sensitive_kwargs_redacted_but_carry_the_values(test_redis):
    from celery.signals import before_task_publish

    from config.celery import app
    from tests.tasks import permanent

    seen = []

    def capture(headers=None, body=None, **_):
        seen.append((headers["kwargsrepr"], body[1]))

    before_task_publish.connect(capture, weak=False)
    try:
        permanent.apply_async(args=["k"], kwargs={"card_number": "4242"}, queue="bulk",
                              countdown=0, expires=1)
        # by name, as a dead-letter replay is sent
        app.send_task("tests.tasks.permanent", args=["k"], kwargs={"card_number": "4242"},
                      queue="bulk", expires=1)
    finally:
        before_task_publish.disconnect(capture)
        test_redis.delete("bulk")  # the messages only had to be published
    assert len(seen) == 2
    for shown, sent_kwargs in seen:
        assert "4242" not in shown
        assert "[redacted]" in shown
        assert sent_kwargs == {"card_number": "4242"}


def test_sensitive_values_inside_reprs_and_nested_strings_are_redacted():
    shown = redact_everywhere({"req": "<Context: {'kwargsrepr': \"{'card_number': '4242'}\", "
                                      "'kwargs': {'card_number': '4242424242424242'}}>",
                               "password": "hunter2", "frames": ["'token': 'abc'"]})
    assert "4242" not in str(shown)
    assert "hunter2" not in str(shown)
    assert "abc" not in str(shown)
    assert "Context" in shown["req"]
