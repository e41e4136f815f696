"""End to end behind a real nginx that terminates TLS, as the README's production set-up has
it: a real `kaeru serve` trusting the proxy, a self-signed certificate made here, and what a
browser gets over https (cookie attributes, links)."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import orjson
import pytest

from adserver.http.responses import TRANSPARENT_GIF
from adserver.runtime.embedded_redis import free_port
from creatives.renderer import CreativeRenderer
from tests.conftest import BROWSER, product_row
from tests.test_cli import TOKEN, kaeru_env, running

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
OPENSSL = shutil.which("openssl")
pytestmark = [
    pytest.mark.skipif(
        NGINX is None, reason="nginx not installed (apt-get install nginx; .ci/run does on CI)"
    ),
    pytest.mark.skipif(OPENSSL is None, reason="openssl not installed: cannot make a cert"),
]
PUBLIC_NAME = "kaeru.test"  # not loopback: only the proxy's word makes it a secure context

# The README's nginx example, made to run as any user in a temporary directory.
NGINX_CONF = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    large_client_header_buffers 4 64k;  # pixels with long queries reach Kaeru (it answers)
    proxy_cache_path {dir}/cache keys_zone=kaeru_static:1m max_size=16m inactive=7d;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {name};
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header Forwarded "";
        }}
        location /static/ {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_cache kaeru_static;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


@dataclass
class Proxy:
    port: int
    cafile: Path
    upstream: str  # kaeru serve, straight
    log: Path  # kaeru serve's output

    @property
    def origin(self) -> str:
        return f"https://{PUBLIC_NAME}:{self.port}"

    def get(
        self,
        target: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
    ) -> http.client.HTTPResponse:
        """A browser's request to https://kaeru.test:PORT (resolved to the proxy on loopback)."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=10
        )
        sent = {**BROWSER, "Host": f"{PUBLIC_NAME}:{self.port}", **(headers or {})}
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        response.read_body = response.read()  # type: ignore[attr-defined]
        connection.close()
        return response


def _certificate(directory: Path) -> Path:
    assert OPENSSL is not None
    subprocess.run(
        [
            OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN={PUBLIC_NAME}",
            "-addext", f"subjectAltName=DNS:{PUBLIC_NAME},IP:127.0.0.1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory / "cert.pem"


def _wait_for_tls(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx not listening on {port}: {log.read_text(errors='replace')}")


@contextmanager
def nginx_in_front_of(upstream_port: int, directory: Path) -> Iterator[int]:
    """nginx on a free loopback port, terminating TLS for Kaeru on `upstream_port`."""
    assert NGINX is not None
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers as root: the temp dir is 0700
    conf = directory / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=user, dir=directory, port=port, name=PUBLIC_NAME, upstream=upstream_port
        )
    )
    log = directory / "error.log"
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_tls(port, process, log)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    directory = tmp_path_factory.mktemp("nginx")
    cafile = _certificate(directory)
    data_dir = tmp_path_factory.mktemp("kaeru") / "data"
    env = kaeru_env(data_dir, KAERU_TRUSTED_PROXIES="127.0.0.1")
    with running("serve", env) as upstream:
        upstream_port = int(upstream.rsplit(":", 1)[1])
        with nginx_in_front_of(upstream_port, directory) as port:
            yield Proxy(port, cafile, upstream, data_dir.with_suffix(".log"))


def attributes(response: http.client.HTTPResponse, name: str) -> dict[str, str]:
    """The Set-Cookie attributes of cookie `name`, lower-cased names: {'secure': '', ...}."""
    for header in response.headers.get_all("Set-Cookie") or ():
        first, *rest = [part.strip() for part in header.split(";")]
        if first.startswith(f"{name}="):
            pairs = (part.partition("=") for part in rest)
            return {key.lower(): value for key, _, value in pairs}
    raise AssertionError(f"no {name} cookie: {response.headers.get_all('Set-Cookie')}")


def body(response: http.client.HTTPResponse) -> bytes:
    data: bytes = response.read_body  # type: ignore[attr-defined]
    return data


def first_ad(proxy: Proxy, headers: dict[str, str]) -> http.client.HTTPResponse:
    """The first 200 of /ad.json through the proxy (the catalog reaches the ad cache within a
    second or so), or the last answer after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        answer = proxy.get("/ad.json?pub=news1&size=300x250", headers)
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status == 200, body(answer)
    return answer


def test_over_https_the_uid_cookie_is_secure_and_cross_site_and_links_are_https(
    proxy: Proxy,
) -> None:
    feed = orjson.dumps([product_row("sku-1"), product_row("sku-2")])
    put = proxy.get(
        "/api/v1/advertisers/shop1/products",
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="PUT",
        body=feed,
    )
    assert put.status == 200, body(put)
    pixel = proxy.get("/px?a=shop1&e=view&i=sku-1")
    assert pixel.status == 200 and body(pixel) == TRANSPARENT_GIF
    uid = attributes(pixel, "uid")
    assert "secure" in uid and uid.get("samesite", "").lower() == "none" and "httponly" in uid
    cookie = pixel.headers["Set-Cookie"].split(";", 1)[0]

    answer = first_ad(proxy, {"Cookie": cookie})
    served = orjson.loads(body(answer))
    links = [served["impression_url"], *(p["click_url"] for p in served["products"])]
    assert all(link.startswith(proxy.origin + "/") for link in links), links
    refreshed = attributes(answer, "uid")
    assert "secure" in refreshed and refreshed.get("samesite", "").lower() == "none"

    frame_url = proxy.origin + "/ad?pub=news1&size=300x250"
    frame = proxy.get(frame_url.removeprefix(proxy.origin), {"Cookie": cookie})
    # The creative's links are paths since issue 15: resolved, as a browser does, against the
    # document's https address.
    hrefs = [urljoin(frame_url, h) for h in re.findall(r'href="([^"]+)"', body(frame).decode())]
    assert hrefs and all(h.startswith(proxy.origin + "/") for h in hrefs), hrefs

    click = proxy.get(urlsplit(served["products"][0]["click_url"]).path)
    assert click.status == 302 and click.headers["Location"].startswith("https://shop1.example/")


def test_the_creative_stylesheet_passes_the_proxy_cacheable_and_is_kept_there(
    proxy: Proxy,
) -> None:
    """Issue 15: what every creative links comes through nginx with its year-long caching and
    its ETag, compressed for a browser, and the second time from nginx's own cache."""
    sheet = CreativeRenderer().stylesheet  # what the creatives of this Kaeru link
    assert sheet is not None
    path = sheet.path
    answers = [proxy.get(path, {"Accept-Encoding": "gzip"}) for _ in range(2)]
    first, second = answers
    for answer in answers:
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert answer.headers["ETag"] and answer.headers["Content-Encoding"] == "gzip"
        assert answer.headers["Content-Type"].startswith("text/css")
    assert b".a{" in gzip.decompress(body(first)) and body(first) == body(second)
    assert second.headers["X-Cache-Status"] == "HIT"


def test_over_https_the_optout_cookie_is_secure_and_cross_site(proxy: Proxy) -> None:
    optout = proxy.get("/optout")
    assert optout.status == 200
    cookie = attributes(optout, "optout")
    assert "secure" in cookie and cookie.get("samesite", "").lower() == "none"


def test_a_long_pixel_through_the_proxy_still_gets_its_gif(proxy: Proxy) -> None:
    response = proxy.get("/px?a=shop1&e=view&i=sku-1&pad=" + "x" * 20_000)
    assert response.status == 200 and body(response) == TRANSPARENT_GIF
    assert response.headers.get_all("Set-Cookie") is None  # stored nowhere, no uid issued


def test_unparseable_requests_are_refused_quietly_and_counted(proxy: Proxy) -> None:
    upstream = urlsplit(proxy.upstream)
    for target in (b"/px?a=shop1&e=view&i=\xff", b"/ad\xff?pub=news1&size=300x250"):
        with socket.create_connection((upstream.hostname, upstream.port), timeout=5) as raw:
            raw.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.") and answer.split(b" ", 2)[1] == b"400"
    metrics = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=5)
    try:
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
    finally:
        metrics.close()
    assert 'kaeru_malformed_requests_total{reason="bad_target"} 2.0' in text
    log = proxy.log.read_text(errors="replace")
    assert "Traceback" not in log and "Error handling request" not in log, log


CHROMIUM = Path("/usr/bin/chromium")


def test_chromium_over_https_keeps_secure_cross_site_cookies(proxy: Proxy) -> None:
    """The same through a real browser: Chromium resolves kaeru.test to the proxy and stores
    the cookies as a partner's iframe would need them."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    args.append(f"--host-resolver-rules=MAP {PUBLIC_NAME} 127.0.0.1")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context(
                ignore_https_errors=True, user_agent=BROWSER["User-Agent"]
            )
            page = context.new_page()
            assert page.goto(f"{proxy.origin}/px?a=shop1&e=view&i=sku-2").ok
            before = {c["name"]: c for c in context.cookies(proxy.origin)}
            page.goto(f"{proxy.origin}/optout")
            after = {c["name"]: c for c in context.cookies(proxy.origin)}
        finally:
            browser.close()
    uid = before["uid"]
    assert uid["secure"] and uid["sameSite"] == "None" and uid["httpOnly"]
    assert after["optout"]["secure"] and after["optout"]["sameSite"] == "None"
    assert "uid" not in after  # the opt-out deleted it, with the attributes it was set with


def test_a_client_s_own_x_forwarded_host_goes_no_further_than_the_proxy(proxy: Proxy) -> None:
    """nginx passes headers it does not set on to Kaeru, which believes the trusted proxy's
    X-Forwarded-Host: the README's config must clear it, or any client picks the host of
    every absolute link (past an nginx `default_server` that pins the Host, too)."""
    put = proxy.get(
        "/api/v1/advertisers/shop1/products",
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="PUT",
        body=orjson.dumps([product_row("sku-1"), product_row("sku-2")]),
    )
    assert put.status == 200, body(put)
    cookie = proxy.get("/px?a=shop1&e=view&i=sku-1").headers["Set-Cookie"].split(";", 1)[0]
    spoofed = {"Cookie": cookie, "X-Forwarded-Host": "evil.example"}
    answer = first_ad(proxy, spoofed)
    served = orjson.loads(body(answer))
    links = [served["impression_url"], *(p["click_url"] for p in served["products"])]
    assert all(link.startswith(proxy.origin + "/") for link in links), links
