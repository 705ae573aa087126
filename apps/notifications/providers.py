"""The email provider behind a small interface, with its errors sorted into the two kinds.

Django's email backend does the sending (console in dev, SMTP from EMAIL_URL in
production, locmem in tests); this module only decides which failures are worth a retry.
A backend that takes a batch of recipients in one call, with variables and a result per
recipient, as every large provider's API does (Amazon SES `SendBulkEmail`, SendGrid's
personalizations, Postmark's batch endpoint, Mailgun's recipient variables), gets the
campaigns' batches that way (apps/notifications/mail_backends.py); any other is sent a
message per recipient.
"""

import re
import smtplib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from string import Template

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage, get_connection

from workers.core.exceptions import PermanentError, TransientError


class ProviderUnavailable(TransientError):
    """Timeout, dropped connection, or a server-side error: retry later."""


class ProviderRateLimited(TransientError):
    """The provider asked us to slow down (SMTP 4xx, HTTP 429)."""


class RecipientDeferred(ProviderRateLimited):
    """The recipient's server asked to try this one address later (a full mailbox,
    greylisting): the rest of a campaign's batch goes on, and the address waits for the
    chunk's retry."""


class InvalidAddress(PermanentError):
    """The provider refused the recipient; no retry will change that."""


class InvalidMessage(PermanentError):
    """The message cannot be sent as written (a line break in its subject)."""


# SMTP replies that reject the address itself rather than the attempt.
ADDRESS_REJECTED = frozenset({501, 550, 551, 553})


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str
    message_id: str


@dataclass(frozen=True)
class BatchRecipient:
    """One recipient of a batch: `$name` in the subject and body reads its `variables`."""
    to: str
    message_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecipientOutcome:
    """What the provider did with one recipient: accepted (its message id) or rejected."""
    message_id: str = ""
    rejected: str = ""  # why, for a recipient no retry will help (a refused address)
    deferred: str = ""  # why, for a recipient to try again later (a full mailbox)


@dataclass(frozen=True)
class BatchOutcome:
    """Outcomes for the first recipients, in order; `error` stopped the batch after them
    (the provider is down or slowing us: those left were not sent)."""
    outcomes: list[RecipientOutcome]
    error: TransientError | None = None


# What a provider takes for an address at all: a local part of at most 64 characters with
# nothing that would make it a list, a display name, a control character or a reordered
# text, an @, and a dotted domain of letters, digits and hyphens. (Django's validate_email,
# with its lazily compiled patterns, costs about 25 µs each.)
_ADDRESS = re.compile(r"[^@\s,;:<>()\[\]\\\"\x00-\x1f\x7f\u200e\u200f\u202a-\u202e"
                      r"\u2066-\u2069]{1,64}@[^\W_]([\w-]*[^\W_])?(\.[^\W_]([\w-]*[^\W_])?)+")


def address_refusal(to: str) -> str:
    """Why `to` is not one address a message can go to, or "" when it is. SMTP would
    otherwise send "Eve <eve@evil.com>" to eve@evil.com and rewrite what it cannot parse,
    where the batch backends refuse both."""
    if len(to) > 254 or _ADDRESS.fullmatch(to) is None:
        return f"invalid address: {to!r}"
    return ""


def personalised(text: str, variables: Mapping[str, str]) -> str:
    """`text` with `$name` replaced by the recipient's variable (unknown names left)."""
    return Template(text).safe_substitute(variables) if variables else text


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
        if refusal := address_refusal(email.to):
            raise InvalidAddress(refusal)
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

    def send_batch(self, *, subject: str, body: str,
                   recipients: Sequence[BatchRecipient]) -> BatchOutcome:
        """The same message to many recipients: one call to a backend that takes batches,
        else one message each. A recipient refused for good is an outcome, not an error."""
        send_batch = getattr(self.connection, "send_batch", None)
        if send_batch is not None:
            try:
                with classified_errors():
                    answered = send_batch(subject=subject, body=body,
                                          from_email=settings.DEFAULT_FROM_EMAIL,
                                          recipients=recipients)
            except TransientError as error:  # one call: none of them went
                return BatchOutcome(outcomes=[], error=error)
            return BatchOutcome(outcomes=list(answered))
        outcomes: list[RecipientOutcome] = []
        for recipient in recipients:
            try:
                outcomes.append(RecipientOutcome(message_id=self.send(OutgoingEmail(
                    to=recipient.to, subject=personalised(subject, recipient.variables),
                    body=personalised(body, recipient.variables),
                    message_id=recipient.message_id))))
            except PermanentError as refused:
                outcomes.append(RecipientOutcome(rejected=str(refused)))
            except RecipientDeferred as deferred:
                outcomes.append(RecipientOutcome(deferred=str(deferred)))
            except TransientError as error:
                return BatchOutcome(outcomes=outcomes, error=error)
            except Exception as error:  # unforeseen: kept as an outage, so that the
                # messages already sent are recorded (a rollback would send them again)
                return BatchOutcome(outcomes=outcomes, error=ProviderUnavailable(
                    f"{type(error).__name__}: {error}"))
        return BatchOutcome(outcomes=outcomes)


@contextmanager
def classified_errors() -> Iterator[None]:
    """Re-raise the mail stack's exceptions as TransientError or PermanentError."""
    try:
        yield
    except BadHeaderError as exc:  # before ValueError, which it is
        raise InvalidMessage(str(exc)) from exc
    except ValueError as exc:  # Django cannot parse the address ("a@b.com,evil")
        raise InvalidAddress(str(exc)) from exc
    except smtplib.SMTPRecipientsRefused as exc:  # RCPT refused: the code says why
        code, reason = next(iter(exc.recipients.values()))
        error = classify_smtp_reply(code, reason)
        if isinstance(error, ProviderRateLimited) and code != 421:  # 421: the whole server
            error = RecipientDeferred(str(error))
        raise error from exc
    except smtplib.SMTPSenderRefused as exc:  # MAIL FROM: the setup, not the recipient
        raise ProviderUnavailable(
            f"sender refused: {classify_smtp_reply(exc.smtp_code, exc.smtp_error)}") from exc
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
