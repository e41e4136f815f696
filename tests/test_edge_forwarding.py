"""Behind a TLS-terminating proxy: what Kaeru believes about the client (scheme, host, address),
from whom, and what a browser then gets (cookie attributes, absolute links)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from adserver.app import create_app
from adserver.config.settings import Settings, SettingsError
from adserver.http.edge.forwarding import (
    ClientView,
    ForwardedHeaders,
    ProxyConfigError,
    TrustedProxies,
    parse_proxies,
)
from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, SHOP, product_row, put_catalog, refresh_catalog

# Trusted: the load balancer's subnet, one edge proxy and an IPv6 range (non-strict host bits).
PROXIES = TrustedProxies(["10.0.0.0/8", "203.0.113.7", "2001:db8:ffff::1/48"])


def xff(value: str | None) -> ForwardedHeaders:
    return ForwardedHeaders(x_for=value or "")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("81.2.69.160", None, "81.2.69.160"),
        ("81.2.69.160", "175.16.199.1", "81.2.69.160"),
        ("2a02:d280::1", "175.16.199.1, 10.0.0.1", "2a02:d280::1"),
        ("::ffff:81.2.69.160", "175.16.199.1", "81.2.69.160"),
        # A trusted peer: the right-most untrusted entry; entries left of it are spoofable.
        ("10.0.0.1", "81.2.69.160", "81.2.69.160"),
        ("10.0.0.1", "175.16.199.1, 81.2.69.160", "81.2.69.160"),
        ("10.0.0.1", "spoofed, 175.16.199.1, 81.2.69.160", "81.2.69.160"),
        # Chains of trusted proxies are skipped.
        ("10.0.0.1", "175.16.199.1, 81.2.69.160, 203.0.113.7, 10.9.9.9", "81.2.69.160"),
        ("10.0.0.1", "81.2.69.160,203.0.113.7", "81.2.69.160"),
        ("10.0.0.1", "81.2.69.160, 10.1.1.1, 10.2.2.2", "81.2.69.160"),
        # Only trusted addresses: the left-most one (the header is exhausted).
        ("10.0.0.1", "10.1.1.1, 203.0.113.7", "10.1.1.1"),
        # Trusted peer without a header: the peer.
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        # Malformed entries stop the walk at the last good address.
        ("10.0.0.1", "81.2.69.160, unknown", "10.0.0.1"),
        ("10.0.0.1", "81.2.69.160, 10.1.1.1, garbage", "10.0.0.1"),
        ("10.0.0.1", "81.2.69.160, garbage, 10.1.1.1", "10.1.1.1"),
        ("10.0.0.1", "81.2.69.160,", "10.0.0.1"),
        ("10.0.0.1", "81.2.69.160, , 10.1.1.1", "10.1.1.1"),
        ("10.0.0.1", "81.2.69.300", "10.0.0.1"),
        # Ports, as some proxies append them.
        ("10.0.0.1", "81.2.69.160:51234", "81.2.69.160"),
        ("10.0.0.1", "[2a02:d280::1]:443", "2a02:d280::1"),
        ("10.0.0.1", "[2a02:d280::1]", "2a02:d280::1"),
        ("10.0.0.1", "[2a02:d280::1]x", "10.0.0.1"),
        ("10.0.0.1", "81.2.69.160:port", "10.0.0.1"),
        # IPv6 peers and hops; the address comes back in canonical form.
        ("2001:db8:ffff::5", "2A02:D280:0::1", "2a02:d280::1"),
        ("2001:db8:ffff::5", "81.2.69.160, 2001:db8:ffff::6", "81.2.69.160"),
        ("2001:db8:fffe::5", "81.2.69.160", "2001:db8:fffe::5"),  # outside the /48
        ("::ffff:10.0.0.1", "81.2.69.160", "81.2.69.160"),  # IPv4-mapped trusted peer
        ("10.0.0.1", "::ffff:81.2.69.160", "81.2.69.160"),
        # Nothing parses.
        (None, "81.2.69.160", None),
        ("", "81.2.69.160", None),
        ("unix-socket", None, None),
    ],
)
def test_client_address(peer: str | None, forwarded_for: str | None, expected: str | None) -> None:
    assert PROXIES.client_ip(peer, forwarded_for) == expected
    view = PROXIES.resolve(peer, xff(forwarded_for))
    assert (view.remote if view else _canonical(peer)) == expected


def _canonical(peer: str | None) -> str | None:
    return PROXIES.client_ip(peer, None)


def test_without_trusted_proxies_nothing_forwarded_is_believed() -> None:
    nobody = TrustedProxies([])
    assert not nobody
    assert nobody.client_ip("10.0.0.1", "81.2.69.160") == "10.0.0.1"
    headers = ForwardedHeaders("81.2.69.160", "https", "ads.example", ({"proto": "https"},))
    assert nobody.resolve("10.0.0.1", headers) is None


UNTRUSTED_CLAIMS = ForwardedHeaders(
    x_for="81.2.69.160",
    x_proto="https",
    x_host="evil.example",
    forwarded=({"for": "81.2.69.160", "proto": "https", "host": "evil.example"},),
)


@pytest.mark.parametrize("peer", ["81.2.69.160", "2001:db8:fffe::5", "192.0.2.10", None])
def test_an_untrusted_peer_changes_nothing(peer: str | None) -> None:
    assert PROXIES.resolve(peer, UNTRUSTED_CLAIMS) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # One TLS-terminating proxy (nginx: X-Forwarded-Proto $scheme, Host $host).
        (ForwardedHeaders("81.2.69.160", "https"), ClientView("81.2.69.160", "https")),
        (ForwardedHeaders("81.2.69.160", "HTTPS"), ClientView("81.2.69.160", "https")),
        (ForwardedHeaders("81.2.69.160", "http"), ClientView("81.2.69.160", "http")),
        (
            ForwardedHeaders("81.2.69.160", "https", "ads.example:8443"),
            ClientView("81.2.69.160", "https", "ads.example:8443"),
        ),
        # The proxy's scheme only, no X-Forwarded-For: the peer is the client.
        (ForwardedHeaders("", "https"), ClientView("10.0.0.1", "https")),
        # Anything but http/https, or a host that is not a host, is not believed.
        (ForwardedHeaders("81.2.69.160", "wss"), ClientView("81.2.69.160")),
        (ForwardedHeaders("81.2.69.160", "https", "a b"), ClientView("81.2.69.160", "https")),
        (ForwardedHeaders("81.2.69.160", "", "evil.example/x"), ClientView("81.2.69.160")),
        (ForwardedHeaders("81.2.69.160", "", "ads.example:99999"), ClientView("81.2.69.160")),
        (
            ForwardedHeaders("81.2.69.160", "", "[2001:db8::1]:443"),
            ClientView("81.2.69.160", None, "[2001:db8::1]:443"),
        ),
        # Two trusted proxies (CDN, then nginx): the value the outermost one wrote counts.
        (
            ForwardedHeaders("81.2.69.160, 203.0.113.7", "https, http", "ads.example, inner"),
            ClientView("81.2.69.160", "https", "ads.example"),
        ),
        # ... and proxies that pass one value on (fewer values than proxies): the left-most.
        (
            ForwardedHeaders("81.2.69.160, 203.0.113.7", "https"),
            ClientView("81.2.69.160", "https"),
        ),
        # A client's own claim left of the proxy's value is not what counts.
        (ForwardedHeaders("81.2.69.160", "http, https"), ClientView("81.2.69.160", "https")),
    ],
)
def test_scheme_and_host_from_a_trusted_proxy(
    headers: ForwardedHeaders, expected: ClientView
) -> None:
    assert PROXIES.resolve("10.0.0.1", headers) == expected


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        (
            ({"for": "81.2.69.160", "proto": "https", "host": "ads.example"},),
            ClientView("81.2.69.160", "https", "ads.example"),
        ),
        (
            ({"for": '"[2a02:d280::1]:4711"', "proto": "https"},),
            ClientView("2a02:d280::1", "https"),
        ),
        (({"for": "[2a02:d280::1]:4711", "proto": "https"},), ClientView("2a02:d280::1", "https")),
        # A spoofed element left of the proxy's own: the proxy's counts.
        (
            (
                {"for": "175.16.199.1", "proto": "http", "host": "evil.example"},
                {"for": "81.2.69.160", "proto": "https", "host": "ads.example"},
            ),
            ClientView("81.2.69.160", "https", "ads.example"),
        ),
        # Through two trusted proxies.
        (
            (
                {"for": "81.2.69.160", "proto": "https", "host": "ads.example"},
                {"for": "203.0.113.7", "proto": "http", "host": "inner"},
            ),
            ClientView("81.2.69.160", "https", "ads.example"),
        ),
        # Obfuscated or unknown client: the proxy is the last address known.
        (({"for": "_hidden", "proto": "https"},), ClientView("10.0.0.1", "https")),
        (({"for": "unknown"},), ClientView("10.0.0.1")),
    ],
)
def test_rfc7239_forwarded_from_a_trusted_proxy(
    elements: tuple[dict[str, str], ...], expected: ClientView
) -> None:
    assert PROXIES.resolve("10.0.0.1", ForwardedHeaders(forwarded=elements)) == expected


def test_x_forwarded_headers_win_over_forwarded() -> None:
    """nginx and most proxies set X-Forwarded-*, and pass a client's `Forwarded` through
    untouched: when the proxy sent X-Forwarded-*, a `Forwarded` header is the client's."""
    headers = ForwardedHeaders(
        x_for="81.2.69.160",
        x_proto="http",
        forwarded=({"for": "175.16.199.1", "proto": "https", "host": "evil.example"},),
    )
    assert PROXIES.resolve("10.0.0.1", headers) == ClientView("81.2.69.160", "http")


@given(
    peer=st.one_of(st.text(), st.ip_addresses().map(str)),
    x_for=st.text(),
    x_proto=st.text(),
    x_host=st.text(),
    forwarded=st.lists(st.dictionaries(st.sampled_from(["for", "proto", "host"]), st.text())),
)
def test_garbage_never_raises(
    peer: str, x_for: str, x_proto: str, x_host: str, forwarded: list[dict[str, str]]
) -> None:
    trusting = TrustedProxies(["0.0.0.0/0", "::/0"])
    view = trusting.resolve(peer, ForwardedHeaders(x_for, x_proto, x_host, tuple(forwarded)))
    if view is not None:
        assert trusting.client_ip(view.remote, None) == view.remote
        assert view.scheme in (None, "http", "https")


def test_invalid_trusted_proxies_are_all_named() -> None:
    with pytest.raises(ProxyConfigError) as raised:
        TrustedProxies(["10.0.0.0/8", "x", "1.2.3.4/33"])
    assert str(raised.value) == (
        "KAERU_TRUSTED_PROXIES: 'x' is not an IP network; '1.2.3.4/33' is not an IP network"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", []),
        ("  ", []),
        ("10.0.0.0/8", ["10.0.0.0/8"]),
        ("10.0.0.0/8, 192.168.1.1 ,fd00::/8", ["10.0.0.0/8", "192.168.1.1", "fd00::/8"]),
        ("10.0.0.0/8 172.16.0.0/12,,\t::1\n", ["10.0.0.0/8", "172.16.0.0/12", "::1"]),
    ],
)
def test_parse_proxies_splits_on_commas_and_spaces(raw: str, expected: list[str]) -> None:
    assert parse_proxies(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://ads.example.com", "https://ads.example.com"),
        ("https://Ads.Example.com/", "https://ads.example.com"),
        ("http://ads.example.com:8080", "http://ads.example.com:8080"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_public_url_setting(raw: str, expected: str) -> None:
    assert Settings.from_env({"KAERU_PUBLIC_URL": raw}).public_url == expected


@pytest.mark.parametrize(
    "raw",
    [
        "ads.example.com",
        "ftp://ads.example.com",
        "https://",
        "https://ads.example.com/kaeru",
        "https://user@ads.example.com",
        "https://ads.example.com?x=1",
        "https://ads.example.com:99999",
        "https://ads example.com",
    ],
)
def test_a_bad_public_url_is_named(raw: str) -> None:
    with pytest.raises(SettingsError, match="KAERU_PUBLIC_URL"):
        Settings.from_env({"KAERU_PUBLIC_URL": raw})


# --- The app, as a browser behind a proxy sees it ------------------------------------------

PUBLIC_HOST = "kaeru.test"  # not loopback: the scheme alone decides what is a secure context
HTTPS_PROXY = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "81.2.69.160"}


async def _client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    port = free_port()
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings),
        server_kwargs={"port": port},
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=BROWSER,
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 4)])
    return client


@pytest.fixture
async def behind_proxy(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """The app with the test client's address (loopback) as its trusted proxy."""
    return await _client(aiohttp_client, replace(settings, trusted_proxies=("127.0.0.1",)))


@pytest.fixture
async def untrusting(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """The app trusting some other proxy: the test client is just a client."""
    return await _client(aiohttp_client, replace(settings, trusted_proxies=("10.0.0.0/8",)))


def cookie(response: aiohttp.ClientResponse, name: str) -> list[str]:
    """The attributes of the Set-Cookie header for `name`, as sent."""
    for header in response.headers.getall("Set-Cookie", ()):
        if header.startswith(f"{name}="):
            return [part.strip() for part in header.split(";")][1:]
    raise AssertionError(f"no {name} cookie in {response.headers.getall('Set-Cookie', ())}")


def same_site(attributes: list[str]) -> str | None:
    found = [a.split("=", 1)[1].lower() for a in attributes if a.lower().startswith("samesite=")]
    return found[0] if found else None


def secure(attributes: list[str]) -> bool:
    return any(a.lower() == "secure" for a in attributes)


async def served_links(client: TestClient[Any, Any], headers: dict[str, str]) -> list[str]:
    pixel = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=headers)
    cookie(pixel, "uid")  # issued
    await refresh_catalog(client)
    uid_value = pixel.headers["Set-Cookie"].split(";", 1)[0]
    response = await client.get(
        "/ad.json",
        params={"pub": "news1", "size": "300x250"},
        headers={**headers, "Cookie": uid_value},
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    return [body["impression_url"], *(p["click_url"] for p in body["products"])]


async def test_https_at_a_trusted_proxy_gives_secure_cross_site_uid_cookie(
    behind_proxy: TestClient[Any, Any],
) -> None:
    response = await behind_proxy.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=HTTPS_PROXY
    )
    attributes = cookie(response, "uid")
    assert secure(attributes) and same_site(attributes) == "none"
    assert "HttpOnly" in attributes


async def test_https_at_a_trusted_proxy_gives_secure_cross_site_optout_cookie(
    behind_proxy: TestClient[Any, Any],
) -> None:
    response = await behind_proxy.get("/optout", headers=HTTPS_PROXY)
    attributes = cookie(response, "optout")
    assert secure(attributes) and same_site(attributes) == "none"


async def test_https_at_a_trusted_proxy_gives_https_links(
    behind_proxy: TestClient[Any, Any],
) -> None:
    links = await served_links(behind_proxy, HTTPS_PROXY)
    assert links and all(link.startswith(f"https://{PUBLIC_HOST}/") for link in links), links


async def test_forwarded_host_and_rfc7239_forwarded_from_a_trusted_proxy(
    behind_proxy: TestClient[Any, Any],
) -> None:
    x_forwarded = {**HTTPS_PROXY, "X-Forwarded-Host": "ads.example"}
    assert all(
        u.startswith("https://ads.example/") for u in await served_links(behind_proxy, x_forwarded)
    )
    rfc7239 = {"Host": PUBLIC_HOST, "Forwarded": 'for="81.2.69.160";proto=https;host=ads.example'}
    assert all(
        u.startswith("https://ads.example/") for u in await served_links(behind_proxy, rfc7239)
    )
    response = await behind_proxy.get("/optout", headers=rfc7239)
    assert secure(cookie(response, "optout"))


async def test_plain_http_at_the_proxy_keeps_the_first_party_cookie(
    behind_proxy: TestClient[Any, Any],
) -> None:
    headers = {**HTTPS_PROXY, "X-Forwarded-Proto": "http"}
    response = await behind_proxy.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=headers
    )
    attributes = cookie(response, "uid")
    assert not secure(attributes) and same_site(attributes) == "lax"
    assert all(
        u.startswith(f"http://{PUBLIC_HOST}/") for u in await served_links(behind_proxy, headers)
    )


async def test_forwarded_headers_from_an_untrusted_peer_change_nothing(
    untrusting: TestClient[Any, Any],
) -> None:
    claims = {
        **HTTPS_PROXY,
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=81.2.69.160;proto=https;host=evil.example",
    }
    response = await untrusting.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=claims
    )
    attributes = cookie(response, "uid")
    assert not secure(attributes) and same_site(attributes) == "lax"
    optout = await untrusting.get("/optout", headers=claims)
    assert not secure(cookie(optout, "optout"))
    links = await served_links(untrusting, claims)
    assert all(u.startswith(f"http://{PUBLIC_HOST}/") for u in links), links


async def test_loopback_still_counts_as_a_secure_context(
    untrusting: TestClient[Any, Any],
) -> None:
    response = await untrusting.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    assert secure(cookie(response, "uid"))  # Host: 127.0.0.1:port, plain http


async def test_public_url_gives_its_links_and_secure_cookies(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await _client(aiohttp_client, replace(settings, public_url="https://ads.example.com"))
    plain = {"Host": PUBLIC_HOST}
    links = await served_links(client, plain)
    assert all(u.startswith("https://ads.example.com/") for u in links), links
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=plain)
    assert secure(cookie(response, "uid")) and same_site(cookie(response, "uid")) == "none"
    optout = await client.get("/optout", headers=plain)
    assert secure(cookie(optout, "optout"))
