from workers.redaction import REDACTED, redact


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
