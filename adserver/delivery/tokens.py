"""Opaque, expiring tokens for URLs Kaeru puts into creatives (clicks, rendered beacons).

A token is `base64url(nonce || AES-SIV(key[purpose], fields + [issued], ad=nonce))`: the
fields are encrypted and authenticated, so whoever sees a link (a partner page, an exchange, a
proxy log) learns nothing of the shopper's strategy or products, and any change to it fails the
authentication. `key[purpose]` is derived from the secret with HKDF per purpose, so a token
minted for one endpoint is refused by another. AES-SIV stays safe if two random nonces ever
collide (it would only show that two tokens hold the same fields), so the nonce can be short.
Fields are packed compactly (`_pack`): a click link is shorter than the signed JSON it replaced.
Tokens minted before (readable JSON with an HMAC) are still accepted until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 8
TAG_BYTES = 16  # AES-SIV's synthetic IV, which is also its authentication tag
KEY_BYTES = 64  # AES-256-SIV
MAX_TOKEN_LENGTH = 4096
LEGACY_MAC_BYTES = 16
FUTURE_SKEW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class InvalidToken:
    """Why a token was refused; `reason` is a metric label."""

    reason: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64encode(data: bytes) -> str:
    """`data` in base64url without padding, as tokens are spelled."""
    return _b64encode(data)


def canonical_b64decode(text: str) -> bytes | None:
    """The bytes `b64encode` spells as `text`, or None for any other spelling."""
    return _canonical_b64decode(text)


def _canonical_b64decode(text: str) -> bytes | None:
    """The bytes, or None unless `text` is exactly how `_b64encode` spells them: a lax
    decoder ignores stray characters and the unused low bits of the last one, which would
    let the same token be spelled differently (and a replayed click count twice)."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64encode(data) == text else None


# -- packing: each field is a varint header `length_or_value << 2 | kind`, then its bytes -------
_STR, _INT, _NEG, _JSON = range(4)
_SMALL = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pack(fields: list[object]) -> bytes:
    out = bytearray()
    for field in fields:
        if type(field) is str:
            data = field.encode()
            out += _varint(len(data) << 2 | _STR) + data
        elif isinstance(field, int) and not isinstance(field, bool):
            out += _varint(field << 2 | _INT if field >= 0 else (-field - 1) << 2 | _NEG)
        else:
            data = orjson.dumps(field)
            out += _varint(len(data) << 2 | _JSON) + data
    return bytes(out)


def pack(fields: list[object]) -> bytes:
    """`fields` packed as a token carries them: the packing of a list is the packings of its
    parts one after the other, so a prefix several tokens share is packed once (`Signer.seal`)."""
    return _pack(fields)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]  # IndexError when truncated
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def _unpack(data: bytes) -> list[object] | None:
    fields: list[object] = []
    at = 0
    try:
        while at < len(data):
            header, at = _read_varint(data, at)
            kind, size = header & 3, header >> 2
            if kind == _INT:
                fields.append(size)
            elif kind == _NEG:
                fields.append(-size - 1)
            else:
                chunk, at = data[at : at + size], at + size
                if len(chunk) != size:
                    return None
                fields.append(chunk.decode() if kind == _STR else orjson.loads(chunk))
    except (IndexError, UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    return fields


class Signer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("signing secret is too short")
        self._secret = secret
        self._ciphers: dict[str, AESSIV] = {}
        self._mac_keys: dict[str, bytes] = {}

    def _cipher(self, purpose: str) -> AESSIV:
        cipher = self._ciphers.get(purpose)
        if cipher is None:
            info = b"kaeru token v1\0" + purpose.encode()
            key = HKDF(SHA256(), KEY_BYTES, salt=None, info=info).derive(self._secret)
            cipher = self._ciphers[purpose] = AESSIV(key)
        return cipher

    def mac(self, purpose: str, message: bytes, size: int) -> bytes:
        """The first `size` bytes of HMAC-SHA256 over `message` with a key derived for
        `purpose` (distinct from every token key): names a part of a sealed token, such as
        one link of an ad's (`adserver.delivery.served_ad`). Compare with `hmac.compare_digest`."""
        key = self._mac_keys.get(purpose)
        if key is None:
            info = b"kaeru mac v1\0" + purpose.encode()
            key = HKDF(SHA256(), 32, salt=None, info=info).derive(self._secret)
            self._mac_keys[purpose] = key
        return hmac.digest(key, message, "sha256")[:size]

    def sign(self, purpose: str, fields: list[object], now: float | None = None) -> str:
        """Seal `fields` (strings, ints or anything JSON-serialisable) with the issue time."""
        issued = int(time.time() if now is None else now)
        return self.seal(purpose, _pack(fields), issued)

    def seal(self, purpose: str, packed: bytes, issued: int, nonce: bytes | None = None) -> str:
        """`sign` of fields already packed (`pack`), issued at `issued` (unix seconds, >= 0):
        the same token. `nonce`: NONCE_BYTES fresh random bytes (several tokens minted at once
        may take theirs from one `secrets.token_bytes` call), else drawn here."""
        if nonce is None:
            nonce = secrets.token_bytes(NONCE_BYTES)
        elif len(nonce) != NONCE_BYTES:
            raise ValueError("nonce must be NONCE_BYTES long")
        plain = packed + _varint(issued << 2 | _INT)
        return _b64encode(nonce + self._cipher(purpose).encrypt(plain, [nonce]))

    def verify(
        self, purpose: str, token: str, max_age_seconds: int, now: float | None = None
    ) -> list[object] | InvalidToken:
        """The sealed fields (issue time removed), or why the token is refused."""
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return InvalidToken("malformed")
        fields = self._open_legacy(purpose, token) if "." in token else self._open(purpose, token)
        if isinstance(fields, InvalidToken):
            return fields
        if not fields or not isinstance(fields[-1], int) or isinstance(fields[-1], bool):
            return InvalidToken("malformed")
        age = (time.time() if now is None else now) - fields[-1]
        if age > max_age_seconds or age < -FUTURE_SKEW_SECONDS:
            return InvalidToken("expired")
        return fields[:-1]

    def _open(self, purpose: str, token: str) -> list[object] | InvalidToken:
        data = _canonical_b64decode(token)
        if data is None or len(data) <= NONCE_BYTES + TAG_BYTES:
            return InvalidToken("malformed")
        nonce, sealed = data[:NONCE_BYTES], data[NONCE_BYTES:]
        try:
            plain = self._cipher(purpose).decrypt(sealed, [nonce])
        except InvalidTag:
            return InvalidToken("bad_signature")
        return _unpack(plain) or InvalidToken("malformed")

    def _open_legacy(self, purpose: str, token: str) -> list[object] | InvalidToken:
        """A token minted before tokens were encrypted, `base64url(JSON) "." base64url(
        HMAC-SHA256(secret, purpose NUL JSON)[:16])`: links already out in creatives keep
        working until they expire (KAERU_CLICK_TTL_DAYS after the upgrade); none is minted."""
        if token.count(".") != 1:
            return InvalidToken("malformed")
        payload_text, mac_text = token.split(".")
        payload, mac = _canonical_b64decode(payload_text), _canonical_b64decode(mac_text)
        if payload is None or mac is None:
            return InvalidToken("malformed")
        message = purpose.encode() + b"\0" + payload
        expected = hmac.new(self._secret, message, hashlib.sha256).digest()[:LEGACY_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return InvalidToken("bad_signature")
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return InvalidToken("malformed")
        return fields if isinstance(fields, list) else InvalidToken("malformed")
