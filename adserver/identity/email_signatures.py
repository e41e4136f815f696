"""A shopper's hashed e-mail vouched for by the shop's server, pure: the signature a shop puts
on its logged-in pages next to `identify`, and the check `/e` makes before it keeps that
e-mail for the shop's e-mail audiences.

Anyone can send `identify` with anyone's hashed e-mail from the shop's pages (the hash is no
secret), so a bare hash only links for ads, as before; the shop's audiences (who gets its
abandonment e-mails, with what) take a hash only with a signature by that shop's server, which
knows its logged-in customer. The key is the advertiser's own API token
(`KAERU_ADVERTISERS=shop1:TOKEN`, checked at start-up: at least 16 characters), as a publisher
signs its `eid` with its token (`adserver.identity.eid_signatures`):

    email_sig = hex(HMAC-SHA256(key = TOKEN,
                                message = f"identify\\n{advertiser}\\n{email_sha256}\\n{sig_exp}"))
    sig_exp   = unix seconds, in the future, at most `MAX_AHEAD_SECONDS` ahead

(UTF-8 throughout; `sig_exp` in decimal without leading zeros; the `identify` line keeps an
`eid` signature from ever passing for this one.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from adserver.identity.eid_signatures import EXPIRY_PATTERN, MAX_AHEAD_SECONDS, SIGNATURE_PATTERN
from adserver.identity.identifiers import Identify

__all__ = [
    "MAX_AHEAD_SECONDS",
    "REFUSALS",
    "Refusal",
    "parse_email_signature",
    "refusal",
    "sign_email",
    "vouched",
]

# Why an identify's e-mail was not kept for the shop's audiences (the label of
# kaeru_email_sigs_refused_total); the identify still links for ads.
Refusal = Literal["unsigned", "bad_email_sig", "expired", "too_far_ahead"]
REFUSALS: tuple[Refusal, ...] = ("unsigned", "bad_email_sig", "expired", "too_far_ahead")
MALFORMED = (-1, "")  # what parse_email_signature makes of a malformed email_sig or sig_exp


def _message(advertiser: str, email_sha256: str, expiry: int) -> bytes:
    return f"identify\n{advertiser}\n{email_sha256}\n{expiry}".encode()


def sign_email(token: str, advertiser: str, email_sha256: str, expiry: int) -> str:
    """The shop's signature of its logged-in customer's hashed e-mail until `expiry` (unix
    seconds): what the shop's server computes (and tests, and the demo shop)."""
    message = _message(advertiser, email_sha256, expiry)
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def parse_email_signature(signature: object, expiry: object) -> tuple[int, str] | None:
    """An identify's `email_sig` and `sig_exp` as sent: None when both are absent (unsigned),
    `(expiry, signature)` when well-formed, `MALFORMED` otherwise (refused as a bad
    signature: never a reason to drop the identify)."""
    if signature is None and expiry is None:
        return None
    if isinstance(expiry, int) and not isinstance(expiry, bool):
        expiry = str(expiry)
    if not isinstance(signature, str) or not isinstance(expiry, str):
        return MALFORMED
    if not SIGNATURE_PATTERN.match(signature) or not EXPIRY_PATTERN.match(expiry):
        return MALFORMED
    return int(expiry), signature


def refusal(token: str | None, identify: Identify, now: float) -> Refusal | None:
    """Why this identify's e-mail may not join its shop's audiences (`token`: the
    advertiser's, None when it has none), or None when its signature is that shop's, for that
    hash, unexpired and not too far ahead. The signatures are compared in constant time."""
    if identify.email_signature is None:
        return "unsigned"
    expiry, signature = identify.email_signature
    if token is None or (expiry, signature) == MALFORMED:
        return "bad_email_sig"
    if expiry < now:
        return "expired"
    if expiry > now + MAX_AHEAD_SECONDS:
        return "too_far_ahead"
    assert identify.email_sha256 is not None
    expected = sign_email(token, identify.advertiser, identify.email_sha256, expiry)
    if not hmac.compare_digest(expected, signature):
        return "bad_email_sig"
    return None


def vouched(
    identify: Identify, tokens: Mapping[str, str], now: float
) -> tuple[Identify, Refusal | None]:
    """The identify with `email_vouched` set when its shop signed its e-mail, and why not
    otherwise (None for a customer id, which audiences never take)."""
    if identify.email_sha256 is None:
        return identify, None
    refused = refusal(tokens.get(identify.advertiser), identify, now)
    return replace(identify, email_vouched=refused is None), refused
