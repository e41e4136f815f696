"""Who the client is, behind proxies: the one place that decides the scheme, host and address
a request is answered for. Pure; `adserver.http.edge.middleware` applies it to requests.

The rules (the README's "Running in production" repeats them for operators):
- Forwarded headers are believed only when the TCP peer is in KAERU_TRUSTED_PROXIES. From
  anyone else, every `X-Forwarded-*` and `Forwarded` header changes nothing.
- The client's address is the right-most untrusted hop: walking the chain from the peer
  leftwards, each trusted proxy vouches for the hop before it; the first address that is not a
  trusted proxy is the client, and everything left of it (what the client itself sent) is
  ignored. An entry that is not an address stops the walk at the last good one.
- The scheme and host are the values written by the outermost trusted proxy (the one that
  talked to the client): in X-Forwarded-Proto/-Host the entry counted from the right by the
  number of trusted hops walked, or the left-most when proxies passed one value on. Anything
  but `http`/`https`, or a host that is not a host name or address with an optional port, is
  not believed.
- A trusted proxy's `X-Forwarded-*` headers win over its RFC 7239 `Forwarded` (nginx and most
  proxies set the former and pass a client's `Forwarded` through untouched); `Forwarded` is
  read only when none of them is present.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# "[2001:db8::1]:443", "[2001:db8::1]" or "192.0.2.1:443": some proxies add ports to XFF.
_HOST_PORT = re.compile(r"\[(?P<v6>[^\]]*)\](?::\d{1,5})?|(?P<v4>[\d.]+):\d{1,5}")
_HOST_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}", re.I)
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[^\[\]:]+)(?::(?P<port>\d{1,5}))?", re.I)
_SCHEMES = frozenset(("http", "https"))
MAX_HOPS = 32  # a longer chain is walked this far: what lies beyond is a client's invention


class ProxyConfigError(ValueError):
    """KAERU_TRUSTED_PROXIES holds something that is not an IP address or network."""


def parse_proxies(raw: str) -> list[str]:
    """Split a comma and/or space separated list of trusted proxies (CIDRs or single IPs)."""
    return [entry for entry in re.split(r"[,\s]+", raw) if entry]


@dataclass(frozen=True, slots=True)
class ForwardedHeaders:
    """What proxies said about the request; several headers of one name joined by commas."""

    x_for: str = ""
    x_proto: str = ""
    x_host: str = ""
    forwarded: Sequence[Mapping[str, str]] = ()  # RFC 7239 elements, left to right

    @property
    def has_x_forwarded(self) -> bool:
        return bool(self.x_for or self.x_proto or self.x_host)


@dataclass(frozen=True, slots=True)
class ClientView:
    """The client as the trusted proxies saw it; None fields: as Kaeru's connection says."""

    remote: str
    scheme: str | None = None
    host: str | None = None

    def overrides(self) -> dict[str, str]:
        """Keyword arguments for `web.Request.clone`."""
        found = {"remote": self.remote, "scheme": self.scheme, "host": self.host}
        return {key: value for key, value in found.items() if value is not None}


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = _parse_networks(entries)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, peer: str | None) -> bool:
        address = parse_ip(peer)
        return address is not None and self._trusted(address)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address from the TCP peer and every X-Forwarded-For joined by commas."""
        address = parse_ip(peer)
        if address is None:
            return None
        return str(self._walk(address, _right_to_left(forwarded_for or ""))[0])

    def resolve(self, peer: str | None, headers: ForwardedHeaders) -> ClientView | None:
        """The client behind the proxies, or None when the peer is not a trusted proxy (then
        nothing about the request changes)."""
        address = parse_ip(peer)
        if address is None or not self._trusted(address):
            return None
        if headers.has_x_forwarded or not headers.forwarded:
            client, depth = self._walk(address, _right_to_left(headers.x_for))
            scheme = _pick(_split(headers.x_proto), depth)
            host = _pick(_split(headers.x_host), depth)
        else:
            elements = headers.forwarded[-MAX_HOPS:]
            client, depth = self._walk(address, (e.get("for") for e in reversed(elements)))
            element = elements[-max(depth, 1)]
            scheme, host = element.get("proto"), element.get("host")
        return ClientView(str(client), _scheme(scheme), _host(host))

    def _trusted(self, address: _Address) -> bool:
        return any(address in network for network in self._networks)

    def _walk(self, address: _Address, hops: Iterator[str | None]) -> tuple[_Address, int]:
        """The right-most untrusted hop, and how many hops were walked to reach it."""
        depth = 0
        while self._trusted(address) and depth < MAX_HOPS:
            hop = parse_ip(_unquote(next(hops, None)))
            if hop is None:
                break  # header exhausted or malformed: keep the last good address
            address, depth = hop, depth + 1
        return address, depth


def parse_ip(text: str | None) -> _Address | None:
    """An address from a peer or forwarded entry; tolerates `[v6]:port` and `v4:port`."""
    if text is None:
        return None
    text = text.strip()
    match = _HOST_PORT.fullmatch(text)
    if match is not None:
        text = match["v6"] if match["v6"] is not None else match["v4"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
    return address


def _ip_or_none(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_networks(entries: Iterable[str]) -> tuple[_Network, ...]:
    networks: list[_Network] = []
    errors: list[str] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            errors.append(f"{entry!r} is not an IP network")
    if errors:
        raise ProxyConfigError("KAERU_TRUSTED_PROXIES: " + "; ".join(errors))
    return tuple(networks)


def _split(header: str) -> list[str]:
    return [value.strip() for value in header.split(",")] if header else []


def _right_to_left(header: str) -> Iterator[str | None]:
    return iter(list(reversed(_split(header)))[:MAX_HOPS])


def _pick(values: Sequence[str], depth: int) -> str | None:
    """The value the outermost trusted proxy wrote: `depth` from the right, else the left-most."""
    if not values:
        return None
    return values[-max(depth, 1)] if depth <= len(values) else values[0]


def _unquote(value: str | None) -> str | None:
    if value is not None and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _scheme(value: str | None) -> str | None:
    value = _unquote(value)
    return value.lower() if value is not None and value.lower() in _SCHEMES else None


def _host(value: str | None) -> str | None:
    """`value` if it is a host name or IP literal with an optional port, lower-cased."""
    value = _unquote(value)
    match = _HOST.fullmatch(value) if value else None
    if match is None:
        return None
    name, port = match["name"], match["port"]
    if port is not None and not 0 < int(port) <= 65535:
        return None
    if name.startswith("["):
        if not isinstance(_ip_or_none(name[1:-1]), ipaddress.IPv6Address):
            return None
    elif not _HOST_NAME.fullmatch(name) or len(name) > 253:
        return None
    return match.group(0).lower()
