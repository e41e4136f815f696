"""The `kaeru` command: serve, demo, catalog import.

Configuration comes from the environment (see the README's table); flags override it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from adserver.config.redis_url import redact
from adserver.config.settings import ADVERTISER_ID, Settings, SettingsError
from adserver.core.product import Product
from adserver.feeds.importer import import_feed
from adserver.feeds.validation import (
    FeedError,
    FeedTally,
    FeedTooLong,
    FeedValidator,
    parse_product,
)
from adserver.runtime.data_dir import prepare_data_dir
from adserver.runtime.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from adserver.runtime.listen import ListenError, open_listeners
from adserver.store import RedisError, Store, StoreLimits, connect

if TYPE_CHECKING:
    from adserver.demo.pages import DemoSites

log = logging.getLogger("kaeru")

DEMO_TOKEN_FILE = "demo-token"
DEMO_PUBLISHER_TOKEN_FILE = "demo-publisher-token"
DEMO_EID_SECONDS = 3600  # how long the cross-site demo's partner signs its reader's eid for
LOOPBACK_HOSTS = ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost")
FILE_CHUNK = 256 * 1024
FEED_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaeru", description="Kaeru retargeting ad server")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help="Redis to use (default: $REDIS_URL, else embedded)")
    common.add_argument("--data-dir", type=Path, help="data directory (default: $KAERU_DATA_DIR)")

    for name, help_text in (
        ("serve", "run the ad server"),
        ("demo", "run the server with a demo shop and partner site"),
    ):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument(
            "--host", help="address to listen on (default: $KAERU_HOST or 127.0.0.1)"
        )
        command.add_argument("--port", type=int, help="port (default: $KAERU_PORT or 8080)")
        if name == "demo":
            command.add_argument(
                "--cross-site",
                action="store_true",
                help="serve the shop and the partner on two different sites (default: the "
                "shop on http://localhost:PORT with Kaeru, the partner on http://127.0.0.1:PORT), "
                "each with a fake log-in box, to see third-party cookies blocked and what "
                "hashed e-mails, click ids and context do then",
            )
            command.add_argument(
                "--shop",
                choices=("en", "ja"),
                default="en",
                help="the demo shop's catalog: en (English, EUR; the default) or ja (Japanese, "
                "JPY; its ads in ja-JP: 広告, ￥ without decimals)",
            )
            command.add_argument(
                "--shop-url",
                metavar="ORIGIN",
                help="with --cross-site: the origin browsers reach the shop at (default: "
                "Kaeru's own, $KAERU_PUBLIC_URL or http://localhost:PORT)",
            )
            command.add_argument(
                "--partner-url",
                metavar="ORIGIN",
                help="with --cross-site: the origin browsers reach the partner at "
                "(default: http://127.0.0.1:PORT)",
            )
        if name == "serve":
            command.add_argument(
                "--workers",
                type=int,
                default=1,
                metavar="N",
                help="server processes sharing the port (SO_REUSEPORT); default 1",
            )
        command.add_argument(
            "--no-worker",
            action="store_true",
            help="do not learn related items in this process (run "
            "`kaeru worker` instead; default: $KAERU_WORKER or on)",
        )

    worker = commands.add_parser(
        "worker", parents=[common], help="learn related items from the event stream"
    )
    worker.add_argument(
        "--name",
        help="this worker's name in logs (default: $KAERU_WORKER_NAME or the host name); "
        "run as many workers as wanted: they share the event shards",
    )

    refresh = commands.add_parser(
        "value-refresh",
        parents=[common],
        help="refresh the advertisers' customer-value standing now (RFM cut points, typical "
        "interval, value models, replenishment intervals); the worker does it every hour",
    )
    refresh.add_argument(
        "advertiser", nargs="*", help="only these advertisers (default: KAERU_ADVERTISERS)"
    )

    evaluation = commands.add_parser(
        "eval", help="measure related items on a public clickstream data set"
    )
    evaluation.add_argument("dataset", help="diginetica, rsc15-100k, or a data set directory")
    evaluation.add_argument(
        "--data",
        type=Path,
        help="folder holding the data sets (default: $KAERU_EVAL_DATA, else ../shared/data)",
    )
    evaluation.add_argument(
        "--mode",
        choices=["tuned", "plain"],
        default="tuned",
        help="tuned: Kaeru's learner and ranking; plain: association rules",
    )
    evaluation.add_argument("--json", action="store_true", help="print one JSON object")
    evaluation.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a learning or ranking setting (for ablations), e.g. --set "
        "session_boost=0; repeatable",
    )
    evaluation.add_argument(
        "--test-sessions",
        type=int,
        metavar="N",
        help="replay only the first N test sessions (quick look)",
    )

    value = commands.add_parser(
        "value-eval",
        help="measure the customer-value predictions (12-month value, next order, due status)",
    )
    value.add_argument(
        "--shoppers", type=int, default=20_000, help="synthetic shoppers (default 20000)"
    )
    value.add_argument("--seed", type=int, default=1, help="seed of the synthetic shop")
    value.add_argument(
        "--data",
        type=Path,
        help="folder of the shared data sets, checked for purchases "
        "(default: $KAERU_EVAL_DATA, else ../shared/data)",
    )
    value.add_argument("--json", action="store_true", help="print one JSON object")

    catalog = commands.add_parser("catalog", help="manage product catalogs")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, metavar="ACTION"
    )
    importer = catalog_commands.add_parser(
        "import", parents=[common], help="replace an advertiser's catalog with a feed file"
    )
    importer.add_argument("file", type=Path, help="feed: .csv, .json (array) or .ndjson")
    importer.add_argument("--advertiser", required=True, help="advertiser id")
    importer.add_argument(
        "--format",
        choices=["csv", "json", "ndjson"],
        help="feed format (default: from the file name, else sniffed)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "redis_url": args.redis_url,
        "data_dir": args.data_dir,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "run_worker": False if getattr(args, "no_worker", False) else None,
    }
    settings = Settings.from_env(overrides=overrides)
    prepare_data_dir(settings.data_dir, "--data-dir" if args.data_dir else "KAERU_DATA_DIR")
    return settings.with_secret_from_data_dir()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "eval":
            return run_evaluation(
                args.dataset, args.data, args.mode, args.json, args.test_sessions, args.set
            )
        if args.command == "value-eval":
            return run_value_evaluation(args.shoppers, args.seed, args.data, args.json)
        settings = _settings(args)
        if args.command == "serve":
            return serve(settings, args.workers)
        if args.command == "demo":
            sites = demo_sites(settings, args.cross_site, args.shop_url, args.partner_url)
            return demo(settings, sites, args.shop)
        if args.command == "worker":
            return run_worker(settings, args.name)
        if args.command == "value-refresh":
            return run_value_refresh(settings, args.advertiser)
        return import_catalog(settings, args.file, args.advertiser, args.format)
    except SettingsError as exc:
        print(f"kaeru: {exc}", file=sys.stderr)
        return 2
    except EmbeddedRedisError as exc:
        print(f"kaeru: embedded Redis: {exc}", file=sys.stderr)
        return 1
    except ListenError as exc:
        print(f"kaeru: {exc} (choose another --port or KAERU_PORT)", file=sys.stderr)
        return 1


def _with_redis(settings: Settings, run: Callable[[Settings], int]) -> int:
    """Run with REDIS_URL, or with a private redis-server in the data dir for the duration."""
    if settings.redis_url:
        return run(settings)
    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    if embedded.process is not None:
        log.info(
            "embedded Redis started at %s (AOF everysec in %s)", redact(url), settings.data_dir
        )
    try:
        return run(replace(settings, redis_url=url))
    finally:
        embedded.stop()


def _run_app(app: web.Application, settings: Settings, sockets: list[socket.socket]) -> None:
    from adserver.app import run_server

    run_server(app, settings, sockets=sockets)


def _bound(settings: Settings, *, reuse_port: bool = False) -> list[socket.socket]:
    """The listening sockets, opened before anything starts: a taken port is a ListenError
    naming it at once, not a failure after Redis, the cache and the learner have started."""
    return open_listeners(settings.host, settings.port, reuse_port=reuse_port)


def serve(settings: Settings, workers: int = 1) -> int:
    if not 1 <= workers <= 64:
        print("kaeru: --workers must be between 1 and 64", file=sys.stderr)
        return 2
    # Several processes each bind their own socket (SO_REUSEPORT): here the port is checked.
    sockets = _bound(settings, reuse_port=workers > 1)
    if workers > 1:
        for sock in sockets:
            sock.close()

    def run(settings: Settings) -> int:
        if not settings.advertisers:
            log.warning("no advertisers configured (KAERU_ADVERTISERS): nothing will be tracked")
        if workers > 1:
            from adserver.multiprocess import serve_processes

            return serve_processes(settings, workers)
        from adserver.app import create_app

        _run_app(create_app(settings), settings, sockets)
        return 0

    try:
        return _with_redis(settings, run)
    finally:
        for sock in sockets:
            sock.close()


def public_base_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url
    host = settings.host
    if host in LOOPBACK_HOSTS:
        host = "localhost"
    return f"http://{host}:{settings.port}"


def _origin(url: str, flag: str) -> str:
    """`url` as an origin (scheme://host[:port], no path), or SettingsError naming `flag`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise SettingsError([f"{flag} must be an http(s) origin such as http://localhost:8080"])
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError([f"{flag} must be an http(s) origin such as http://localhost:8080"])
    return f"{parts.scheme}://{parts.netloc}".lower()


def demo_sites(
    settings: Settings,
    cross_site: bool,
    shop_url: str | None = None,
    partner_url: str | None = None,
) -> DemoSites | None:
    """Where the demo's shop, partner and Kaeru live: None (one site) without `cross_site`."""
    from adserver.demo.pages import DemoSites

    if not cross_site:
        if shop_url or partner_url:
            raise SettingsError(["--shop-url and --partner-url need --cross-site"])
        return None
    kaeru = public_base_url(settings)
    shop = _origin(shop_url, "--shop-url") if shop_url else kaeru
    if partner_url:
        partner = _origin(partner_url, "--partner-url")
    elif settings.host in LOOPBACK_HOSTS:
        partner = f"http://127.0.0.1:{settings.port}"
    else:
        raise SettingsError([f"--cross-site on {settings.host}: give the partner's --partner-url"])
    if urlsplit(partner).hostname == urlsplit(shop).hostname:
        raise SettingsError(["--cross-site: the shop and the partner need different host names"])
    return DemoSites(shop=shop, partner=partner, kaeru=kaeru)


def demo(settings: Settings, sites: DemoSites | None = None, shop_name: str = "en") -> int:
    from adserver.app import create_app
    from adserver.demo.pages import (
        DEMO_ADVERTISER,
        DEMO_PUBLISHER,
        DEMO_SHOPS,
        EidSigner,
        add_demo_routes,
    )
    from adserver.http.app_keys import MARKET, RENDERER, STORE

    token = settings.advertisers.get(DEMO_ADVERTISER) or _demo_token(settings.data_dir)
    catalog = DEMO_SHOPS[shop_name]
    settings = replace(
        settings,
        advertisers={**settings.advertisers, DEMO_ADVERTISER: token},
        advertiser_locales=demo_locales(settings, catalog.locale),
    )
    signer: EidSigner | None = None
    email_signer: EidSigner | None = None
    publisher_line = ""
    if sites is not None:  # the partner's own server signs its reader's eid: a registered token
        publisher_token = settings.publishers.get(DEMO_PUBLISHER) or _demo_token(
            settings.data_dir, DEMO_PUBLISHER_TOKEN_FILE
        )
        publishers = {**settings.publishers, DEMO_PUBLISHER: publisher_token}
        settings = replace(settings, publishers=publishers)
        signer = _demo_eid_signer(DEMO_PUBLISHER, publisher_token)
        email_signer = _demo_email_signer(DEMO_ADVERTISER, token)
        publisher_line = f"  publisher token for {DEMO_PUBLISHER}: {publisher_token}\n"
    base = public_base_url(settings)
    shop = sites.shop if sites else base
    partner = sites.partner if sites else base

    async def load_catalog(app: web.Application) -> None:
        products = [parse_product(row) for row in catalog.feed(shop)]
        await app[STORE].replace_catalog(
            DEMO_ADVERTISER, [p for p in products if isinstance(p, Product)]
        )
        await put_demo_campaigns(app[STORE], shop_name, app[RENDERER].sizes())
        await app[MARKET].refresh()
        two_sites = (
            "  The shop and the partner are two sites: log in with the same e-mail on both.\n"
            if sites
            else ""
        )
        print(
            f"\nKaeru demo is running. Open {shop}/demo/\n"
            f"  shop:     {shop}/demo/shop/\n"
            f"  partner:  {partner}/demo/partner/\n"
            f"{two_sites}"
            f"  metrics:  {base}/metrics\n"
            f"  admin API token for {DEMO_ADVERTISER}: {token}\n"
            f"{publisher_line}"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )

    def run(settings: Settings) -> int:
        app = create_app(settings)
        add_demo_routes(
            app,
            sites,
            signer,
            email_recs=_demo_email_recs(settings, DEMO_ADVERTISER, token),
            email_signer=email_signer,
            catalog=catalog,
        )
        app.on_startup.append(load_catalog)
        _run_app(app, settings, sockets)
        return 0

    sockets = _bound(settings)
    try:
        return _with_redis(settings, run)
    finally:
        for sock in sockets:
            sock.close()


async def put_demo_campaigns(store: Store, shop_name: str, sizes: Collection[str]) -> None:
    """The demo shop's campaigns (`adserver/demo/campaigns.py`), validated and stored as the
    admin API's PUT does, at every start like the catalog (so `--shop ja` on a data directory
    an English demo used gets the Japanese offer); other campaigns of the shop are left."""
    from adserver.core.campaigns import parse_campaign
    from adserver.demo.campaigns import demo_campaigns
    from adserver.demo.pages import DEMO_ADVERTISER

    for campaign_id, body in demo_campaigns(shop_name).items():
        parsed = parse_campaign(DEMO_ADVERTISER, campaign_id, body, sizes)
        if isinstance(parsed, list):  # the demo's own campaigns: a bug, not the user's input
            raise RuntimeError(f"demo campaign {campaign_id}: {'; '.join(parsed)}")
        await store.campaigns.put(DEMO_ADVERTISER, campaign_id, parsed.to_json())


def demo_locales(settings: Settings, shop_locale: str) -> dict[str, str]:
    """KAERU_ADVERTISER_LOCALES with the demo shop's locale, unless it names the demo shop."""
    from adserver.demo.pages import DEMO_ADVERTISER

    return {DEMO_ADVERTISER: shop_locale, **settings.advertiser_locales}


def _demo_eid_signer(publisher: str, token: str) -> Callable[[str], tuple[str, int]]:
    """The cross-site demo's publisher server: signs a hashed e-mail for `DEMO_EID_SECONDS`."""
    from adserver.identity.eid_signatures import sign_eid

    def sign(eid: str) -> tuple[str, int]:
        expiry = int(time.time()) + DEMO_EID_SECONDS
        return sign_eid(token, publisher, eid, expiry), expiry

    return sign


def _demo_email_recs(
    settings: Settings, advertiser: str, token: str
) -> Callable[[Mapping[str, str]], Awaitable[str | None]]:
    """The demo shop's e-mail service: asks this very server, as a shop's server would (over
    HTTP, with the advertiser's token), for the e-mail recommendations block."""
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.port}/api/v1/advertisers/{advertiser}/recommendations"
    # as the browser names this server, so the e-mail's links (built from the request's host
    # unless KAERU_PUBLIC_URL is set) reach the site the shopper's cookie is on
    headers = {
        "Authorization": f"Bearer {token}",
        "Host": urlsplit(public_base_url(settings)).netloc,
    }

    async def fetch(params: Mapping[str, str]) -> str | None:
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, params={**params, "format": "html"}, headers=headers) as answer,
            ):
                return await answer.text() if answer.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    return fetch


def _demo_email_signer(advertiser: str, token: str) -> Callable[[str], tuple[str, int]]:
    """The cross-site demo shop's server: signs its shopper's hashed e-mail for `identify`
    (only a signed e-mail joins the shop's e-mail audiences) for `DEMO_EID_SECONDS`."""
    from adserver.identity.email_signatures import sign_email

    def sign(email_sha256: str) -> tuple[str, int]:
        expiry = int(time.time()) + DEMO_EID_SECONDS
        return sign_email(token, advertiser, email_sha256, expiry), expiry

    return sign


def _demo_token(data_dir: Path, name: str = DEMO_TOKEN_FILE) -> str:
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(24)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(token + "\n")
    return token


def import_catalog(settings: Settings, file: Path, advertiser: str, kind: str | None) -> int:
    if not ADVERTISER_ID.match(advertiser):
        print(f"kaeru: invalid advertiser id {advertiser!r}", file=sys.stderr)
        return 2
    if settings.advertisers and advertiser not in settings.advertisers:
        log.warning("%s is not in KAERU_ADVERTISERS: the server will not serve it", advertiser)
    try:
        handle = file.open("rb")
        size = file.stat().st_size
    except OSError as exc:
        print(f"kaeru: cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 2
    content_type = FEED_TYPES.get(f".{kind}" if kind else file.suffix.lower(), "")
    domains = settings.advertiser_domains.get(advertiser, ())
    validator = FeedValidator(content_type, domains, settings.max_products)
    print(f"parsing {file} ({size / 1e6:.1f} MB)...", file=sys.stderr, flush=True)

    def run(settings: Settings) -> int:
        assert settings.redis_url is not None
        try:
            version = asyncio.run(_import_file(settings.redis_url, advertiser, handle, validator))
        except FeedError as exc:
            limit = " (KAERU_MAX_PRODUCTS)" if isinstance(exc, FeedTooLong) else ""
            print(f"kaeru: unreadable feed: {exc}{limit}", file=sys.stderr)
            return 1
        return _report_import(advertiser, validator.tally, version)

    try:
        with handle:
            return _with_redis(settings, run)
    except (RedisError, OSError) as exc:
        print(f"kaeru: cannot store the catalog: {exc}", file=sys.stderr)
        return 1


def _report_import(advertiser: str, tally: FeedTally, version: int | None) -> int:
    for rejected in tally.rejections[:20]:
        print(f"  row {rejected.row} (id {rejected.id!r}): {rejected.reason}", file=sys.stderr)
    if tally.rejected > 20:
        print(f"  ... and {tally.rejected - 20} more rejected rows", file=sys.stderr)
    if version is None:
        print("kaeru: no valid product in the feed; catalog unchanged", file=sys.stderr)
        return 1
    print(
        f"{advertiser}: {tally.accepted} products accepted, "
        f"{tally.rejected} rejected; catalog version {version}"
    )
    return 0


async def _import_file(
    redis_url: str, advertiser: str, handle: BinaryIO, validator: FeedValidator
) -> int | None:
    """The file read and stored as the server reads a feed (see adserver.feeds.importer)."""

    async def pieces() -> AsyncIterator[bytes]:
        while chunk := handle.read(FILE_CHUNK):
            yield chunk

    store = Store(connect(redis_url), StoreLimits())
    try:
        return await import_feed(pieces(), validator, store.catalog_upload(advertiser))
    finally:
        await store.close()


def run_worker(settings: Settings, name: str | None) -> int:
    from adserver.core.lessons import LearningConfig
    from adserver.learning.worker import RelatedWorker
    from adserver.store.customer_values import CustomerValues
    from adserver.store.learning import LearningStore
    from adserver.value.refresh import ValueRefresher

    async def learn(redis_url: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        redis = connect(redis_url, timeout=5.0)
        worker = RelatedWorker(LearningStore(redis, LearningConfig()), consumer=name)
        advertisers = tuple(settings.advertisers)
        valuer = ValueRefresher(
            CustomerValues(redis, settings.lookback_seconds), lambda: advertisers
        )
        log.info("related-items worker %r learning from %s", worker.consumer, redact(redis_url))
        try:
            await asyncio.gather(worker.run(stop), valuer.run(stop))
        finally:
            await redis.aclose()
        log.info("worker stopped after learning from %d events", worker.learnt)

    def run(settings: Settings) -> int:
        assert settings.redis_url is not None
        asyncio.run(learn(settings.redis_url))
        return 0

    return _with_redis(settings, run)


def run_value_refresh(settings: Settings, only: Sequence[str]) -> int:
    """`kaeru value-refresh`: every advertiser (or those named) refreshed now, no lease."""
    from adserver.store.customer_values import CustomerValues
    from adserver.value.refresh import ValueRefresher

    advertisers = tuple(only or settings.advertisers)

    async def refresh(redis_url: str) -> None:
        redis = connect(redis_url, timeout=30.0)
        refresher = ValueRefresher(
            CustomerValues(redis, settings.lookback_seconds), lambda: advertisers, fit_in="thread"
        )
        try:
            for advertiser in advertisers:
                done = await refresher.refresh(advertiser)
                standing = done.standing
                typical = standing.typical_interval
                print(
                    f"{advertiser}: {standing.sampled} of {done.indexed} buyers sampled, "
                    f"typical interval {'-' if typical is None else f'{typical:.1f} days'}, "
                    f"models {'fitted' if standing.model else 'not fitted'}, "
                    f"{done.intervals} replenishment intervals"
                )
        finally:
            await redis.aclose()

    def run(settings: Settings) -> int:
        assert settings.redis_url is not None
        asyncio.run(refresh(settings.redis_url))
        return 0

    if not advertisers:
        print("kaeru: no advertiser to refresh (KAERU_ADVERTISERS or name them)", file=sys.stderr)
        return 2
    return _with_redis(settings, run)


def run_evaluation(
    dataset_name: str,
    data: Path | None,
    mode: str,
    as_json: bool,
    test_sessions: int | None,
    settings: Sequence[str] = (),
) -> int:
    import tempfile

    import orjson

    from adserver.learning import datasets
    from adserver.learning.evaluation import configure, evaluate, format_report

    overrides = dict(item.partition("=")[::2] for item in settings)
    try:
        configure(mode, overrides)
        dataset = datasets.load(dataset_name, data)
    except (datasets.DatasetError, ValueError) as exc:
        print(f"kaeru: {exc}", file=sys.stderr)
        return 2

    async def measure(redis_url: str) -> str:
        store = Store(
            connect(redis_url, timeout=30.0),
            StoreLimits(lookback_seconds=20 * 365 * 86400, stream_maxlen=10**9),
        )
        try:
            report = await evaluate(store, dataset, mode, sys.stderr, test_sessions, overrides)
        finally:
            await store.close()
        if as_json:
            return orjson.dumps(report.as_json()).decode()
        return format_report(report)

    print(
        f"evaluating on {dataset.name}: {len(dataset.train):,} training sessions, "
        f"{len(dataset.test):,} test sessions, private Redis",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="kaeru-eval-") as scratch:
        redis = EmbeddedRedis(Path(scratch), persistent=False)
        try:
            print(asyncio.run(measure(redis.start())))
        finally:
            redis.stop()
    return 0


def run_value_evaluation(shoppers: int, seed: int, data: Path | None, as_json: bool) -> int:
    import orjson

    from adserver.learning.datasets import default_data_root
    from adserver.value.evaluation import evaluate_value, format_value_report

    if not 100 <= shoppers <= 1_000_000:
        print("kaeru: --shoppers must be between 100 and 1000000", file=sys.stderr)
        return 2
    if data is None:
        data = default_data_root()
    report = evaluate_value(shoppers, seed, data, progress=sys.stderr)
    print(orjson.dumps(report.as_json()).decode() if as_json else format_value_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
