"""aiohttp's server log, for requests it refuses before any route or middleware sees them.

aiohttp answers a request it cannot parse (raw bytes in the target, a request line over its
limit, a broken header) with a 400 itself, and logs "Error handling request from ADDRESS" with
a traceback at ERROR. It offers no hook to shape that answer (aio-libs/aiohttp#3287), but it
takes the logger as a handler argument: this one counts such a request in
`kaeru_malformed_requests_total{reason}` and notes it at DEBUG without address or traceback.
Anything else aiohttp logs goes on to the `aiohttp.server` logger, never with an address.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import http_exceptions

from adserver.runtime.metrics import Metrics

_REASONS: dict[type[BaseException], str] = {
    http_exceptions.InvalidURLError: "bad_target",
    http_exceptions.LineTooLong: "line_too_long",
    http_exceptions.BadHttpMethod: "bad_method",
    http_exceptions.BadStatusLine: "bad_request_line",
    http_exceptions.InvalidHeader: "bad_header",
    http_exceptions.TransferEncodingError: "bad_body",
    http_exceptions.ContentLengthError: "bad_body",
    http_exceptions.BadHttpMessage: "malformed",
}
_FROM_ADDRESS = " from %s"


def malformed_reason(exc: BaseException) -> str:
    """A bounded metric label for an error of aiohttp's HTTP parser."""
    for kind in type(exc).__mro__:
        if kind in _REASONS:
            return _REASONS[kind]
    return "malformed"


class EdgeLog(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, metrics: Metrics, logger: logging.Logger | None = None) -> None:
        super().__init__(logger or logging.getLogger("aiohttp.server"), {})
        self._metrics = metrics

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.endswith(_FROM_ADDRESS) and args:
            msg, args = msg[: -len(_FROM_ADDRESS)], args[:-1]  # the client's address: never
        error = kwargs.get("exc_info")
        if isinstance(error, http_exceptions.HttpProcessingError):
            reason = malformed_reason(error)
            self._metrics.malformed_requests.labels(reason).inc()
            self.logger.debug("refused a request aiohttp cannot parse (%s)", reason)
            return
        super().log(level, msg, *args, **kwargs)
