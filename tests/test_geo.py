from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from adserver.http.edge.forwarding import TrustedProxies
from adserver.http.edge.geo import GeoError, GeoLocator

NETWORKS = {
    "81.2.69.0/24": "GB",
    "175.16.199.0/24": "cn",  # lower-case in the file: the locator upper-cases it
    "2a02:d280::/29": "DE",
    "2001:db8::/32": "FR",  # documentation range: must never be looked up
    "10.0.0.0/8": "US",  # private range: must never be looked up
}


def write_db(path: Path, ip_version: int = 6) -> Path:
    writer = MMDBWriter(
        ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type="GeoLite2-Country"
    )
    for network, code in NETWORKS.items():
        if ip_version == 6 or ":" not in network:
            writer.insert_network(IPSet([network]), {"country": {"iso_code": code}})
    writer.insert_network(IPSet(["192.0.2.0/24" if ip_version == 4 else "2c0f::/16"]), {"x": 1})
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_db(tmp_path_factory.mktemp("geo") / "country.mmdb")


@pytest.fixture(scope="module")
def geo(db_path: Path) -> Iterator[GeoLocator]:
    locator = GeoLocator(db_path)
    yield locator
    locator.close()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.160", "GB"),
        ("175.16.199.1", "CN"),
        ("2a02:d280::1", "DE"),
        ("2A02:D287:FFFF::1", "DE"),
        ("::ffff:81.2.69.160", "GB"),  # IPv4-mapped, as dual-stack sockets report it
        (" 81.2.69.160 ", "GB"),
    ],
)
def test_known_address_gives_upper_case_country(geo: GeoLocator, ip: str, expected: str) -> None:
    assert geo.country(ip) == expected


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",  # not in the database
        "2c0f:1::1",  # in the database without a country
        "10.1.2.3",  # private, although the file maps it
        "2001:db8::1",  # documentation, although the file maps it
        "127.0.0.1",
        "::1",
        "192.168.1.1",
        "169.254.0.1",
        "fe80::1",
        "fd00::1",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "::",
        "",
        "not-an-ip",
        "81.2.69.256",
        "81.2.69",
        None,
    ],
)
def test_unknown_private_or_malformed_address_has_no_country(
    geo: GeoLocator, ip: str | None
) -> None:
    assert geo.country(ip) is None


def test_without_database_every_lookup_is_none() -> None:
    locator = GeoLocator(None)
    assert locator.country("81.2.69.160") is None
    locator.close()


def test_lookup_errors_give_none(tmp_path: Path) -> None:
    locator = GeoLocator(write_db(tmp_path / "v4.mmdb", ip_version=4))
    assert locator.country("81.2.69.160") == "GB"
    assert locator.country("2a02:d280::1") is None  # IPv6 in an IPv4-only file raises inside
    locator.close()


def test_closed_locator_answers_none(db_path: Path) -> None:
    locator = GeoLocator(db_path)
    assert locator.country("81.2.69.160") == "GB"
    locator.close()
    locator.close()
    assert locator.country("81.2.69.160") is None


@settings(database=None, max_examples=300)
@given(ip=st.one_of(st.text(), st.ip_addresses().map(str)))
def test_garbage_never_raises(geo: GeoLocator, ip: str) -> None:
    country = geo.country(ip)
    assert country is None or (len(country) == 2 and country.isupper())


def test_missing_database_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.mmdb"
    with pytest.raises(GeoError, match=f"^KAERU_GEOIP_DB: cannot open {path}: "):
        GeoLocator(path)


@pytest.mark.parametrize("content", [b"", b"not a maxmind database" * 100])
def test_corrupt_database_names_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.mmdb"
    path.write_bytes(content)
    with pytest.raises(GeoError, match=f"^KAERU_GEOIP_DB: cannot open {path}: "):
        GeoLocator(path)


def test_truncated_database_is_rejected(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "truncated.mmdb"
    path.write_bytes(db_path.read_bytes()[:100])
    with pytest.raises(GeoError, match=str(path)):
        GeoLocator(path)


def test_client_ip_feeds_country(geo: GeoLocator) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert geo.country(proxies.client_ip("10.0.0.1", "8.8.8.8, 175.16.199.7")) == "CN"
