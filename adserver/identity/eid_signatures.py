"""A partner's `eid` vouched for by its publisher's server, pure: the signature publishers
compute and the check `/ad` and `/ad.js` make before an `eid` may personalise an ad.

An e-mail's hash is no secret: anyone who knows (or guesses) an address computes it. So on
`/ad` and `/ad.js`, which anyone can fetch, an `eid` counts only with a signature by the
registered publisher of the request (`pub=`), as UID2/EUID-style integrations do: the
publisher's server, which knows its logged-in reader, signs that reader's hash with its own
token (`KAERU_PUBLISHERS=pub:TOKEN`) for a short while:

    eid_sig = hex(HMAC-SHA256(key = TOKEN, message = f"{pub}\\n{eid}\\n{eid_exp}"))
    eid_exp = unix seconds, in the future, at most `MAX_AHEAD_SECONDS` ahead

(UTF-8 throughout; `eid_exp` in decimal without leading zeros). `/ad.json` does not need
it: there the publisher's own bearer token speaks for the request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

# How far ahead a signature may expire: a publisher signs for its reader's visit, not for good
# (a signature read from a page is worth little for long).
MAX_AHEAD_SECONDS = 86400
SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]{64}\Z")
EXPIRY_PATTERN = re.compile(r"^[1-9][0-9]{0,11}\Z")  # unix seconds, no sign, no leading zero

# Why an eid was not used (the label of kaeru_eids_refused_total).
Refusal = Literal["unsigned", "unregistered_publisher", "expired", "too_far_ahead", "bad_signature"]
REFUSALS: tuple[Refusal, ...] = (
    "unsigned",
    "unregistered_publisher",
    "expired",
    "too_far_ahead",
    "bad_signature",
)


@dataclass(frozen=True, slots=True)
class EidSignature:
    """`eid_sig` and `eid_exp` as an ad request sent them, well-formed (`parse_signature`)."""

    signature: str
    expiry: int


@dataclass(frozen=True, slots=True)
class MalformedSignature:
    """`eid_sig` or `eid_exp` present but not as a publisher's server computes them."""

    reason: str
    message: str


def _message(publisher: str, eid: str, expiry: int) -> bytes:
    return f"{publisher}\n{eid}\n{expiry}".encode()


def sign_eid(token: str, publisher: str, eid: str, expiry: int) -> str:
    """The publisher's signature of its reader's hashed e-mail `eid` until `expiry` (unix
    seconds): what a publisher's server computes (and tests, and the demo's partner)."""
    return hmac.new(token.encode(), _message(publisher, eid, expiry), hashlib.sha256).hexdigest()


def parse_signature(
    signature: str | None, expiry: str | None
) -> EidSignature | MalformedSignature | None:
    """The query's `eid_sig` and `eid_exp`: None when both are absent (an unsigned eid)."""
    if not signature and not expiry:
        return None
    if not signature or not expiry:
        return MalformedSignature(
            "bad_eid_signature", "eid_sig and eid_exp go together (see the README: signed eid)"
        )
    if not SIGNATURE_PATTERN.match(signature):
        return MalformedSignature(
            "bad_eid_signature", "eid_sig must be the HMAC-SHA256 hex (64 lowercase) of the eid"
        )
    if not EXPIRY_PATTERN.match(expiry):
        return MalformedSignature("bad_eid_expiry", "eid_exp must be unix seconds")
    return EidSignature(signature, int(expiry))


def refusal(
    token: str | None,
    publisher: str,
    eid: str,
    signed: EidSignature | None,
    now: float,
) -> Refusal | None:
    """Why this eid may not personalise the ad of `publisher` (whose token is `token`, None
    when it is not registered), or None when its signature is that publisher's, unexpired and
    not too far ahead. The signatures are compared in constant time."""
    if signed is None:
        return "unsigned"
    if token is None:
        return "unregistered_publisher"
    if signed.expiry < now:
        return "expired"
    if signed.expiry > now + MAX_AHEAD_SECONDS:
        return "too_far_ahead"
    expected = sign_eid(token, publisher, eid, signed.expiry)
    if not hmac.compare_digest(expected, signed.signature):
        return "bad_signature"
    return None
