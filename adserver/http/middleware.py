"""Every request is timed and counted by route; Redis failing a request (down, or too slow:
its timeout) is answered 503 with Retry-After, as storage unavailable for now; an unexpected
error is logged and answered with a plain 500 instead of a traceback."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from adserver.http.app_keys import METRICS
from adserver.http.responses import json_error, unavailable
from adserver.store import RedisError

log = logging.getLogger(__name__)
STORE_RETRY_AFTER_SECONDS = 2


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
    except RedisError as exc:  # the hot paths degrade by themselves; the admin routes land here
        log.warning("storage unavailable on %s: %s", route, exc)
        metrics.store_errors.labels("request").inc()
        response = unavailable("storage unavailable, retry later", STORE_RETRY_AFTER_SECONDS)
        status = response.status
        return response
    except Exception:
        log.exception("unhandled error on %s", route)
        return json_error(500, "internal error")
    finally:
        metrics.answered(route, status, time.perf_counter() - started)
