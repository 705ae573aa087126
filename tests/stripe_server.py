"""A local stand-in for Stripe's PaymentIntents endpoint, answering by the customer id's
prefix (ids are unique, so a test's customer is `cus_declined_<random>`):

- `cus_ok…`           200, status succeeded
- `cus_declined…`     402 card_error (card_declined)
- `cus_flaky…`        500 on the first request with a given Idempotency-Key, then 200
- `cus_ratelimited…`  429
- `cus_unknown…`      400 invalid_request_error (no such customer)
"""

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class StripeStandIn(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.seen_keys: Counter = Counter()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: StripeStandIn

    def do_POST(self):
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        customer = form["customer"][0]
        key = self.headers.get("Idempotency-Key", "")
        self.server.requests.append({"customer": customer, "amount": form["amount"][0],
                                     "idempotency_key": key,
                                     "metadata": {name[9:-1]: values[0]
                                                  for name, values in form.items()
                                                  if name.startswith("metadata[")},
                                     "stripe_version": self.headers.get("Stripe-Version"),
                                     "authorization": self.headers.get("Authorization")})
        self.server.seen_keys[key] += 1
        # Stripe answers a repeated Idempotency-Key with the same PaymentIntent.
        intent = {"id": f"pi_{hashlib.sha256(key.encode()).hexdigest()[:16]}",
                  "object": "payment_intent"}
        if customer.startswith("cus_declined"):
            self._reply(402, {"error": {"type": "card_error", "code": "card_declined",
                                        "message": "Your card was declined.",
                                        "payment_intent": intent}})
        elif customer.startswith("cus_flaky") and self.server.seen_keys[key] == 1:
            self._reply(500, {"error": {"type": "api_error", "message": "try again"}})
        elif customer.startswith("cus_ratelimited"):
            self._reply(429, {"error": {"type": "rate_limit_error", "message": "slow down"}})
        elif customer.startswith("cus_unknown"):
            self._reply(400, {"error": {"type": "invalid_request_error",
                                        "message": "No such customer"}})
        else:
            self._reply(200, intent | {"status": "succeeded"})

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass
