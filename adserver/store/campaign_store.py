"""Campaigns in Redis: one hash per advertiser (id -> JSON) and a version per advertiser, so
every server process notices a change within a second (see MarketCache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from adserver.store import keys, scripts
from adserver.store.base import text, write_in_order


class CampaignStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._put = redis.register_script(scripts.PUT_CAMPAIGN)

    async def put(
        self, advertiser: str, campaign_id: str, document: dict[str, Any], limit: int = 0
    ) -> int | None:
        """Store the campaign and announce it; its new version, or None (nothing stored) when
        it would be a new campaign past `limit` (0: no limit). The cap is checked and the
        campaign written in one script, so two PUTs at once cannot both squeeze in."""
        data = orjson.dumps(document)
        stored = await self._put([keys.campaigns(advertiser)], [campaign_id, data, limit or 2**62])
        if not int(stored):
            return None
        version = await self.redis.hincrby(keys.CAMPAIGN_VERSIONS, advertiser, 1)
        return int(version)

    async def count(self, advertiser: str) -> int:
        return int(await self.redis.hlen(keys.campaigns(advertiser)))

    async def delete(self, advertiser: str, campaign_id: str) -> bool:
        removed, _ = await write_in_order(
            self.redis,
            ("HDEL", keys.campaigns(advertiser), campaign_id),
            ("HINCRBY", keys.CAMPAIGN_VERSIONS, advertiser, 1),
        )
        return bool(removed)

    async def load(self, advertiser: str) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(keys.campaigns(advertiser))
        return {text(k): orjson.loads(v) for k, v in raw.items()}

    async def versions(self, advertisers: Sequence[str]) -> dict[str, int]:
        raw = await self.redis.hgetall(keys.CAMPAIGN_VERSIONS)
        versions = {text(k): int(v) for k, v in raw.items()}
        return {a: versions.get(a, 0) for a in advertisers}
