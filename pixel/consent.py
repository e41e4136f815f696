"""IAB TCF v2 (v2.2) consent: decode the core segment of a TC string, and decide whether a
request under GDPR may be used for personalised ads.

Only the core segment (the first of the "."-separated segments) is decoded, up to and including
the vendor legitimate-interest section; publisher restrictions and the other segments are not
needed here. Anything malformed raises `ConsentError`, and `may_personalise` treats that as "no
consent" (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_TC_STRING_LENGTH = 10_000
MAX_VENDOR_ID = 100_000  # sanity cap; MaxVendorId is a 16-bit field, so at most 65_535 anyway
TCF_VERSION = 2
REQUIRED_PURPOSES = frozenset({1, 3, 4})  # store/access, build ads profile, select personalised ads
_NO_GDPR = frozenset({"0", ""})

# Every segment is base64url without padding; segments are joined with ".".
_TC_STRING = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Each character carries 6 bits. Decoding character by character (rather than into whole bytes)
# keeps the trailing bits of encoders that pad only to a 6-bit boundary.
_SEXTETS = {char: f"{index:06b}" for index, char in enumerate(_BASE64URL)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Core segment, bit widths in order (TCF v2 "TC String" spec).
_VERSION = 6
_TIMESTAMP = 36  # deciseconds since the Unix epoch
_CMP_ID = 12
_CMP_VERSION = 12
_CONSENT_SCREEN = 6
_LETTER = 6  # 'a'..'z' as 0..25; languages and country codes are two letters
_VENDOR_LIST_VERSION = 12
_POLICY_VERSION = 6
_SPECIAL_FEATURES = 12
_PURPOSES = 24
_VENDOR_ID = 16
_NUM_ENTRIES = 12


class ConsentError(ValueError):
    """The TC string is missing, garbled, truncated or not TCF v2."""


@dataclass(frozen=True, slots=True)
class TCData:
    version: int
    cmp_id: int
    vendor_list_version: int
    tcf_policy_version: int
    purposes_consent: frozenset[int]
    purposes_li: frozenset[int]
    vendor_consents: frozenset[int]
    created: datetime
    last_updated: datetime
    cmp_version: int
    consent_screen: int
    consent_language: str  # two upper-case letters, e.g. "EN"
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_opt_ins: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str  # two upper-case letters, e.g. "DE"
    max_vendor_id: int  # of the vendor consent section
    vendor_li: frozenset[int]


class _Bits:
    """Big-endian bit reader over a base64url segment; reading past the end raises
    ConsentError. The segment must already be known to hold only base64url characters."""

    __slots__ = ("_bits", "_pos")

    def __init__(self, segment: str) -> None:
        self._bits = "".join(_SEXTETS[char] for char in segment)
        self._pos = 0

    def take(self, n: int, what: str) -> str:
        end = self._pos + n
        if end > len(self._bits):
            raise ConsentError(f"truncated TC string: {what}")
        chunk = self._bits[self._pos : end]
        self._pos = end
        return chunk

    def read_int(self, n: int, what: str) -> int:
        return int(self.take(n, what), 2)

    def read_bool(self, what: str) -> bool:
        return self.take(1, what) == "1"

    def flags(self, n: int, what: str) -> frozenset[int]:
        """An n-bit field where bit i (from the left, 1-based) set means id i is in the set."""
        return frozenset(i for i, bit in enumerate(self.take(n, what), start=1) if bit == "1")

    def letters(self, what: str) -> str:
        first, second = self.read_int(_LETTER, what), self.read_int(_LETTER, what)
        if first > 25 or second > 25:
            raise ConsentError(f"bad letter code in {what}")
        return chr(ord("A") + first) + chr(ord("A") + second)

    def timestamp(self, what: str) -> datetime:
        return _EPOCH + timedelta(milliseconds=100 * self.read_int(_TIMESTAMP, what))


def _vendor_section(bits: _Bits, what: str) -> tuple[int, frozenset[int]]:
    """MaxVendorId, then a bitfield or a list of ids and ranges; returns (max id, vendor ids)."""
    max_vendor_id = bits.read_int(_VENDOR_ID, what)
    if max_vendor_id > MAX_VENDOR_ID:  # pragma: no cover - unreachable with a 16-bit field
        raise ConsentError(f"absurd MaxVendorId in {what}")
    if not bits.read_bool(what):
        return max_vendor_id, bits.flags(max_vendor_id, what)
    ranges: list[tuple[int, int]] = []
    for _ in range(bits.read_int(_NUM_ENTRIES, what)):
        is_range = bits.read_bool(what)
        start = bits.read_int(_VENDOR_ID, what)
        end = bits.read_int(_VENDOR_ID, what) if is_range else start
        if not 1 <= start <= end <= max_vendor_id:
            raise ConsentError(f"bad vendor range {start}-{end} in {what}")
        ranges.append((start, end))
    # Merge overlapping ranges first, so the set costs at most MaxVendorId insertions however
    # many (overlapping) entries the string repeats.
    vendors: set[int] = set()
    covered = 0  # every id <= covered is already in `vendors`
    for start, end in sorted(ranges):
        if end > covered:
            vendors.update(range(max(start, covered + 1), end + 1))
            covered = end
    return max_vendor_id, frozenset(vendors)


def decode_tc_string(tc: str) -> TCData:
    """Decode the core segment of a TCF v2 TC string; raise ConsentError if it is malformed."""
    if len(tc) > MAX_TC_STRING_LENGTH:
        raise ConsentError("TC string too long")
    if not _TC_STRING.fullmatch(tc):
        raise ConsentError("not a base64url TC string")
    bits = _Bits(tc.split(".", 1)[0])
    version = bits.read_int(_VERSION, "version")
    if version != TCF_VERSION:
        raise ConsentError(f"unsupported TCF version {version}")
    created = bits.timestamp("created")
    last_updated = bits.timestamp("last updated")
    cmp_id = bits.read_int(_CMP_ID, "CMP id")
    cmp_version = bits.read_int(_CMP_VERSION, "CMP version")
    consent_screen = bits.read_int(_CONSENT_SCREEN, "consent screen")
    consent_language = bits.letters("consent language")
    vendor_list_version = bits.read_int(_VENDOR_LIST_VERSION, "vendor list version")
    tcf_policy_version = bits.read_int(_POLICY_VERSION, "policy version")
    is_service_specific = bits.read_bool("service specific")
    use_non_standard_texts = bits.read_bool("non-standard texts")
    special_feature_opt_ins = bits.flags(_SPECIAL_FEATURES, "special features")
    purposes_consent = bits.flags(_PURPOSES, "purposes consent")
    purposes_li = bits.flags(_PURPOSES, "purposes legitimate interest")
    purpose_one_treatment = bits.read_bool("purpose one treatment")
    publisher_cc = bits.letters("publisher country")
    max_vendor_id, vendor_consents = _vendor_section(bits, "vendor consents")
    _, vendor_li = _vendor_section(bits, "vendor legitimate interests")
    return TCData(
        version=version,
        cmp_id=cmp_id,
        vendor_list_version=vendor_list_version,
        tcf_policy_version=tcf_policy_version,
        purposes_consent=purposes_consent,
        purposes_li=purposes_li,
        vendor_consents=vendor_consents,
        created=created,
        last_updated=last_updated,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        is_service_specific=is_service_specific,
        use_non_standard_texts=use_non_standard_texts,
        special_feature_opt_ins=special_feature_opt_ins,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
        max_vendor_id=max_vendor_id,
        vendor_li=vendor_li,
    )


def may_personalise(gdpr: str | None, tc: str | None, vendor_id: int | None = None) -> bool:
    """May this request get personalised ads?

    `gdpr` is the request's `gdpr` parameter: "0", "" or None mean GDPR does not apply, so no
    consent is needed. Anything else (including unexpected values) means it applies, and then the
    TC string must decode and grant consent for purposes 1, 3 and 4, and, if `vendor_id` is given,
    that vendor must have consent too. Never raises.
    """
    if gdpr is None or gdpr in _NO_GDPR:
        return True
    if not tc:
        return False
    try:
        data = decode_tc_string(tc)
    except ConsentError:
        return False
    if not REQUIRED_PURPOSES <= data.purposes_consent:
        return False
    return vendor_id is None or vendor_id in data.vendor_consents
