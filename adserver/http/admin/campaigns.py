"""Admin API: `/api/v1/advertisers/{adv}/campaigns[/{id}]` — who / what / when / where / bid."""

from __future__ import annotations

import orjson
from aiohttp import web

from adserver.core.campaigns import CAMPAIGN_ID, parse_campaign
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.admin.changes import refresh_quietly, store_unavailable
from adserver.http.app_keys import MARKET, METRICS, RENDERER, SETTINGS, STORE
from adserver.http.bodies import read_body
from adserver.http.responses import json_error, json_response
from adserver.store import RedisError

MAX_CAMPAIGN_BYTES = 256 * 1024


def _campaign_id(request: web.Request) -> str:
    campaign_id = request.match_info["campaign"]
    if not CAMPAIGN_ID.match(campaign_id):
        raise web.HTTPBadRequest(text="campaign id: 1-64 letters, digits, '.', '_' or '-'")
    return campaign_id


async def put_campaign(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    campaign_id = _campaign_id(request)
    body = await read_body(request, MAX_CAMPAIGN_BYTES)
    if len(body) > MAX_CAMPAIGN_BYTES:
        return json_error(413, f"a campaign is at most {MAX_CAMPAIGN_BYTES} bytes")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return json_error(400, f"campaign is not valid JSON: {exc}")
    parsed = parse_campaign(advertiser, campaign_id, document, request.app[RENDERER].sizes())
    if isinstance(parsed, list):
        request.app[METRICS].bad_requests.labels("campaigns", "invalid").inc()
        return json_error(422, "invalid campaign", problems=parsed)
    limit = request.app[SETTINGS].max_campaigns
    try:
        stored = await request.app[STORE].campaigns.put(
            advertiser, campaign_id, parsed.to_json(), limit
        )
    except (RedisError, OSError, TimeoutError) as exc:
        return store_unavailable(request, exc)
    if stored is None:
        request.app[METRICS].bad_requests.labels("campaigns", "max_campaigns").inc()
        return json_error(
            409,
            f"{advertiser} already has {limit} campaigns, the most one advertiser may have "
            "(KAERU_MAX_CAMPAIGNS): delete one or change an existing one",
            limit=limit,
        )
    await refresh_quietly(request.app[MARKET])
    return json_response({"id": campaign_id, **parsed.to_json()})


async def get_campaign(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    campaign_id = _campaign_id(request)
    campaigns = await request.app[STORE].campaigns.load(advertiser)
    if campaign_id not in campaigns:
        return json_error(404, f"no campaign {campaign_id!r}")
    return json_response({"id": campaign_id, **campaigns[campaign_id]})


async def list_campaigns(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    campaigns = await request.app[STORE].campaigns.load(advertiser)
    listed = [{"id": cid, **doc} for cid, doc in sorted(campaigns.items())]
    return json_response({"advertiser": advertiser, "campaigns": listed})


async def delete_campaign(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    campaign_id = _campaign_id(request)
    try:
        deleted = await request.app[STORE].campaigns.delete(advertiser, campaign_id)
    except (RedisError, OSError, TimeoutError) as exc:
        return store_unavailable(request, exc)
    if not deleted:
        return json_error(404, f"no campaign {campaign_id!r}")
    await refresh_quietly(request.app[MARKET])
    return web.Response(status=204)
