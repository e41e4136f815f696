"""The HTTP edge: what Kaeru believes about a request before any handler sees it (trusted
proxies' forwarded headers, the public URL) and how requests aiohttp cannot parse are answered
and logged (quietly, without the client's address, counted)."""

from __future__ import annotations

from typing import Any

from adserver.http.edge.http_log import EdgeLog
from adserver.runtime.metrics import Metrics

# aiohttp refuses request lines over 8190 bytes before any route. Browsers send far longer
# URLs, and the pixel must answer its GIF to those (pixel: query_too_long), so the line limit
# is raised to this; beyond it aiohttp answers 400 itself (counted: line_too_long).
MAX_REQUEST_LINE = 64 * 1024
MAX_TARGET = 8190  # ... what every route but the pixel still refuses (with a 414)
LONG_TARGET_ROUTES = frozenset(("/px",))


def edge_handler_args(metrics: Metrics) -> dict[str, Any]:
    """aiohttp's per-connection settings (`web.Application(handler_args=…)`): the quiet,
    counting server log, no access log (it would log addresses) and the longer request line."""
    return {"logger": EdgeLog(metrics), "access_log": None, "max_line_size": MAX_REQUEST_LINE}
