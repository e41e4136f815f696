"""`REDIS_URL` forms Kaeru accepts, checked without importing redis (settings use it at start-up).

- `redis://`, `rediss://`, `unix://`: one Redis (redis-py's own URL syntax).
- `redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://` for TLS): a
  Redis Cluster, reached through any of the listed nodes (the client discovers the others).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SINGLE_SCHEMES + CLUSTER_SCHEMES
DEFAULT_PORT = 6379


class RedisUrlError(ValueError):
    """What is wrong with a Redis URL (without the URL itself: it may hold a password)."""


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


_PASSWORD_OPTION = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact(url: str) -> str:
    """`url` fit for a log line: its password (in `user:password@` or a `password=` query
    option, as redis-py takes it for unix sockets) replaced by `***`. A user info without a
    colon (`token@host`) is taken for a password too, since some write it so."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # Up to the last '@': a password with a stray '/', '?' or '#' in it is hidden all the same.
    userinfo, at, rest = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***@" if colon else "***@"
    return scheme + sep + userinfo + _PASSWORD_OPTION.sub(r"\1***", rest)


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def check_url(url: str) -> None:
    """Raise RedisUrlError unless `url` is one of the accepted forms."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise RedisUrlError(f"scheme must be one of {', '.join(f'{s}://' for s in SCHEMES)}")
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)


def parse_cluster_url(url: str) -> ClusterUrl:
    """`redis+cluster://[user:password@]h1:p1[,h2:p2...][/0]` -> the nodes and credentials."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise RedisUrlError(f"a cluster URL starts with {' or '.join(CLUSTER_SCHEMES)}://")
    # The node list is not a valid URL authority (commas), so split it by hand.
    authority, _, tail = rest.partition("/")
    if "?" in authority or "#" in authority or "?" in tail or "#" in tail:
        raise RedisUrlError("query options are not supported in a cluster URL")
    if tail not in ("", "0"):
        raise RedisUrlError("a cluster has only database 0: no path after the nodes")
    userinfo, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(entry.strip()) for entry in hosts.split(","))
    return ClusterUrl(nodes, username, password, tls=scheme.lower() == "rediss+cluster")


def _node(entry: str) -> tuple[str, int]:
    if not entry:
        raise RedisUrlError("list nodes as host:port,host:port")
    try:
        parts = urlsplit(f"//{entry}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise RedisUrlError(f"{entry!r} is not host:port") from None
    if not host or parts.username or parts.path:
        raise RedisUrlError(f"{entry!r} is not host:port")
    return host, DEFAULT_PORT if port is None else port


def has_password(url: str) -> bool:
    """Whether `url` carries a password (`user:password@`, or a `password=` option)."""
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if at and ":" in userinfo:
        return True
    return "password" in parse_qs(urlsplit(url).query)


def with_password(url: str, password: str) -> str:
    """`url` with `password` added (REDIS_PASSWORD): in the user info of a redis:// or cluster
    URL, as the `password=` option of a unix:// one. One place for the password only: a URL
    that has one already is a RedisUrlError."""
    if has_password(url):
        raise RedisUrlError("REDIS_URL has a password of its own: set it in one place only")
    scheme, _, rest = url.partition("://")
    quoted = quote(password, safe="")
    if scheme.lower() == "unix":
        return f"{url}{'&' if '?' in rest else '?'}password={quoted}"
    user, at, hosts = rest.rpartition("@")
    return f"{scheme}://{user if at else ''}:{quoted}@{hosts}"
