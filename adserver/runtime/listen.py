"""The server's listening sockets, opened before anything else starts.

`kaeru serve` binds its port first, so a port someone else holds is reported at once, by
address, before the embedded Redis, the catalog cache or the learner have started (and have to
be stopped again). aiohttp then serves on these sockets.
"""

from __future__ import annotations

import socket

BACKLOG = 128  # aiohttp's default


class ListenError(RuntimeError):
    """The server cannot listen where it was told to; the message names the address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port = host, port
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {where}: {reason}")


def open_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for every address `host` names (as asyncio's create_server would
    open them); `reuse_port` for one of several processes sharing the port."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(host, port, f"unknown host ({exc.strerror})") from None
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in found))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sockets.append(_listener(host, port, family, address, reuse_port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listener(
    host: str, port: int, family: int, address: tuple[object, ...], reuse_port: bool
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, _reason(exc)) from None
    sock.setblocking(False)
    return sock


def _reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]
