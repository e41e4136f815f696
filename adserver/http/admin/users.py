"""Admin API: `DELETE /api/v1/users/{uid}` — forget one shopper, with the operator's token."""

from __future__ import annotations

from aiohttp import web

from adserver.http.admin.auth import authorize_operator
from adserver.http.app_keys import SETTINGS, STORE, forget_buffered
from adserver.http.responses import json_error, json_response
from adserver.identity.uid_cookie import UID_PATTERN


async def forget_user(request: web.Request) -> web.StreamResponse:
    """Erase everything about one uid (idempotent): its profile, counters and learning state."""
    authorize_operator(request)
    uid = request.match_info["uid"]
    if not UID_PATTERN.match(uid):
        return json_error(400, "not a Kaeru uid")
    await forget_buffered(request.app, uid)
    deleted = await request.app[STORE].forget(uid, request.app[SETTINGS].advertisers)
    return json_response({"uid": uid, "deleted_keys": deleted})
