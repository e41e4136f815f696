"""Operations endpoints: `/healthz` (the process lives), `/readyz` (Redis answers), `/metrics`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from adserver.http.app_keys import METRICS, STORE, buffered_writers
from adserver.http.responses import json_response


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    app = request.app
    # buffered_events, buffered_impressions (renders included), buffered_clicks
    buffered = {f"buffered_{w.codec.name}": len(w.buffer) for w in buffered_writers(app)}
    if await app[STORE].ping():
        return json_response({"status": "ready", "redis": "ok", **buffered})
    return json_response({"status": "degraded", "redis": "unreachable", **buffered}, status=503)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
