"""Admin API, with the operator's token: `DELETE /api/v1/users/{uid}` forgets one shopper,
`DELETE /api/v1/identities/{sha256}` everyone linked to a hashed e-mail; either carries
through every identity link (see `adserver.http.app_keys.forget_linked`)."""

from __future__ import annotations

from aiohttp import web

from adserver.http.admin.auth import authorize_operator
from adserver.http.app_keys import IDENTITY, forget_linked
from adserver.http.responses import json_error, json_response
from adserver.identity.identifiers import valid_email_sha256
from adserver.identity.uid_cookie import UID_PATTERN


async def forget_user(request: web.Request) -> web.StreamResponse:
    """Erase everything about one uid (idempotent): its profile, counters and learning state,
    its identity links, and the same of every uid linked to it."""
    authorize_operator(request)
    uid = request.match_info["uid"]
    if not UID_PATTERN.match(uid):
        return json_error(400, "not a Kaeru uid")
    linked, deleted = await forget_linked(request.app, [uid])
    return json_response({"uid": uid, "deleted_keys": deleted, "linked_uids": len(linked.uids) - 1})


async def forget_identity(request: web.Request) -> web.StreamResponse:
    """Erase every uid linked to a hashed e-mail (SHA-256 hex of the trimmed, lowercased
    address), everyone linked to those, and the links (idempotent). The answer counts what
    was erased; it names no uid and no hash."""
    authorize_operator(request)
    email_sha256 = valid_email_sha256(request.match_info["sha256"])
    if email_sha256 is None:
        return json_error(400, "not a SHA-256 hex digest (64 lowercase hex digits) of an e-mail")
    token = request.app[IDENTITY].hasher.email(email_sha256)
    linked, deleted = await forget_linked(request.app, identifiers=[token])
    return json_response(
        {
            "forgotten_uids": len(linked.uids),
            "forgotten_identifiers": len(linked.identifiers),
            "deleted_keys": deleted,
        }
    )
