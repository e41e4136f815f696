"""Every request is timed and counted by route; an unexpected error is logged and answered
with a plain 500 instead of a traceback."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from adserver.context import METRICS
from adserver.responses import json_error

log = logging.getLogger(__name__)


def route_name(request: web.Request) -> str:
    """A bounded label: the route's template (`/c/{token}`), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    route = route_name(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        log.exception("unhandled error on %s", route)
        return json_error(500, "internal error")
    finally:
        metrics.answered(route, status, time.perf_counter() - started)
