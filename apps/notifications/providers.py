"""The email provider behind a small interface, with its errors sorted into the two kinds.

Django's email backend does the sending (console in dev, SMTP from EMAIL_URL in
production, locmem in tests); this module only decides which failures are worth a retry.
"""

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from workers.core.exceptions import PermanentError, TransientError


class ProviderUnavailable(TransientError):
    """Timeout, dropped connection, or a server-side error: retry later."""


class ProviderRateLimited(TransientError):
    """The provider asked us to slow down (SMTP 4xx, HTTP 429)."""


class InvalidAddress(PermanentError):
    """The provider refused the recipient; no retry will change that."""


# SMTP replies that reject the address itself rather than the attempt.
ADDRESS_REJECTED = frozenset({501, 550, 551, 553})


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str
    message_id: str


class EmailProvider:
    """Sends through Django's configured email backend on one reused connection."""

    name = "email"

    def __enter__(self) -> "EmailProvider":
        self.connection = get_connection()
        with classified_errors():
            self.connection.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()

    def send(self, email: OutgoingEmail) -> str:
        """Send one message; return the provider's message id."""
        message = EmailMessage(email.subject, email.body, settings.DEFAULT_FROM_EMAIL,
                               [email.to], headers={"Message-ID": email.message_id},
                               connection=self.connection)
        try:
            with classified_errors():
                message.send()
        except ProviderUnavailable:
            self.connection.close()  # reconnect on the next send
            raise
        return email.message_id


@contextmanager
def classified_errors() -> Iterator[None]:
    """Re-raise the mail stack's exceptions as TransientError or PermanentError."""
    try:
        yield
    except smtplib.SMTPRecipientsRefused as exc:  # RCPT refused: the code says why
        code, reason = next(iter(exc.recipients.values()))
        raise classify_smtp_reply(code, reason) from exc
    except smtplib.SMTPResponseException as exc:
        raise classify_smtp_reply(exc.smtp_code, exc.smtp_error) from exc
    except (smtplib.SMTPException, OSError) as exc:  # timeouts, resets, disconnects
        raise ProviderUnavailable(str(exc) or type(exc).__name__) from exc


def classify_smtp_reply(code: int, text: bytes | str) -> Exception:
    """The exception an SMTP error reply stands for."""
    reason = text.decode(errors="replace") if isinstance(text, bytes) else text
    if code in ADDRESS_REJECTED:
        return InvalidAddress(f"{code} {reason}")
    if 400 <= code < 500:
        return ProviderRateLimited(f"{code} {reason}")
    return ProviderUnavailable(f"{code} {reason}")


def message_id_for(notification_id: int) -> str:
    """The same Message-ID on every attempt, so a receiving server can drop a duplicate."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost"
    return f"<notification-{notification_id}@{domain}>"
