"""Signed tokens: forged, altered, expired or repurposed tokens are refused."""

from __future__ import annotations

from adserver.signing import InvalidToken, Signer

SIGNER = Signer(b"k" * 32)


def test_round_trip() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-1", "pub", "https://x.example/p"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1030) == [
        "shop1",
        "sku-1",
        "pub",
        "https://x.example/p",
    ]


def test_altered_payload_is_refused() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-1"], now=1000)
    payload, mac = token.split(".")
    other = SIGNER.sign("click", ["shop1", "sku-2"], now=1000).split(".")[0]
    assert SIGNER.verify("click", f"{other}.{mac}", 60, now=1000) == InvalidToken("bad_signature")
    assert SIGNER.verify("click", f"{payload}.{mac[:-2]}AA", 60, now=1000) == InvalidToken(
        "bad_signature"
    )


def test_token_from_another_key_is_refused() -> None:
    token = Signer(b"x" * 32).sign("click", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1000) == InvalidToken("bad_signature")


def test_token_for_another_purpose_is_refused() -> None:
    token = SIGNER.sign("render", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1000) == InvalidToken("bad_signature")


def test_expired_token_is_refused() -> None:
    token = SIGNER.sign("click", ["a"], now=1000)
    assert SIGNER.verify("click", token, 60, now=1061) == InvalidToken("expired")


def test_garbage_is_malformed() -> None:
    for garbage in ("", "abc", "a.b.c", "%%%.%%%", "x" * 5000):
        assert isinstance(SIGNER.verify("click", garbage, 60), InvalidToken)


def test_a_token_respelled_in_its_unused_bits_is_refused() -> None:
    token = SIGNER.sign("click", ["shop1", "sku-3"], now=1000)
    payload, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1])
    respelled = mac[:-1] + alphabet[last ^ 1]  # the lowest bit of the last char is unused
    assert SIGNER.verify("click", f"{payload}.{respelled}", 60, now=1000) == InvalidToken(
        "malformed"
    )
