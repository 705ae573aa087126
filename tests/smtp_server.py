"""A real SMTP server for the tests (aiosmtpd), whose replies depend on the recipient.

- `invalid-…@…`   RCPT gets 550 (the address does not exist)
- `busy<N>-…@…`   RCPT gets 421 (try later) for the first N attempts, then is accepted
- anything else   accepted and recorded with its Message-ID and arrival time
"""

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes

from aiosmtpd.controller import Controller

BUSY = re.compile(r"^busy(\d+)-")


@dataclass
class Delivered:
    to: str
    subject: str
    message_id: str
    at: float


@dataclass
class RecordingHandler:
    port: int = 0
    delivered: list[Delivered] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.attempts[address] += 1
            tries = self.attempts[address]
        if address.startswith("invalid-"):
            return "550 5.1.1 no such mailbox"
        busy = BUSY.match(address)
        if busy and tries <= int(busy[1]):
            return "421 4.7.0 rate limited, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        with self.lock:
            for to in envelope.rcpt_tos:
                self.delivered.append(Delivered(to, message["Subject"], message["Message-ID"],
                                                time.time()))
        return "250 Message accepted"

    def to(self, address: str) -> list[Delivered]:
        with self.lock:
            return [item for item in self.delivered if item.to == address]


def start_smtp_server() -> tuple[Controller, RecordingHandler]:
    handler = RecordingHandler()
    with socket.socket() as probe:  # a free port (aiosmtpd cannot start on port 0)
        probe.bind(("127.0.0.1", 0))
        handler.port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    return controller, handler
