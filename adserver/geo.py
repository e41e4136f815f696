"""Country lookup for ad requests: the client's address in, an ISO 3166 country code out.

Privacy: the raw IP address never leaves this module. It is never stored (Redis, files) and
never logged, not even in error messages; only the country code is handed on. The lookup
cache below holds addresses in process memory only, bounded, and is dropped on `close()`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import maxminddb

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CACHE_SIZE = 10_000
_MAX_IP_LENGTH = 64  # longer strings are not addresses; keeps the cache's memory bounded too
# "[2001:db8::1]:443", "[2001:db8::1]" or "192.0.2.1:443": some proxies add ports to XFF.
_HOST_PORT = re.compile(r"\[(?P<v6>[^\]]*)\](?::\d{1,5})?|(?P<v4>[\d.]+):\d{1,5}")


class GeoError(ValueError):
    """A GeoIP setting is unusable: the database cannot be opened or a proxy is not a network."""


def parse_proxies(raw: str) -> list[str]:
    """Split a comma and/or space separated list of trusted proxies (CIDRs or single IPs)."""
    return [entry for entry in re.split(r"[,\s]+", raw) if entry]


class GeoLocator:
    def __init__(self, database: Path | None, trusted_proxies: Sequence[str] = ()) -> None:
        self._trusted = _parse_networks(trusted_proxies)
        self._reader: maxminddb.Reader | None = None
        if database is not None:
            self._reader = _open_database(database)
        self._lookup = functools.lru_cache(maxsize=_CACHE_SIZE)(self._lookup_uncached)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the TCP peer, or, behind trusted proxies, the right-most
        untrusted X-Forwarded-For entry. Entries left of it are client-supplied and ignored.

        Pass every X-Forwarded-For header joined with commas
        (`",".join(request.headers.getall("X-Forwarded-For", ()))`).
        """
        address = _parse_ip(peer)
        if address is None:
            return None
        hops: Iterator[str] = reversed(forwarded_for.split(",") if forwarded_for else [])
        while self._is_trusted(address):
            hop = _parse_ip(next(hops, None))
            if hop is None:
                break  # header exhausted or malformed: keep the last good address
            address = hop
        return str(address)

    def country(self, ip: str | None) -> str | None:
        """ISO 3166 alpha-2 code (upper-case) for `ip`, or None. Never raises."""
        if ip is None or self._reader is None or len(ip) > _MAX_IP_LENGTH:
            return None
        return self._lookup(ip)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        self._lookup.cache_clear()
        if reader is not None:
            reader.close()

    def _is_trusted(self, address: _Address) -> bool:
        return any(address in network for network in self._trusted)

    def _lookup_uncached(self, ip: str) -> str | None:
        address = _parse_ip(ip)
        reader = self._reader
        if address is None or reader is None or not address.is_global or address.is_multicast:
            return None  # private, loopback, link-local, reserved, documentation, CGNAT ...
        try:
            record = reader.get(address)
        except Exception:
            # Any lookup failure means "unknown country". The exception text may contain the
            # address, so it is deliberately neither logged nor re-raised.
            return None
        return _iso_code(record)


def _parse_networks(entries: Sequence[str]) -> tuple[_Network, ...]:
    networks: list[_Network] = []
    errors: list[str] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            errors.append(f"{entry!r} is not an IP network")
    if errors:
        raise GeoError("KAERU_TRUSTED_PROXIES: " + "; ".join(errors))
    return tuple(networks)


def _open_database(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except OSError as exc:
        raise GeoError(f"KAERU_GEOIP_DB: cannot open {path}: {exc.strerror or exc}") from exc
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoError(f"KAERU_GEOIP_DB: cannot open {path}: {exc}") from exc


def _parse_ip(text: str | None) -> _Address | None:
    """An address from a peer or X-Forwarded-For entry; tolerates `[v6]:port` and `v4:port`."""
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


def _iso_code(record: object) -> str | None:
    if not isinstance(record, dict):
        return None
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
        return code.upper()
    return None
