"""Country lookup for ad requests: the client's address in, an ISO 3166 country code out.
Which address is the client's (behind trusted proxies) is decided once, in adserver.http.edge.

Privacy: the raw IP address never leaves this module. It is never stored (Redis, files) and
never logged, not even in error messages; only the country code is handed on. The lookup
cache below holds addresses in process memory only, bounded, and is dropped on `close()`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import maxminddb

from adserver.http.edge.forwarding import parse_ip

_CACHE_SIZE = 10_000
_MAX_IP_LENGTH = 64  # longer strings are not addresses; keeps the cache's memory bounded too


class GeoError(ValueError):
    """KAERU_GEOIP_DB is unusable: the database cannot be opened."""


class GeoLocator:
    def __init__(self, database: Path | None) -> None:
        self._reader: maxminddb.Reader | None = None
        if database is not None:
            self._reader = _open_database(database)
        self._lookup = functools.lru_cache(maxsize=_CACHE_SIZE)(self._lookup_uncached)

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

    def _lookup_uncached(self, ip: str) -> str | None:
        address = parse_ip(ip)
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


def _open_database(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except OSError as exc:
        raise GeoError(f"KAERU_GEOIP_DB: cannot open {path}: {exc.strerror or exc}") from exc
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoError(f"KAERU_GEOIP_DB: cannot open {path}: {exc}") from exc


def _iso_code(record: object) -> str | None:
    if not isinstance(record, dict):
        return None
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
        return code.upper()
    return None
