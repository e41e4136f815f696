"""Campaigns in Redis: one hash per advertiser (id -> JSON) and a version per advertiser, so
every server process notices a change within a second (see MarketCache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from adserver.store import keys
from adserver.store.base import text, write_in_order


class CampaignStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def put(self, advertiser: str, campaign_id: str, document: dict[str, Any]) -> int:
        _, version = await write_in_order(
            self.redis,
            ("HSET", keys.campaigns(advertiser), campaign_id, orjson.dumps(document)),
            ("HINCRBY", keys.CAMPAIGN_VERSIONS, advertiser, 1),
        )
        return int(version)

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
