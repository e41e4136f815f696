"""Configuration: defaults, every variable validated, all problems reported at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adserver.config.redis_url import redact
from adserver.config.settings import Settings, SettingsError


def test_defaults_are_sane() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None  # embedded Redis
    assert settings.lookback_days == 30
    assert settings.advertisers == {}
    assert settings.port == 8080


def test_environment_is_read() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://127.0.0.1:6390/2",
            "KAERU_DATA_DIR": "/tmp/kaeru-x",
            "KAERU_ADVERTISERS": "shop1:aaaaaaaaaaaaaaaa, shop-2:bbbbbbbbbbbbbbbb",
            "KAERU_OPERATOR_TOKEN": "o" * 20,
            "KAERU_COOKIE_DOMAIN": ".example.com",
            "KAERU_LOOKBACK_DAYS": "14",
            "KAERU_SECRET": "s" * 40,
        }
    )
    assert settings.redis_url == "redis://127.0.0.1:6390/2"
    assert settings.data_dir == Path("/tmp/kaeru-x")
    assert settings.advertisers == {"shop1": "a" * 16, "shop-2": "b" * 16}
    assert settings.cookie_domain == ".example.com"
    assert settings.lookback_seconds == 14 * 86400
    assert settings.secret == b"s" * 40


def test_flags_override_environment() -> None:
    settings = Settings.from_env({"KAERU_PORT": "9000"}, overrides={"port": 9100, "host": None})
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"


def test_flags_are_checked_like_the_variables_they_override() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"REDIS_URL": "redis://fine:6379/0", "KAERU_LOOKBACK_DAYS": "0"},
            overrides={"redis_url": "redis+cluster://h:1?timeout=3", "port": 70000},
        )
    assert caught.value.problems == [
        "KAERU_LOOKBACK_DAYS=0: must be between 1 and 400",
        "--redis-url: query options are not supported in a cluster URL",
        "--port=70000: must be between 1 and 65535",
    ]
    flagged = Settings.from_env({}, overrides={"redis_url": " unix:///s ", "port": 1})
    assert (flagged.redis_url, flagged.port) == ("unix:///s", 1)


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://kaeru:p%40ss@10.0.0.1:6379/0", "redis://kaeru:***@10.0.0.1:6379/0"),
        ("rediss://:token@cache.example:6380", "rediss://:***@cache.example:6380"),
        ("redis://token@cache.example", "redis://***@cache.example"),
        ("redis://u:p/a?s#s@h:1/0", "redis://u:***@h:1/0"),
        ("unix:///run/redis.sock?db=2&password=pw", "unix:///run/redis.sock?db=2&password=***"),
        ("redis+cluster://kaeru:pw@h1:7000,h2:7001", "redis+cluster://kaeru:***@h1:7000,h2:7001"),
    ],
)
def test_redis_urls_are_logged_without_their_password(url: str, logged: str) -> None:
    assert redact(url) == logged


def test_every_bad_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "REDIS_URL": "http://nope",
                "KAERU_LOOKBACK_DAYS": "forever",
                "KAERU_PORT": "70000",
                "KAERU_SECRET": "short",
                "KAERU_ADVERTISERS": "Shop One:tok",
                "KAERU_OPERATOR_TOKEN": "tiny",
                "KAERU_COOKIE_DOMAIN": "not a host",
            }
        )
    message = str(caught.value)
    for name in (
        "REDIS_URL",
        "KAERU_LOOKBACK_DAYS",
        "KAERU_PORT",
        "KAERU_SECRET",
        "KAERU_ADVERTISERS",
        "KAERU_OPERATOR_TOKEN",
        "KAERU_COOKIE_DOMAIN",
    ):
        assert name in message
    assert len(caught.value.problems) == 7


def test_advertisers_can_come_from_a_file(tmp_path: Path) -> None:
    tokens = tmp_path / "advertisers"
    tokens.write_text("# comment\nshop1:aaaaaaaaaaaaaaaa\nshop2:bbbbbbbbbbbbbbbb\n")
    settings = Settings.from_env({"KAERU_ADVERTISERS": f"@{tokens}"})
    assert list(settings.advertisers) == ["shop1", "shop2"]


def test_missing_advertiser_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KAERU_ADVERTISERS: cannot read"):
        Settings.from_env({"KAERU_ADVERTISERS": f"@{tmp_path / 'absent'}"})


def test_duplicate_advertiser_and_short_token_are_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KAERU_ADVERTISERS": "a:aaaaaaaaaaaaaaaa,a:bbbbbbbbbbbbbbbb,b:short"})
    assert "listed twice" in str(caught.value) and "at least 16" in str(caught.value)


def test_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = settings.with_secret_from_data_dir()
    second = settings.with_secret_from_data_dir()
    assert len(first.secret) >= 32
    assert first.secret == second.secret
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_processes_starting_together_on_a_new_data_dir_agree_on_one_secret(tmp_path: Path) -> None:
    """`kaeru serve --workers N` and `kaeru worker` may all start on an empty data dir at once:
    none may fail, and all must sign with the same key."""
    rounds, starters = 20, 8

    def start(data_dir: Path, start_together: threading.Barrier) -> bytes:
        start_together.wait()
        return Settings(data_dir=data_dir).with_secret_from_data_dir().secret

    for round_number in range(rounds):
        data_dir = tmp_path / str(round_number)
        start_together = threading.Barrier(starters)
        with ThreadPoolExecutor(starters) as pool:
            keys = list(pool.map(start, [data_dir] * starters, [start_together] * starters))
        assert len(set(keys)) == 1 and len(keys[0]) >= 32
        assert [entry.name for entry in data_dir.iterdir()] == ["secret"]  # no drafts left


def test_settings_never_show_their_credentials_when_printed() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://:hunter2-password@127.0.0.1:6379/0",
            "KAERU_SECRET": "s" * 40,
            "KAERU_ADVERTISERS": "shop:advertiser-token-123",
            "KAERU_OPERATOR_TOKEN": "operator-token-4567",
        }
    )
    shown = repr(settings)
    assert "lookback_days=30" in shown  # the rest is still there to read
    for credential in ("hunter2-password", "s" * 40, "advertiser-token-123", "operator-token-4567"):
        assert credential not in shown


def test_tokens_identify_their_owner() -> None:
    settings = Settings(advertisers={"a": "a" * 16, "b": "b" * 16}, operator_token="o" * 16)
    assert settings.token_owner("b" * 16) == "b"
    assert settings.token_owner("c" * 16) is None
    assert settings.is_operator("o" * 16) and not settings.is_operator("a" * 16)


def test_advertiser_domains_and_privacy_switches_are_read() -> None:
    settings = Settings.from_env(
        {
            "KAERU_ADVERTISER_DOMAINS": "shop1=shop1.example|cdn.example.net, shop2=s2.example",
            "KAERU_HONOR_DNT": "0",
            "KAERU_FILTER_BOTS": "off",
            "KAERU_TCF_VENDOR_ID": "755",
            "KAERU_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert settings.advertiser_domains == {
        "shop1": ("shop1.example", "cdn.example.net"),
        "shop2": ("s2.example",),
    }
    assert not settings.honor_dnt and not settings.filter_bots
    assert settings.tcf_vendor_id == 755
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")


def test_bad_privacy_and_network_settings_are_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "KAERU_ADVERTISER_DOMAINS": "shop1",
                "KAERU_HONOR_DNT": "maybe",
                "KAERU_TRUSTED_PROXIES": "not-an-ip",
                "KAERU_GEOIP_DB": "/nope.mmdb",
            }
        )
    message = str(caught.value)
    for name in (
        "KAERU_ADVERTISER_DOMAINS",
        "KAERU_HONOR_DNT",
        "KAERU_TRUSTED_PROXIES",
        "KAERU_GEOIP_DB",
    ):
        assert name in message


def test_counting_bounds_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "KAERU_PUBLISHERS": "news1:news1-token-0123456789, blog.2:blog2-token-0123456789",
            "KAERU_IMPRESSION_CAP_PER_HOUR": "100",
            "KAERU_MAX_PUBLISHERS_PER_DAY": "50",
            "KAERU_BROWSER_CONVERSIONS_PER_DAY": "2",
        }
    )
    assert dict(settings.publishers) == {
        "news1": "news1-token-0123456789",
        "blog.2": "blog2-token-0123456789",
    }
    assert settings.publisher_of_token("blog2-token-0123456789") == "blog.2"
    assert not Settings().publishers  # open to any pub by default
    assert (settings.impression_cap_per_hour, settings.max_publishers_per_day) == (100, 50)
    assert settings.browser_conversions_per_day == 2
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "KAERU_PUBLISHERS": "news 1:short",
                "KAERU_IMPRESSION_CAP_PER_HOUR": "-1",
                "KAERU_MAX_PUBLISHERS_PER_DAY": "lots",
                "KAERU_BROWSER_CONVERSIONS_PER_DAY": "99999",
            }
        )
    message = str(caught.value)
    for name in (
        "KAERU_PUBLISHERS",
        "KAERU_IMPRESSION_CAP_PER_HOUR",
        "KAERU_MAX_PUBLISHERS_PER_DAY",
        "KAERU_BROWSER_CONVERSIONS_PER_DAY",
    ):
        assert name in message


def test_advertiser_locales_are_read() -> None:
    settings = Settings.from_env({"KAERU_ADVERTISER_LOCALES": "shop1=ja-JP, shop2 = de-DE"})
    assert settings.advertiser_locales == {"shop1": "ja-JP", "shop2": "de-DE"}
    assert Settings.from_env({}).advertiser_locales == {}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("shop1=ja_JP", "shop1='ja_JP': not a locale like ja-JP"),
        ("shop1=pt-BR", "shop1='pt-BR': no creative wording in 'pt'"),
        ("shop1=ja-XX", "shop1='ja-XX': not a locale CLDR knows"),
        ("shop1", "'shop1' is not 'advertiser=locale'"),
        ("shop1=ja-JP,shop1=de-DE", "advertiser 'shop1' is listed twice"),
    ],
)
def test_a_bad_advertiser_locale_fails_start_up_naming_the_variable(
    value: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"KAERU_ADVERTISER_LOCALES": value})
    assert f"KAERU_ADVERTISER_LOCALES: {problem}" in str(error.value)
