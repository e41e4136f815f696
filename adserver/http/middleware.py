"""Every request is timed and counted by route; Redis failing a request (down, or too slow:
its timeout) is answered 503 with Retry-After, as storage unavailable for now; an unexpected
error is logged and answered with a plain 500 instead of a traceback.

It is the app's one middleware: it also refuses over-long targets (414) and hands handlers
the request as trusted proxies saw it (adserver.http.edge), since each aiohttp middleware
costs every request a coroutine and a call (the pixel's budget: bench/PROFILING.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from adserver.http.app_keys import METRICS
from adserver.http.responses import json_error, unavailable
from adserver.store import RedisError

log = logging.getLogger(__name__)
STORE_RETRY_AFTER_SECONDS = 2


def route_name(request: web.Request) -> str:
    """A bounded label: the route's template (`/c/{token}`), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def observing(
    longest: int,
    long_ok: Collection[str],
    believe: Callable[[web.Request], web.Request] | None = None,
) -> Middleware:
    """The middleware: every route but those in `long_ok` refuses a target over `longest`
    bytes as aiohttp did (414, counted: aiohttp's line limit is raised for the pixel's sake,
    see adserver.http.edge.MAX_REQUEST_LINE); `believe` gives the request as trusted proxies
    saw it (adserver.http.edge.middleware)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        metrics = request.app[METRICS]
        route = route_name(request)
        started = time.perf_counter()
        status = 500
        try:
            if len(request.raw_path) > longest and route not in long_ok:
                metrics.malformed_requests.labels("target_too_long").inc()
                response: web.StreamResponse = web.Response(
                    status=414, text="request target too long"
                )
            else:
                response = await handler(request if believe is None else believe(request))
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except RedisError as exc:  # the hot paths degrade by themselves; the admin routes
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

    return observe
