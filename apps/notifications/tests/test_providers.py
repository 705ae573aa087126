"""The SMTP provider: replies sorted into transient and permanent errors."""

import pytest

from apps.notifications.providers import (
    InvalidAddress,
    ProviderRateLimited,
    ProviderUnavailable,
    classify_smtp_reply,
)


@pytest.mark.parametrize(("code", "error"), [
    (550, InvalidAddress), (553, InvalidAddress), (501, InvalidAddress),
    (421, ProviderRateLimited), (450, ProviderRateLimited), (451, ProviderRateLimited),
    (554, ProviderUnavailable),
])
def test_smtp_replies_are_classified(code, error):
    assert isinstance(classify_smtp_reply(code, b"reason"), error)
