"""IAB TCF v2 (v2.2) consent: decode a TC string, and decide whether a request under GDPR may
be used for personalised ads.

The core segment (the first of the "."-separated segments) is decoded whole, publisher
restrictions included; every segment after it (disclosed vendors, allowed vendors, publisher TC)
must carry a known segment type and decode fully, as the IAB's reference decoder
(`@iabtcf/core`) requires. Anything malformed raises `ConsentError`, and `may_personalise`
treats that as "no consent" (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain

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
_NUM_PUB_RESTRICTIONS = 12
_PURPOSE_ID = 6
_RESTRICTION_TYPE = 2
_SEGMENT_TYPE = 3
_NUM_CUSTOM_PURPOSES = 6

# Publisher restriction types (TCF v2 "PublisherRestrictions" section); 3 is undefined.
NOT_ALLOWED, REQUIRE_CONSENT, REQUIRE_LI = 0, 1, 2
# Segment types after the core segment.
DISCLOSED_VENDORS, ALLOWED_VENDORS, PUBLISHER_TC = 1, 2, 3


class ConsentError(ValueError):
    """The TC string is missing, garbled, truncated or not TCF v2."""


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """The publisher restricts `purpose_id` to `restriction_type` (NOT_ALLOWED, REQUIRE_CONSENT
    or REQUIRE_LI) for the vendors in `vendor_ranges` (inclusive, merged and sorted)."""

    purpose_id: int
    restriction_type: int
    vendor_ranges: tuple[tuple[int, int], ...]

    def covers(self, vendor_id: int) -> bool:
        return any(start <= vendor_id <= end for start, end in self.vendor_ranges)


@dataclass(frozen=True, slots=True)
class PublisherTC:
    """The optional publisher TC segment: the publisher's own purposes and custom purposes."""

    purposes_consent: frozenset[int]
    purposes_li: frozenset[int]
    num_custom_purposes: int
    custom_purposes_consent: frozenset[int]
    custom_purposes_li: frozenset[int]


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
    publisher_restrictions: tuple[PublisherRestriction, ...] = ()
    vendors_disclosed: frozenset[int] | None = None  # None: no disclosed-vendors segment
    vendors_allowed: frozenset[int] | None = None  # None: no allowed-vendors segment
    publisher_tc: PublisherTC | None = None


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


def _range_entries(bits: _Bits, what: str, max_vendor_id: int) -> list[tuple[int, int]]:
    """NumEntries, then that many single ids or (start, end) ranges, each within 1..max."""
    ranges: list[tuple[int, int]] = []
    for _ in range(bits.read_int(_NUM_ENTRIES, what)):
        is_range = bits.read_bool(what)
        start = bits.read_int(_VENDOR_ID, what)
        end = bits.read_int(_VENDOR_ID, what) if is_range else start
        if not 1 <= start <= end <= max_vendor_id:
            raise ConsentError(f"bad vendor range {start}-{end} in {what}")
        ranges.append((start, end))
    return ranges


def _merged(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Overlapping or adjacent ranges merged, sorted: at most 65_535 ids however many entries."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def _vendor_section(bits: _Bits, what: str) -> tuple[int, frozenset[int]]:
    """MaxVendorId, then a bitfield or a list of ids and ranges; returns (max id, vendor ids)."""
    max_vendor_id = bits.read_int(_VENDOR_ID, what)
    if max_vendor_id > MAX_VENDOR_ID:  # pragma: no cover - unreachable with a 16-bit field
        raise ConsentError(f"absurd MaxVendorId in {what}")
    if not bits.read_bool(what):
        return max_vendor_id, bits.flags(max_vendor_id, what)
    # Merging first keeps the set at most MaxVendorId insertions however many (overlapping)
    # entries the string repeats.
    ranges = _merged(_range_entries(bits, what, max_vendor_id))
    ids = chain.from_iterable(range(start, end + 1) for start, end in ranges)  # ~3x a genexpr
    return max_vendor_id, frozenset(ids)


def _publisher_restrictions(bits: _Bits) -> tuple[PublisherRestriction, ...]:
    """NumPubRestrictions, then per restriction: PurposeId, RestrictionType and vendor ranges.
    Purpose 0 and the undefined restriction type 3 are refused, as the reference decoder does;
    entries for the same purpose and type are one restriction (their vendor ranges merged)."""
    what = "publisher restrictions"
    ranges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for _ in range(bits.read_int(_NUM_PUB_RESTRICTIONS, what)):
        purpose_id = bits.read_int(_PURPOSE_ID, what)
        restriction_type = bits.read_int(_RESTRICTION_TYPE, what)
        if purpose_id == 0 or restriction_type not in (NOT_ALLOWED, REQUIRE_CONSENT, REQUIRE_LI):
            raise ConsentError(f"bad restriction {purpose_id}/{restriction_type} in {what}")
        entries = _range_entries(bits, what, 65_535)
        ranges.setdefault((purpose_id, restriction_type), []).extend(entries)
    return tuple(
        PublisherRestriction(purpose_id, restriction_type, _merged(entries))
        for (purpose_id, restriction_type), entries in sorted(ranges.items())
    )


def _publisher_tc(bits: _Bits) -> PublisherTC:
    what = "publisher TC segment"
    purposes_consent = bits.flags(_PURPOSES, what)
    purposes_li = bits.flags(_PURPOSES, what)
    num_custom = bits.read_int(_NUM_CUSTOM_PURPOSES, what)
    return PublisherTC(
        purposes_consent=purposes_consent,
        purposes_li=purposes_li,
        num_custom_purposes=num_custom,
        custom_purposes_consent=bits.flags(num_custom, what),
        custom_purposes_li=bits.flags(num_custom, what),
    )


@dataclass(slots=True)
class _Segments:
    vendors_disclosed: frozenset[int] | None = None
    vendors_allowed: frozenset[int] | None = None
    publisher_tc: PublisherTC | None = None


def _other_segments(segments: list[str]) -> _Segments:
    """Decode every segment after the core one. A segment type other than 1-3 (0 would be a
    second core segment), or a segment that ends before its last field, makes the whole string
    invalid; trailing padding bits are ignored, as the reference decoder ignores them. Each
    type may come once: repeated, a few characters that name 65,535 vendors would be decoded
    hundreds of times per string (seconds of CPU), so a repeat makes the string invalid too."""
    found = _Segments()
    seen: set[int] = set()
    for segment in segments:
        bits = _Bits(segment)
        kind = bits.read_int(_SEGMENT_TYPE, "segment type")
        if kind in seen:
            raise ConsentError(f"segment type {kind} given twice")
        seen.add(kind)
        if kind == DISCLOSED_VENDORS:
            found.vendors_disclosed = _vendor_section(bits, "disclosed vendors")[1]
        elif kind == ALLOWED_VENDORS:
            found.vendors_allowed = _vendor_section(bits, "allowed vendors")[1]
        elif kind == PUBLISHER_TC:
            found.publisher_tc = _publisher_tc(bits)
        else:
            raise ConsentError(f"bad segment type {kind}")
    return found


def decode_tc_string(tc: str) -> TCData:
    """Decode a TCF v2 TC string, all its segments; raise ConsentError if any is malformed."""
    if len(tc) > MAX_TC_STRING_LENGTH:
        raise ConsentError("TC string too long")
    if not _TC_STRING.fullmatch(tc):
        raise ConsentError("not a base64url TC string")
    core, *others = tc.split(".")
    bits = _Bits(core)
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
    publisher_restrictions = _publisher_restrictions(bits)
    segments = _other_segments(others)
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
        publisher_restrictions=publisher_restrictions,
        vendors_disclosed=segments.vendors_disclosed,
        vendors_allowed=segments.vendors_allowed,
        publisher_tc=segments.publisher_tc,
    )


def may_personalise(gdpr: str | None, tc: str | None, vendor_id: int | None = None) -> bool:
    """May this request get personalised ads?

    `gdpr` is the request's `gdpr` parameter: "0", "" or None mean GDPR does not apply, so no
    consent is needed. Anything else (including unexpected values) means it applies, and then the
    TC string must decode (every segment) and grant consent for purposes 1, 3 and 4, and, if
    `vendor_id` is given, that vendor must have consent too and no publisher restriction may
    take one of those purposes from it (see `restricted`). Never raises.
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
    if vendor_id is None:
        return True
    return vendor_id in data.vendor_consents and not restricted(data, vendor_id)


def restricted(data: TCData, vendor_id: int) -> bool:
    """Does a publisher restriction stop `vendor_id` from using consent for a purpose Kaeru
    needs? "Not allowed" forbids the purpose outright, and "require legitimate interest" means
    consent may not be the legal basis (purpose 1 has no LI basis at all); "require consent"
    changes nothing, since Kaeru asks for consent anyway."""
    return any(
        restriction.purpose_id in REQUIRED_PURPOSES
        and restriction.restriction_type in (NOT_ALLOWED, REQUIRE_LI)
        and restriction.covers(vendor_id)
        for restriction in data.publisher_restrictions
    )
