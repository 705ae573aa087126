"""Redis clients from the project's URLs, a single server's or a Sentinel group's.

A `sentinel://` URL lists the Sentinels, not the server: `sentinel://:password@s1:26379/0;
sentinel://s2:26379;sentinel://s3:26379`, kombu's form, the password and database those of
the Redis behind them (the first URL's), the group's name in REDIS_SENTINEL_MASTER. The
client asks the Sentinels for the current primary on every new connection, so after a
failover the next command reaches the promoted replica instead of a dead address.
"""

from typing import Any
from urllib.parse import unquote, urlparse

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"
SENTINEL_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def sentinel_hosts(url: str) -> list[tuple[str, int]]:
    """The (host, port) of each Sentinel a `sentinel://` URL names."""
    hosts = []
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ValueError(f"not a sentinel:// URL: {part.strip()!r}")
        hosts.append((parsed.hostname, parsed.port or SENTINEL_PORT))
    return hosts


def redis_from_url(url: str, *, master_name: str = "", sentinel_password: str = "",
                   **options: Any) -> redis.Redis:
    """A client of the Redis at `url`; with a `sentinel://` URL, of the group's primary.

    `options` are redis-py's connection options (timeouts, retry); they apply to the
    primary's connections and to the questions asked of the Sentinels.
    """
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    if not master_name:
        raise ValueError("a sentinel:// URL needs the group's name (REDIS_SENTINEL_MASTER)")
    first = urlparse(url.split(";", 1)[0])
    database = first.path.lstrip("/")
    sentinels = Sentinel(sentinel_hosts(url),
                         sentinel_kwargs={**options, "password": sentinel_password or None},
                         **options)
    primary: redis.Redis = sentinels.master_for(
        master_name, db=int(database) if database else 0,
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None)
    return primary
