"""How many impressions one client gets counted: a loop of one browser (or of cookie-less
requests) is still served its ads, but past `cap` an hour they are no longer counted.

A client is a known browser (a `uid` with a stored profile) or, otherwise, the pair publisher
and client address + User-Agent, with a second cap of ten times as many per publisher and
address alone (so changing User-Agents does not escape it). An IPv6 address counts as its /64
network: a host picks addresses in it at will (privacy extensions, or a server's whole /64), so
a single address would be a new client per request. Those are looked up by a keyed
hash (BLAKE2b, with a random key made when the process starts and never written anywhere), so
no IP address is kept, even in memory, and the counters cannot be linked to anyone after a
restart. The counters live in this process only (each server process counts its own: with N
processes the bound is N times the cap), in fixed UTC hours, in a bounded table (the least
recently seen clients go first when it is full).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections import OrderedDict

MAX_CLIENTS = 100_000  # about 120 bytes each: ~12 MB at most per process
ADDRESS_FACTOR = 10  # one address (an office, a carrier's NAT) counts this many clients' worth
IPV6_CLIENT_PREFIX = 64  # the network one IPv6 host may take its addresses from


def client_network(address: str) -> str:
    """What one client's address is for the caps: an IPv4 address (also written as an
    IPv4-mapped IPv6 one) as is, an IPv6 address as its /64; anything else unchanged."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class ImpressionCaps:
    def __init__(self, cap_per_hour: int, max_clients: int = MAX_CLIENTS) -> None:
        self.cap = cap_per_hour
        self.max_clients = max_clients
        self._key = secrets.token_bytes(32)
        self._counters: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def _name(self, *parts: str) -> bytes:
        text = "\0".join(parts).encode("utf-8", "surrogateescape")
        return hashlib.blake2b(text, key=self._key, digest_size=16).digest()

    def _take(self, name: bytes, cap: int, hour: int) -> bool:
        """Count one on `name` if it is under `cap` this hour."""
        seen_hour, count = self._counters.pop(name, (hour, 0))
        if seen_hour != hour:
            count = 0
        allowed = count < cap
        self._counters[name] = (hour, count + allowed)
        while len(self._counters) > self.max_clients:
            self._counters.popitem(last=False)
        return allowed

    def count_browser(
        self, uid: str, now: float, publisher: str = "", address: str | None = None
    ) -> bool:
        """Whether an impression for this known browser is counted: its uid under the cap,
        and (uids cost nothing to make up) the known browsers of its publisher and address
        together under ten times the cap."""
        if self.cap <= 0:
            return True
        hour = int(now // 3600)
        if not self._take(self._name("uid", uid), self.cap, hour):
            return False
        if address is None:
            return True
        name = self._name("browsers", publisher, client_network(address))
        return self._take(name, self.cap * ADDRESS_FACTOR, hour)

    def count_purchase(self, advertiser: str, address: str, cap: int, now: float) -> bool:
        """Whether a purchase the browser reports at this shop from this address may be
        attributed: at most `cap` an hour (0: no cap), whatever uids it names."""
        if cap <= 0:
            return True
        name = self._name("purchase", advertiser, client_network(address))
        return self._take(name, cap, int(now // 3600))

    def count_address(self, kind: str, address: str, cap: int, now: float) -> bool:
        """Whether one more of `kind` (something a client may do only so often, e.g. an
        opt-out leaving marks) is allowed from this address: at most `cap` an hour (0: no cap)."""
        if cap <= 0:
            return True
        return self._take(
            self._name("address-" + kind, client_network(address)), cap, int(now // 3600)
        )

    def count_distinct(self, kind: str, address: str, value: str, cap: int, now: float) -> bool:
        """Whether `value` may be used from this address this hour: one used already this hour
        may again; a new one while fewer than `cap` distinct were (0: no cap)."""
        if cap <= 0:
            return True
        hour, network = int(now // 3600), client_network(address)
        pair = self._name("value-" + kind, network, value)
        if self._counters.get(pair, (None, 0))[0] == hour:
            self._counters.move_to_end(pair)
            return True
        if not self._take(self._name("values-" + kind, network), cap, hour):
            return False
        return self._take(pair, 1, hour)

    def count_anonymous(self, publisher: str, address: str, user_agent: str, now: float) -> bool:
        """Whether an impression for a cookie-less client on this publisher is counted."""
        if self.cap <= 0:
            return True
        hour = int(now // 3600)
        address = client_network(address)
        address_name = self._name("address", publisher, address)
        if not self._take(self._name("client", publisher, address, user_agent), self.cap, hour):
            return False
        return self._take(address_name, self.cap * ADDRESS_FACTOR, hour)
