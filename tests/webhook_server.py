"""A local stand-in for a Slack-compatible incoming webhook: records every JSON post."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookSink:
    def __init__(self, *, failures: int = 0) -> None:
        """The first `failures` posts are answered 500 (and not recorded)."""
        self.posts: list[dict] = []
        self.failures = failures
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    failing = sink.failures > 0
                    if failing:
                        sink.failures -= 1
                    else:
                        sink.posts.append(json.loads(body))
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"error" if failing else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        with self.lock:
            return [post["text"] for post in self.posts]

    def shutdown(self) -> None:
        self.server.shutdown()
