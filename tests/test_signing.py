"""Tokens: opaque to whoever sees them; forged, altered, expired or repurposed tokens are
refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from adserver.delivery.tokens import InvalidToken, Signer

SIGNER = Signer(b"k" * 32)
CLICK = ["shop1", "default", "news1", "cart", "300x250", "sku-1", "https://shop1.example/p/sku-1"]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def raw(token: str) -> bytes:
    """The token's bytes, decoded the way a curious partner page would."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_round_trip() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-1", "pub", "https://x.example/p"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1030) == [
        "shop1",
        "sku-1",
        "pub",
        "https://x.example/p",
    ]


def test_fields_of_every_json_type_round_trip() -> None:
    fields: list[object] = ["", "ünï €", 0, 7, -3, 2**40, True, None, 1.5, ["a", 1], {"k": "v"}]
    token = SIGNER.sign("render", fields, now=1000)
    assert SIGNER.verify("render", token, 60, now=1000) == fields


def test_token_reveals_neither_product_nor_strategy_nor_anything_else() -> None:
    token = SIGNER.sign("click", CLICK, now=1000)
    for needle in ("cart", "sku-1", "shop1", "news1", "300x250", "default", "example", "1000"):
        assert needle.encode() not in raw(token), needle
        assert needle not in token, needle


def test_the_same_fields_give_different_tokens() -> None:
    """Two ads showing the same product in the same second are not linkable by their links."""
    first, second = (SIGNER.sign("click", CLICK, now=1000) for _ in range(2))
    assert first != second
    assert SIGNER.verify("click", first, 60, now=1000) == CLICK
    assert SIGNER.verify("click", second, 60, now=1000) == CLICK


def test_a_click_token_is_shorter_than_the_signed_json_it_replaces() -> None:
    """Today's HMAC token for these fields was 154 characters; /ad carries several."""
    assert len(SIGNER.sign("click", CLICK, now=1_796_142_661)) <= 132


def test_altered_token_is_refused() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-1"], now=1000)
    for position in range(len(token) - 1):  # the last character has unused bits
        swapped = ALPHABET[ALPHABET.index(token[position]) ^ 1]
        altered = token[:position] + swapped + token[position + 1 :]
        assert SIGNER.verify("click", altered, 60, now=1000) == InvalidToken("bad_signature")
    for truncated in (token[:-4], token[4:], token[:30]):
        assert isinstance(SIGNER.verify("click", truncated, 60, now=1000), InvalidToken)


def test_token_from_another_key_is_refused() -> None:
    token = Signer(b"x" * 32).sign("click", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1000) == InvalidToken("bad_signature")


def test_token_for_another_purpose_is_refused() -> None:
    token = SIGNER.sign("render", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1000) == InvalidToken("bad_signature")


def test_expired_token_is_refused() -> None:
    token = SIGNER.sign("click", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1061) == InvalidToken("expired")
    assert SIGNER.verify("click", token, 60, now=600) == InvalidToken("expired")  # from the future


def test_garbage_is_malformed() -> None:
    for garbage in ("", "abc", "a.b.c", "%%%.%%%", "x" * 5000, "A" * 40, "é" * 40):
        assert isinstance(SIGNER.verify("click", garbage, 60), InvalidToken)


def test_a_token_respelled_in_its_unused_bits_is_refused() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-3"], now=1000)
    if len(raw(token)) % 3 == 0:  # no unused bits: make one with some
        token = SIGNER.sign("click", ["shop1", "sku-3x"], now=1000)
    last = ALPHABET.index(token[-1])
    respelled = token[:-1] + ALPHABET[last ^ 1]  # the lowest bit of the last char is unused
    assert raw(respelled) == raw(token)
    assert SIGNER.verify("click", respelled, 60, now=1000) == InvalidToken("malformed")


def legacy_token(secret: bytes, purpose: str, fields: list[object], issued: int) -> str:
    """A link as Kaeru minted them before tokens were encrypted (still in live creatives)."""
    payload = orjson.dumps([*fields, issued])
    mac = hmac.new(secret, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]
    return f"{b64(payload)}.{b64(mac)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_link_minted_before_the_upgrade_works_until_it_expires() -> None:
    token = legacy_token(b"k" * 32, "click", CLICK, 1000)
    assert SIGNER.verify("click", token, 60, now=1030) == CLICK
    assert SIGNER.verify("click", token, 60, now=1061) == InvalidToken("expired")
    assert SIGNER.verify("render", token, 60, now=1030) == InvalidToken("bad_signature")
    assert Signer(b"x" * 32).verify("click", token, 60, now=1030) == InvalidToken("bad_signature")


def test_an_altered_or_respelled_old_link_is_refused() -> None:
    token = legacy_token(b"k" * 32, "click", ["shop1", "sku-1"], 1000)
    payload, mac = token.split(".")
    other = legacy_token(b"k" * 32, "click", ["shop1", "sku-2"], 1000).split(".")[0]
    assert SIGNER.verify("click", f"{other}.{mac}", 60, now=1000) == InvalidToken("bad_signature")
    assert SIGNER.verify("click", f"{payload}.{mac[:-2]}AA", 60, now=1000) == InvalidToken(
        "bad_signature"
    )
    respelled = mac[:-1] + ALPHABET[ALPHABET.index(mac[-1]) ^ 1]
    assert SIGNER.verify("click", f"{payload}.{respelled}", 60, now=1000) == InvalidToken(
        "malformed"
    )
    not_a_list = f"{b64(b'{}')}.{b64(b'x' * 16)}"
    assert isinstance(SIGNER.verify("click", not_a_list, 60, now=1000), InvalidToken)


def test_a_prefix_packed_once_seals_the_same_fields_as_sign() -> None:
    """`seal` of `pack`ed parts (what build_ad does for an ad's links) opens to the fields
    `sign` would have sealed, with the issue time, and each token keeps its own nonce."""
    from adserver.delivery.tokens import NONCE_BYTES, pack

    prefix = pack(CLICK[:3])
    tokens = {
        SIGNER.seal("click", prefix + pack(CLICK[3:]), 1000, bytes([n]) * NONCE_BYTES)
        for n in range(3)
    }
    assert len(tokens) == 3
    for token in tokens:
        assert SIGNER.verify("click", token, 60, now=1030) == CLICK
        assert SIGNER.verify("render", token, 60, now=1030) == InvalidToken("bad_signature")
    assert SIGNER.verify("click", SIGNER.seal("click", pack(CLICK), 1000), 60, now=1030) == CLICK
