"""Identifiers beyond the uid cookie, pure: their validation at the edge and the keyed hashes
Kaeru stores in their place (the raw values are never stored, logged or counted).

- `fpid`: the shop tag's first-party id (`pixel/static/tag.js`, cookie `_kaeru_fp` on the
  shop's own site): 128 random bits, URL-safe base64 (22 characters). Per advertiser.
- `email_sha256`: SHA-256 hex (64 lowercase hex digits) of the trimmed, lowercased e-mail
  address, the normalisation Google Enhanced Conversions and Meta's Conversions API use (the
  tag hashes in the browser; partners pass the same as `eid=` on ad requests). Global: the same
  e-mail links a shopper across shops and to partners.
- `customer_id`: the shop's own customer number, 1-128 printable characters. Per advertiser, so
  it links nothing across advertisers.

Each is stored as a `Identifier` token: a kind letter and an HMAC-SHA256 (key derived from
the Kaeru secret with HKDF, one key per kind) truncated to 16 bytes, URL-safe base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FPID_COOKIE = "_kaeru_fp"  # the tag's first-party cookie on the shop's site
FPID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}\Z")
EMAIL_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}\Z")
CUSTOMER_ID_PATTERN = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}\Z")  # printable ASCII
HASH_BYTES = 16
KEY_INFO = "kaeru identity link v1: "

IdentifierKind = Literal["fpid", "email", "customer"]
_LETTER: dict[IdentifierKind, str] = {"fpid": "f", "email": "e", "customer": "c"}


@dataclass(frozen=True, slots=True)
class Identify:
    """An `identify` event of a tag batch: the shopper told the shop who they are. Carries one
    of `email_sha256` (validated hex) or `customer_id` (validated), never a raw e-mail.
    `email_signature`: the shop's `(sig_exp, email_sig)` sent with the hash, as parsed
    (`adserver.identity.email_signatures`); `email_vouched`: it was checked and is the shop's
    (only then is the e-mail kept for the shop's audiences)."""

    advertiser: str
    email_sha256: str | None = None
    customer_id: str | None = None
    email_signature: tuple[int, str] | None = None
    email_vouched: bool = False


def valid_fpid(raw: object) -> str | None:
    """The fpid if it is one the tag could have made, else None."""
    return raw if isinstance(raw, str) and FPID_PATTERN.match(raw) else None


def valid_email_sha256(raw: object) -> str | None:
    """A SHA-256 hex digest, lowercase (the normalisation partners use), else None."""
    return raw if isinstance(raw, str) and EMAIL_SHA256_PATTERN.match(raw) else None


def valid_customer_id(raw: object) -> str | None:
    """1-128 printable ASCII characters (not starting with a space), else None."""
    return raw if isinstance(raw, str) and CUSTOMER_ID_PATTERN.match(raw) else None


def email_sha256_of(email: str) -> str:
    """The partners' normalisation of an e-mail address (trim, lowercase, SHA-256 hex): what
    the tag computes in the browser (for tests and tools; Kaeru never receives the e-mail)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class IdentifierHasher:
    """Keyed hashes of identifiers, as stored: `<kind letter>.<16 bytes, URL-safe base64>`."""

    __slots__ = ("_keys",)

    def __init__(self, secret: bytes) -> None:
        self._keys = {
            kind: HKDF(SHA256(), 32, salt=None, info=(KEY_INFO + kind).encode()).derive(secret)
            for kind in _LETTER
        }

    def _token(self, kind: IdentifierKind, message: bytes) -> str:
        digest = hmac.new(self._keys[kind], message, hashlib.sha256).digest()[:HASH_BYTES]
        return _LETTER[kind] + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def fpid(self, advertiser: str, fpid: str) -> str:
        return self._token("fpid", f"{advertiser}\x00{fpid}".encode())

    def email(self, email_sha256: str) -> str:
        return self._token("email", email_sha256.encode())

    def customer(self, advertiser: str, customer_id: str) -> str:
        return self._token("customer", f"{advertiser}\x00{customer_id}".encode())

    def of_identify(self, event: Identify) -> str | None:
        if event.email_sha256 is not None:
            return self.email(event.email_sha256)
        if event.customer_id is not None:
            return self.customer(event.advertiser, event.customer_id)
        return None
