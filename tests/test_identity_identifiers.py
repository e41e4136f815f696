"""The pure part of identity links: validation at the edge, keyed hashes, the settings."""

from __future__ import annotations

import pytest

from adserver.config.settings import Settings, SettingsError
from adserver.identity.identifiers import (
    IdentifierHasher,
    Identify,
    email_sha256_of,
    valid_customer_id,
    valid_email_sha256,
    valid_fpid,
)
from pixel.events import Batch, parse_batch

SECRET = b"test-secret-0123456789-0123456789-abcdef"
HEX = email_sha256_of("ana@example.com")


def test_email_normalisation_is_trim_lowercase_sha256_hex() -> None:
    # SHA-256 of "ana@example.com" (`printf %s ana@example.com | sha256sum`).
    assert email_sha256_of("  Ana@Example.COM\t") == email_sha256_of("ana@example.com")
    assert HEX == "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11"


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (
            valid_fpid,
            ["AbCdEfGhIjKlMnOpQrSt_-"],
            ["", "A" * 21, "A" * 23, "AbCdEfGhIjKlMnOpQrSt+/", 7],
        ),
        (valid_email_sha256, [HEX], [HEX.upper(), HEX[:-1], HEX + "0", "g" * 64, None]),
        (valid_customer_id, ["C-1", "x" * 128, "a b"], ["", " a", "x" * 129, "é", "a\nb", 12]),
    ],
)
def test_identifiers_are_validated(check: object, good: list[object], bad: list[object]) -> None:
    assert callable(check)
    assert [check(value) for value in good] == good
    assert [check(value) for value in bad] == [None] * len(bad)


def test_keyed_hashes_are_stable_keyed_and_scoped() -> None:
    hasher, other = IdentifierHasher(SECRET), IdentifierHasher(SECRET[::-1])
    assert hasher.email(HEX) == IdentifierHasher(SECRET).email(HEX)  # every process agrees
    assert hasher.email(HEX) != other.email(HEX)  # keyed: the secret matters
    assert hasher.customer("shop1", "C-1") != hasher.customer("shop2", "C-1")  # per advertiser
    assert hasher.fpid("shop1", "A" * 22) != hasher.fpid("shop2", "A" * 22)
    token = hasher.email(HEX)
    assert token.startswith("e.") and len(token) == 2 + 22 and HEX not in token
    assert hasher.of_identify(Identify("shop1", customer_id="C-1")) == hasher.customer(
        "shop1", "C-1"
    )


def test_a_batch_carries_its_fpid_and_identify_events() -> None:
    body = (
        b'{"fpid": "AbCdEfGhIjKlMnOpQrSt_-", "events": ['
        b'{"advertiser": "shop1", "event": "identify", "email_sha256": "' + HEX.encode() + b'"},'
        b'{"advertiser": "shop1", "event": "identify", "customer_id": "C-1"},'
        b'{"advertiser": "shop1", "event": "identify", "email": "ana@example.com"},'
        b'{"advertiser": "nobody", "event": "identify", "customer_id": "C-1"},'
        b'{"advertiser": "shop1", "event": "view", "item": "a"}]}'
    )
    batch = parse_batch(body, ["shop1"])
    assert isinstance(batch, Batch)
    assert batch.fpid == "AbCdEfGhIjKlMnOpQrSt_-" and not batch.bad_fpid
    kinds = [type(e).__name__ for e in batch.events]
    assert kinds == ["Identify", "Identify", "Reject", "Reject", "ShopperEvent"]
    reasons = [getattr(e, "reason", None) for e in batch.events]
    assert reasons[2:4] == ["missing_identifier", "unknown_advertiser"]  # a raw e-mail: refused
    bad = parse_batch(
        b'{"fpid": "nope", "events": [{"advertiser": "shop1", "event": "home"}]}', ["shop1"]
    )
    assert isinstance(bad, Batch) and bad.fpid is None and bad.bad_fpid


@pytest.mark.parametrize("name", ["KAERU_UIDS_PER_IDENTIFIER", "KAERU_IDENTIFIERS_PER_UID"])
def test_the_bounds_are_settings_checked_at_start_up(name: str) -> None:
    assert Settings.from_env({name: "7"}).__getattribute__(name[6:].lower()) == 7
    for bad in ("0", "101", "many"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})
    defaults = Settings.from_env({})
    assert (defaults.uids_per_identifier, defaults.identifiers_per_uid) == (5, 10)
