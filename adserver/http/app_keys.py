"""Typed keys for what the app holds (aiohttp `AppKey`s), shared by every handler module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from adserver.buffering.buffered_writer import BufferedWriter, EventWriter
from adserver.config.settings import Settings
from adserver.delivery.impression_caps import ImpressionCaps
from adserver.delivery.market_cache import MarketCache
from adserver.delivery.tokens import Signer
from adserver.feeds.grace import FeedGrace
from adserver.http.edge.geo import GeoLocator
from adserver.identity.links import IdentityResolver
from adserver.learning.related import NeighbourCache
from adserver.learning.worker import RelatedWorker
from adserver.recs.trending import TrendingCache
from adserver.runtime.metrics import Metrics
from adserver.store import Linked, Store
from adserver.store.ledger import Click, Shown
from adserver.value.refresh import ValueRefresher
from creatives.renderer import CreativeRenderer

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
MARKET = web.AppKey("market", MarketCache)
GEO = web.AppKey("geo", GeoLocator)
RENDERER = web.AppKey("renderer", CreativeRenderer)
SIGNER = web.AppKey("signer", Signer)
NEIGHBOURS = web.AppKey("neighbours", NeighbourCache)
WORKER = web.AppKey("worker", RelatedWorker)
VALUE_REFRESHER = web.AppKey("value_refresher", ValueRefresher)  # runs with the worker
TRENDING = web.AppKey("trending", TrendingCache)  # the `trending` placement of /recs.json
EVENT_WRITER = web.AppKey("event_writer", EventWriter)
FEED_GRACE = web.AppKey("feed_grace", FeedGrace)  # events of products not fed yet
SHOWN_WRITER = web.AppKey("shown_writer", BufferedWriter[Shown])  # impressions and renders
CLICK_WRITER = web.AppKey("click_writer", BufferedWriter[Click])
IMPRESSION_CAPS = web.AppKey("impression_caps", ImpressionCaps)
IDENTITY = web.AppKey("identity", IdentityResolver)  # first-party ids, hashed e-mails


def buffered_writers(app: web.Application) -> list[BufferedWriter[Any]]:
    """Everything the app keeps for Redis when Redis is slow or away."""
    events = app[EVENT_WRITER]
    return [events, app[SHOWN_WRITER], app[CLICK_WRITER]]


async def forget_buffered(app: web.Application, uid: str) -> None:
    """Before a shopper's keys are deleted: write what this process has queued for them
    (impressions are counted after their answer) and drop what it keeps for a replay, or
    either would recreate their keys after the deletion."""
    app[FEED_GRACE].discard(uid)
    for writer in buffered_writers(app):
        await writer.flush()
        await writer.discard(uid)


async def forget_linked(
    app: web.Application, uids: Sequence[str] = (), identifiers: Sequence[str] = ()
) -> tuple[Linked, int]:
    """Forget these uids, the uids of these identifier tokens, and everyone linked to them
    through identity links (opt-out, `DELETE /api/v1/users/UID`,
    `DELETE /api/v1/identities/SHA256`): what this process buffers for each, then their keys,
    then the links. Returns what was reached and how many keys existed."""
    store = app[STORE]
    linked = await store.identities.linked(uids, identifiers)
    for uid in sorted(linked.uids):
        await forget_buffered(app, uid)
    return linked, await store.forget_reached(linked, app[SETTINGS].advertisers)
