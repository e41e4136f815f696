"""`create_app(settings)`: assemble Kaeru from its parts. Never reads the environment."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from adserver.buffering.buffered_writer import BufferedWriter, EventWriter, Outcome
from adserver.buffering.spill_codecs import CLICKS, SHOWN
from adserver.config.settings import Settings
from adserver.core.lessons import LearningConfig
from adserver.delivery.impression_caps import ImpressionCaps
from adserver.delivery.market_cache import MarketCache
from adserver.delivery.tokens import Signer
from adserver.feeds.grace import FeedGrace, releaser
from adserver.http import ads as ad_handlers
from adserver.http import ops
from adserver.http import recs as recs_handlers
from adserver.http.admin import audiences as admin_audiences
from adserver.http.admin import campaigns as admin_campaigns
from adserver.http.admin import products as admin_products
from adserver.http.admin import recommendations as admin_recommendations
from adserver.http.admin import reports as admin_reports
from adserver.http.admin import users as admin_users
from adserver.http.app_keys import (
    CLICK_WRITER,
    EVENT_WRITER,
    FEED_GRACE,
    GEO,
    IDENTITY,
    IMPRESSION_CAPS,
    MARKET,
    METRICS,
    NEIGHBOURS,
    RENDERER,
    SETTINGS,
    SHOWN_WRITER,
    SIGNER,
    STORE,
    TRENDING,
    VALUE_REFRESHER,
    WORKER,
    buffered_writers,
)
from adserver.http.edge import LONG_TARGET_ROUTES, MAX_TARGET, edge_handler_args
from adserver.http.edge.forwarding import TrustedProxies
from adserver.http.edge.geo import GeoLocator
from adserver.http.edge.middleware import as_trusted_proxies_saw_it
from adserver.http.middleware import observing
from adserver.identity.links import IdentityResolver
from adserver.learning.related import NeighbourCache, RankingConfig
from adserver.learning.worker import RelatedWorker
from adserver.recs.trending import TrendingCache
from adserver.runtime.listen import open_listeners
from adserver.runtime.metrics import Metrics
from adserver.store import RedisError, Store, StoreLimits, connect
from adserver.store.customer_values import CustomerValues
from adserver.store.learning import LearningStore
from adserver.store.ledger import CLOCK_SKEW_SECONDS, Click, Ledger, Shown
from adserver.value.refresh import ValueRefresher
from creatives.renderer import CreativeRenderer
from pixel import conversions, optout
from pixel import handlers as pixel_handlers

log = logging.getLogger(__name__)
IMPRESSION_LINGER_SECONDS = 0.005

WORKER_SOCKET_TIMEOUT = 5.0
WORKER_STOP_SECONDS = 3.0
ERASURE_REPLAY_SECONDS = 300  # beyond the feed grace, for events buffered while Redis was slow
SHUTDOWN_GRACE_SECONDS = 5.0  # a stopping server lets in-flight requests finish this long
UNSENT_DIR = "unsent"  # in the data dir: what Redis could not take before an exit


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (the CLI starts embedded Redis)")
    if not settings.secret:
        raise ValueError(
            "create_app needs settings.secret (see Settings.with_secret_from_data_dir)"
        )
    metrics = Metrics()
    app = web.Application(
        middlewares=_middlewares(settings),
        client_max_size=settings.feed_max_bytes,
        handler_args=edge_handler_args(metrics),
    )
    store = Store(
        connect(settings.redis_url),
        StoreLimits(
            lookback_seconds=settings.lookback_seconds,
            max_views=settings.max_views,
            stream_maxlen=settings.stream_maxlen,
            click_window_seconds=settings.click_window_days * 86400,
            view_window_seconds=settings.view_window_days * 86400,
            erasure_hold_seconds=settings.feed_grace_seconds + ERASURE_REPLAY_SECONDS,
            click_link_seconds=settings.click_ttl_days * 86400 + CLOCK_SKEW_SECONDS,
            # Registered publishers are a bounded list of their own: no fold then.
            max_publishers_per_day=0 if settings.publishers else settings.max_publishers_per_day,
            browser_conversions_per_day=settings.browser_conversions_per_day,
            uids_per_identifier=settings.uids_per_identifier,
            identifiers_per_uid=settings.identifiers_per_uid,
            email_audience_cap=settings.email_audience_cap,
        ),
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = metrics
    app[RENDERER] = CreativeRenderer(locales=settings.advertiser_locales)
    app[MARKET] = MarketCache(
        store, list(settings.advertisers), app[RENDERER].sizes(), settings.max_campaigns
    )
    app[GEO] = GeoLocator(settings.geoip_db)
    app[SIGNER] = Signer(settings.secret)
    app[IMPRESSION_CAPS] = ImpressionCaps(settings.impression_cap_per_hour)
    app[IDENTITY] = IdentityResolver(store, settings.secret)
    app[EVENT_WRITER] = EventWriter(
        lambda entries: store.record_many(entries, entries.spans),  # applied once per write
        deadline=settings.redis_deadline_ms / 1000,
        capacity=settings.buffer_events,
    )
    app[FEED_GRACE] = FeedGrace(settings.feed_grace_seconds)
    unknown = metrics.unknown_items
    app[MARKET].on_catalog.append(
        releaser(
            app[FEED_GRACE],
            lambda entries: app[EVENT_WRITER].write_later(entries) is not Outcome.SHED,
            unknown.labels("counted").inc,
            unknown.labels("dropped").inc,
        )
    )
    app[SHOWN_WRITER] = BufferedWriter(
        _shown_recorder(store.ledger, metrics),
        codec=SHOWN,
        # Counted after the answer: waiting a few ms for company costs no shopper anything and
        # spares a round trip per ad when traffic is light.
        linger=IMPRESSION_LINGER_SECONDS,
        capacity=settings.buffer_events,
        on_shed=metrics.delivery_shed.labels("shown").inc,
        on_keep=metrics.delivery_buffered.labels("shown").inc,
    )
    app[CLICK_WRITER] = BufferedWriter(
        _click_recorder(store.ledger, metrics),
        codec=CLICKS,
        deadline=settings.redis_deadline_ms / 1000,
        capacity=settings.buffer_events,
        on_shed=metrics.delivery_shed.labels("click").inc,
        on_keep=metrics.delivery_buffered.labels("click").inc,
    )
    config = LearningConfig()
    app[NEIGHBOURS] = NeighbourCache(LearningStore(store.redis, config), RankingConfig())
    app[TRENDING] = TrendingCache(LearningStore(store.redis, config))
    # The worker blocks on the stream: it gets its own connections, away from the hot paths.
    worker_redis = connect(settings.redis_url, timeout=WORKER_SOCKET_TIMEOUT)
    app[WORKER] = RelatedWorker(
        LearningStore(worker_redis, config), on_unsold=unknown.labels("not_learnt").inc
    )
    advertisers = tuple(settings.advertisers)
    app[VALUE_REFRESHER] = ValueRefresher(
        CustomerValues(worker_redis, settings.lookback_seconds), lambda: advertisers
    )
    app.cleanup_ctx.append(_redis_lifecycle)
    _add_routes(app)
    return app


def _middlewares(settings: Settings) -> list[Middleware]:
    """One middleware (each costs every request a coroutine): errors caught, long targets
    refused; behind trusted proxies, every handler sees the client's own scheme, host and
    address (adserver.http.edge)."""
    proxies = TrustedProxies(settings.trusted_proxies)
    believe = as_trusted_proxies_saw_it(proxies) if proxies else None
    return [observing(MAX_TARGET, LONG_TARGET_ROUTES, believe)]


def _shown_recorder(
    ledger: Ledger, metrics: Metrics
) -> Callable[[Sequence[Shown]], Awaitable[None]]:
    async def record(shown: Sequence[Shown]) -> None:
        metrics.renders_uncounted.inc(await ledger.record_shown(shown))

    return record


def _click_recorder(
    ledger: Ledger, metrics: Metrics
) -> Callable[[Sequence[Click]], Awaitable[None]]:
    async def record(clicks: Sequence[Click]) -> None:
        for c in clicks:  # a replayed batch counts a click once: see Ledger.record_click
            if c.touch_only:  # a click id sent back by the landing page: counted before
                if c.uid is not None:
                    await ledger.record_click_touch(c.uid, c.placement, c.at)
                continue
            counted = await ledger.record_click(c.uid, c.placement, c.sku, c.at, c.token_id)
            metrics.clicks.labels("counted" if counted else "replayed").inc()

    return record


async def freeze_startup_heap(app: web.Application) -> None:
    """For server processes (not tests, which build many apps in one process): once started,
    everything loaded so far (modules, templates, the first catalogs) lives as long as the
    process, so it is moved out of the garbage collector's sight. Otherwise each full
    collection walks it all: ~20 ms with every request waiting (bench/PROFILING.md)."""
    gc.collect()
    gc.freeze()


def run_server(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool = False,
    sockets: Sequence[socket.socket] | None = None,
) -> None:
    """Serve `app` until SIGINT/SIGTERM, on uvloop when installed, with the start-up heap frozen
    (`reuse_port`: one of several processes on the port, which print no banner). Listens on
    `sockets`, else opens them first: a taken port raises `ListenError` before start-up."""
    if sockets is None:
        sockets = open_listeners(settings.host, settings.port, reuse_port=reuse_port)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        pass
    app.on_startup.append(freeze_startup_heap)
    web.run_app(
        app,
        sock=sockets,
        loop=loop,
        access_log=None,
        print=None if reuse_port else print,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )


@contextlib.asynccontextmanager
async def _redis_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Warm the catalog cache, keep it fresh in the background, run the related-items worker
    unless disabled, close Redis on the way out."""
    cache = app[MARKET]
    writers = buffered_writers(app)
    unsent = app[SETTINGS].data_dir / UNSENT_DIR
    for writer in writers:
        try:
            if reloaded := writer.load_spilled(unsent):
                name = writer.codec.name
                log.warning("replaying %d %s a previous run could not write", reloaded, name)
        except OSError as exc:
            log.error("cannot read the unsent %s in %s: %s", writer.codec.name, unsent, exc)
    try:
        await cache.refresh()
    except (RedisError, OSError) as exc:
        log.warning("Redis not reachable at start-up; serving without catalogs for now: %s", exc)
    refresher = asyncio.create_task(cache.run(app[SETTINGS].cache_refresh_seconds))
    replayers = [asyncio.create_task(writer.run_replayer()) for writer in writers]
    stop_worker = asyncio.Event()
    worker = app[WORKER]
    learner = asyncio.create_task(worker.run(stop_worker)) if app[SETTINGS].run_worker else None
    valuer = (
        asyncio.create_task(app[VALUE_REFRESHER].run(stop_worker))
        if app[SETTINGS].run_worker
        else None
    )
    yield
    # In-flight requests are done (aiohttp waited for them). Acknowledged events first.
    stop_worker.set()  # let it finish its batch rather than cutting a command in two
    for task in (refresher, *replayers):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    left = await asyncio.gather(*(writer.drain() for writer in writers))  # retrying together
    for writer, count in zip(writers, left, strict=True):
        if count:
            _spill(writer, unsent)
    if learner is not None:
        try:
            await asyncio.wait_for(learner, WORKER_STOP_SECONDS)
        except TimeoutError:
            log.warning("related-items worker did not stop in time; its batch will be redone")
    if valuer is not None:
        try:
            await asyncio.wait_for(valuer, WORKER_STOP_SECONDS)
        except TimeoutError:
            log.warning("value refresh did not stop in time; the next one redoes it")
    await worker.learning.redis.aclose()
    app[GEO].close()
    await app[STORE].close()


def _spill(writer: BufferedWriter[Any], directory: Path) -> None:
    """Redis stayed away through the shutdown: keep what was acknowledged on disk."""
    count, name = len(writer.buffer), writer.codec.name
    try:
        path = writer.spill(directory)
    except OSError as exc:
        log.error(
            "Redis unreachable and %s not writable: %d %s lost: %s", directory, count, name, exc
        )
        return
    log.warning(
        "Redis unreachable at exit: %d %s kept in %s; the next start replays them",
        count,
        name,
        path,
    )


def _add_routes(app: web.Application) -> None:
    app.router.add_get("/px", pixel_handlers.pixel)
    app.router.add_post("/e", pixel_handlers.batch)
    app.router.add_get("/tag.js", pixel_handlers.tag_script)
    app.router.add_get("/optout", optout.optout)
    app.router.add_post("/optout", optout.undo_optout)
    app.router.add_delete("/api/v1/users/{uid}", admin_users.forget_user)
    app.router.add_delete("/api/v1/identities/{sha256}", admin_users.forget_identity)
    app.router.add_get("/ad", ad_handlers.ad_html)
    app.router.add_get("/ad.js", ad_handlers.ad_script)
    app.router.add_get("/ad.json", ad_handlers.ad_json)
    app.router.add_get("/static/creative.{version}.css", ad_handlers.creative_stylesheet)
    app.router.add_get("/recs.json", recs_handlers.recs_json)
    app.router.add_get("/recs.js", recs_handlers.recs_script)
    app.router.add_get("/recs/i/{token}", recs_handlers.recs_viewed)
    app.router.add_get("/c/{token}", ad_handlers.click)
    app.router.add_get("/c/{token}/{link}", ad_handlers.ad_click)
    app.router.add_get("/i/{token}", ad_handlers.rendered)
    products = "/api/v1/advertisers/{advertiser}/products"
    app.router.add_put(products, admin_products.put_products)
    app.router.add_get(products, admin_products.get_products)
    campaigns = "/api/v1/advertisers/{advertiser}/campaigns"
    app.router.add_get(campaigns, admin_campaigns.list_campaigns)
    app.router.add_put(campaigns + "/{campaign}", admin_campaigns.put_campaign)
    app.router.add_get(campaigns + "/{campaign}", admin_campaigns.get_campaign)
    app.router.add_delete(campaigns + "/{campaign}", admin_campaigns.delete_campaign)
    app.router.add_get("/api/v1/advertisers/{advertiser}/report", admin_reports.report)
    app.router.add_get(
        "/api/v1/advertisers/{advertiser}/recommendations", admin_recommendations.recommendations
    )
    app.router.add_get(
        "/api/v1/advertisers/{advertiser}/audiences/{name}/members", admin_audiences.members
    )
    app.router.add_post("/api/v1/advertisers/{advertiser}/conversions", conversions.post_conversion)
    app.router.add_get("/api/v1/publishers/{publisher}/report", admin_reports.publisher_report)
    app.router.add_get("/report", admin_reports.report_page)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
