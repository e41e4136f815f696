"""Typed keys for what the app holds (aiohttp `AppKey`s), shared by every handler module."""

from __future__ import annotations

from aiohttp import web

from adserver.event_writer import EventWriter
from adserver.geo import GeoLocator
from adserver.group_commit import GroupCommit
from adserver.market import MarketCache
from adserver.metrics import Metrics
from adserver.related import NeighbourCache
from adserver.settings import Settings
from adserver.signing import Signer
from adserver.store import Store
from adserver.store.ledger import Impression
from adserver.worker import RelatedWorker
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
EVENT_WRITER = web.AppKey("event_writer", EventWriter)
IMPRESSIONS = web.AppKey("impressions", GroupCommit[Impression])
