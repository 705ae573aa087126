"""Broker URLs as an operator may see them."""

from kombu.utils.url import maybe_sanitize_url


def masked_url(url: str) -> str:
    """`url` with the password of each URL of a failover list masked.

    kombu's `maybe_sanitize_url` reads the string as one URL, so in
    `sentinel://:pw@a;sentinel://:pw@b` it masked the first password and printed the
    others (`manage.py check_services` did, for a list written with the password on
    every URL, as docs/scaling.md writes a RabbitMQ cluster's).
    """
    return ";".join(maybe_sanitize_url(part) for part in url.split(";"))
