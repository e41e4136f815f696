"""Signed, expiring tokens for URLs Kaeru puts into creatives (clicks, rendered beacons).

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, purpose + payload))[:16 bytes]`.
The purpose is part of the MAC, so a token minted for one endpoint is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

MAC_BYTES = 16
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class InvalidToken:
    """Why a token was refused; `reason` is a metric label."""

    reason: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("signing secret is too short")
        self._secret = secret

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[
            :MAC_BYTES
        ]

    def sign(self, purpose: str, fields: list[object], now: float | None = None) -> str:
        """Sign `fields` (JSON-serialisable) with the issue time appended."""
        issued = int(time.time() if now is None else now)
        payload = orjson.dumps([*fields, issued])
        return f"{_b64encode(payload)}.{_b64encode(self._mac(purpose, payload))}"

    def verify(
        self, purpose: str, token: str, max_age_seconds: int, now: float | None = None
    ) -> list[object] | InvalidToken:
        """The signed fields (issue time removed), or why the token is refused."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            return InvalidToken("malformed")
        payload_text, mac_text = token.split(".")
        try:
            payload, mac = _b64decode(payload_text), _b64decode(mac_text)
        except (binascii.Error, ValueError):
            return InvalidToken("malformed")
        if _b64encode(payload) != payload_text or _b64encode(mac) != mac_text:
            # Unused low bits of the last character: the same token spelled differently,
            # which would count a replayed click twice.
            return InvalidToken("malformed")
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return InvalidToken("bad_signature")
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return InvalidToken("malformed")
        if not isinstance(fields, list) or not fields or not isinstance(fields[-1], int):
            return InvalidToken("malformed")
        age = (time.time() if now is None else now) - fields[-1]
        if age > max_age_seconds or age < -300:
            return InvalidToken("expired")
        return fields[:-1]
