"""Admin API: `/api/v1/advertisers/{adv}/campaigns[/{id}]` — who / what / when / where / bid."""

from __future__ import annotations

import orjson
from aiohttp import web

from adserver.admin import authorize_advertiser
from adserver.bodies import read_body
from adserver.campaigns import CAMPAIGN_ID, parse_campaign
from adserver.context import MARKET, RENDERER, STORE
from adserver.responses import json_error, json_response

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
        return json_error(422, "invalid campaign", problems=parsed)
    await request.app[STORE].campaigns.put(advertiser, campaign_id, parsed.to_json())
    await request.app[MARKET].refresh()
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
    if not await request.app[STORE].campaigns.delete(advertiser, campaign_id):
        return json_error(404, f"no campaign {campaign_id!r}")
    await request.app[MARKET].refresh()
    return web.Response(status=204)
