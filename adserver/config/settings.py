"""Kaeru's configuration: one frozen object, read once from the environment and CLI flags.

`Settings.from_env` validates every variable and raises `SettingsError` listing *all* bad
ones (prebid-server style), so an operator fixes a deployment in one go.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import babel

from adserver.config.redis_url import RedisUrlError, check_url, with_password

ADVERTISER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
PUBLISHER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # as `pub=` on ad requests
# The publisher ids of Kaeru's own channels (the shop's pages, its e-mails): reports count
# them as channels, so no partner page may use them (`/ad` refuses them, KAERU_PUBLISHERS too).
ONSITE_PUBLISHER = "onsite"
EMAIL_PUBLISHER = "email"
RESERVED_PUBLISHERS = frozenset((ONSITE_PUBLISHER, EMAIL_PUBLISHER))
MIN_TOKEN_LENGTH = 16
MIN_SECRET_LENGTH = 32
SECRET_FILE = "secret"
CLICK_ID_PARAM = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # the landing URL's click id parameter
HOSTNAME = re.compile(r"^\.?([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}\Z", re.IGNORECASE)
# The languages the creatives have wording for (creatives/wording.py; a test keeps the two
# lists equal): an advertiser's locale (KAERU_ADVERTISER_LOCALES) must be one of them, in a
# region CLDR knows (its prices are formatted by Babel from CLDR's data).
CREATIVE_LANGUAGES = ("en", "ja", "de", "fr")
DEFAULT_LOCALE = "en-US"
LOCALE_TAG = re.compile(r"^([a-z]{2,3})(?:-([A-Z]{2}))?\Z")


class SettingsError(ValueError):
    """Raised with every configuration problem found, one per line, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kaeru"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Kaeru can be configured with. See the README's configuration table."""

    # Credentials are left out of repr(): settings may end up in a log line or a traceback.
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    data_dir: Path = field(default_factory=default_data_dir)
    secret: bytes = field(default=b"", repr=False)
    advertisers: Mapping[str, str] = field(default_factory=dict, repr=False)  # name -> token
    operator_token: str | None = field(default=None, repr=False)
    cookie_domain: str | None = None
    lookback_days: int = 30
    max_views: int = 50
    click_ttl_days: int = 30
    stream_maxlen: int = 1_000_000
    feed_max_bytes: int = 64 * 1024 * 1024
    max_products: int = 200_000  # rows in one feed, so products in one catalog
    max_campaigns: int = 100  # campaigns per advertiser
    cache_refresh_seconds: float = 1.0
    run_worker: bool = True  # learn related items inside the server process
    honor_dnt: bool = True  # DNT: 1 counts as an opt-out for that request
    filter_bots: bool = True  # known crawlers: no tracking, no personalised ads, not counted
    redis_deadline_ms: int = 40  # longest a hot path waits on Redis before degrading
    buffer_events: int = 100_000  # events kept in memory while Redis is down
    tcf_vendor_id: int | None = None  # IAB TCF vendor id: then vendor consent is required too
    advertiser_domains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    advertiser_locales: Mapping[str, str] = field(default_factory=dict)  # adv -> "ja-JP"
    feed_grace_seconds: int = 300  # how long a view of a product no feed has brought waits
    geoip_db: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    public_url: str | None = None  # origin browsers reach Kaeru at, for absolute links
    click_window_days: int = 30
    click_id_param: str = "kclid"  # the landing URL parameter carrying the click id
    view_window_days: int = 1
    impression_cap_per_hour: int = 240  # counted per browser / cookie-less client (0: none)
    max_publishers_per_day: int = 200  # distinct pub ids per advertiser-day, then 'other'
    publishers: Mapping[str, str] = field(default_factory=dict, repr=False)  # pub -> token
    browser_conversions_per_day: int = 5  # browser-reported, per shopper and advertiser
    uids_per_identifier: int = 5  # identity links: shoppers one identifier links, newest kept
    identifiers_per_uid: int = 10  # identity links: identifiers of one shopper, newest kept
    email_audience_cap: int = 100_000  # shoppers an e-mail audience listing keeps per shop
    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def lookback_seconds(self) -> int:
        return self.lookback_days * 86400

    def token_owner(self, token: str) -> str | None:
        """The advertiser a bearer token belongs to (constant-time per comparison)."""
        return _owner_of(self.advertisers, token)

    def publisher_of_token(self, token: str) -> str | None:
        """The registered publisher a bearer token belongs to (constant-time compares)."""
        return _owner_of(self.publishers, token)

    def is_operator(self, token: str) -> bool:
        expected = self.operator_token
        return expected is not None and secrets.compare_digest(
            _token_bytes(expected), _token_bytes(token)
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Build settings from `env` (default: os.environ); `overrides` (CLI flags) win, and are
        checked like the variables they override (problems name the flag: `--redis-url`)."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        values: dict[str, object] = {
            "redis_url": reader.redis_url("REDIS_URL"),
            "data_dir": Path(env.get("KAERU_DATA_DIR") or default_data_dir()).expanduser(),
            "secret": reader.secret("KAERU_SECRET"),
            "advertisers": reader.advertisers("KAERU_ADVERTISERS"),
            "operator_token": reader.token("KAERU_OPERATOR_TOKEN"),
            "cookie_domain": reader.hostname("KAERU_COOKIE_DOMAIN"),
            "lookback_days": reader.integer("KAERU_LOOKBACK_DAYS", 30, 1, 400),
            "max_views": reader.integer("KAERU_MAX_VIEWS", 50, 1, 500),
            "click_ttl_days": reader.integer("KAERU_CLICK_TTL_DAYS", 30, 1, 400),
            "stream_maxlen": reader.integer("KAERU_STREAM_MAXLEN", 1_000_000, 1000, 10**9),
            "feed_max_bytes": reader.integer("KAERU_FEED_MAX_MB", 64, 1, 4096) * 1024 * 1024,
            "max_products": reader.integer("KAERU_MAX_PRODUCTS", 200_000, 1, 50_000_000),
            "max_campaigns": reader.integer("KAERU_MAX_CAMPAIGNS", 100, 1, 10_000),
            "run_worker": reader.boolean("KAERU_WORKER", True),
            "honor_dnt": reader.boolean("KAERU_HONOR_DNT", True),
            "filter_bots": reader.boolean("KAERU_FILTER_BOTS", True),
            "tcf_vendor_id": reader.optional_integer("KAERU_TCF_VENDOR_ID", 1, 65535),
            "redis_deadline_ms": reader.integer("KAERU_REDIS_DEADLINE_MS", 40, 1, 10_000),
            "buffer_events": reader.integer("KAERU_BUFFER_EVENTS", 100_000, 0, 10**8),
            "advertiser_domains": reader.domains("KAERU_ADVERTISER_DOMAINS"),
            "advertiser_locales": reader.locales("KAERU_ADVERTISER_LOCALES"),
            "feed_grace_seconds": reader.integer("KAERU_FEED_GRACE_SECONDS", 300, 0, 3600),
            "geoip_db": reader.existing_file("KAERU_GEOIP_DB"),
            "trusted_proxies": reader.networks("KAERU_TRUSTED_PROXIES"),
            "public_url": reader.public_url("KAERU_PUBLIC_URL"),
            "click_window_days": reader.integer("KAERU_CLICK_WINDOW_DAYS", 30, 1, 400),
            "click_id_param": reader.click_id_param("KAERU_CLICK_ID_PARAM"),
            "view_window_days": reader.integer("KAERU_VIEW_WINDOW_DAYS", 1, 0, 400),
            "impression_cap_per_hour": reader.integer(
                "KAERU_IMPRESSION_CAP_PER_HOUR", 240, 0, 10**6
            ),
            "max_publishers_per_day": reader.integer(
                "KAERU_MAX_PUBLISHERS_PER_DAY", 200, 0, 100_000
            ),
            "publishers": reader.publishers("KAERU_PUBLISHERS"),
            "browser_conversions_per_day": reader.integer(
                "KAERU_BROWSER_CONVERSIONS_PER_DAY", 5, 0, 10_000
            ),
            "uids_per_identifier": reader.integer("KAERU_UIDS_PER_IDENTIFIER", 5, 1, 100),
            "identifiers_per_uid": reader.integer("KAERU_IDENTIFIERS_PER_UID", 10, 1, 100),
            "email_audience_cap": reader.integer(
                "KAERU_EMAIL_AUDIENCE_CAP", 100_000, 1, 10_000_000
            ),
            "host": env.get("KAERU_HOST") or "127.0.0.1",
            "port": reader.integer("KAERU_PORT", 8080, 1, 65535),
        }
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key == "redis_url":
                value = reader.check_redis_url("--redis-url", str(value).strip())
            elif key == "port":
                value = reader.within("--port", int(str(value)), 8080, 1, 65535)
            values[key] = value
        values["redis_url"] = reader.redis_password("REDIS_PASSWORD", values["redis_url"])
        if reader.problems:
            raise SettingsError(reader.problems)
        return cls(**values)  # type: ignore[arg-type]

    def with_secret_from_data_dir(self) -> Settings:
        """Fill in the signing key from the data dir, creating and persisting one if needed.

        Several processes may start at once on a new data dir (`--workers`, a server beside
        `kaeru worker`): the key is written whole to a private temporary file and then linked
        into place, so exactly one key wins and nobody reads a half-written one.
        """
        if self.secret:
            return self
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # see data_dir.py
            _publish_new_secret(path, secrets.token_urlsafe(48))
        secret = path.read_text().strip().encode()
        if len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError([f"{path}: secret is shorter than {MIN_SECRET_LENGTH} chars"])
        return replace(self, secret=secret)


def _publish_new_secret(path: Path, secret_text: str) -> None:
    """Create `path` holding `secret_text` (mode 0600) unless another process got there first."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret_text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process published its key first: everyone uses that one
    finally:
        draft.unlink(missing_ok=True)


def _locale_problem(tag: str) -> str | None:
    """Why `tag` is no locale Kaeru's creatives can speak, or None."""
    match = LOCALE_TAG.fullmatch(tag)
    if match is None:
        return "not a locale like ja-JP (language, then region in capitals)"
    if match[1] not in CREATIVE_LANGUAGES:
        return f"no creative wording in {match[1]!r} (one of: {', '.join(CREATIVE_LANGUAGES)})"
    try:
        babel.Locale.parse(tag, sep="-")
    except (ValueError, babel.UnknownLocaleError):
        return "not a locale CLDR knows"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _owner_of(tokens: Mapping[str, str], token: str) -> str | None:
    """Whose `token` is among `tokens` (name -> token); every one is compared, in constant
    time, so the answer's timing tells nothing about which matched or how closely."""
    owner = None
    offered = _token_bytes(token)
    for name, expected in tokens.items():
        if secrets.compare_digest(_token_bytes(expected), offered):
            owner = name
    return owner


def _token_bytes(token: str) -> bytes:
    """Headers that are not UTF-8 arrive with surrogate escapes: compare them as sent."""
    return token.encode("utf-8", "surrogateescape")


class _Reader:
    """Parses single variables, recording a problem instead of raising on the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value and value.strip() else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r}: not a whole number")
            return default
        return self.within(name, value, default, low, high)

    def within(self, name: str, value: int, default: int, low: int, high: int) -> int:
        if not low <= value <= high:
            self.problems.append(f"{name}={value}: must be between {low} and {high}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={raw!r}: use 1/0, true/false, yes/no or on/off")
        return default

    def existing_file(self, name: str) -> Path | None:
        raw = self._raw(name)
        if raw is None:
            return None
        path = Path(raw).expanduser()
        if not path.is_file():
            self.problems.append(f"{name}={raw!r}: no such file")
            return None
        return path

    def domains(self, name: str) -> dict[str, tuple[str, ...]]:
        """`adv=example.com|cdn.example.net,adv2=shop2.example`"""
        raw = self._raw(name)
        result: dict[str, tuple[str, ...]] = {}
        for entry in (e.strip() for e in (raw or "").split(",") if e.strip()):
            advertiser, sep, hosts = entry.partition("=")
            names = tuple(h.strip().lower() for h in hosts.split("|") if h.strip())
            if not sep or not ADVERTISER_ID.match(advertiser) or not names:
                self.problems.append(f"{name}: {entry!r} is not 'advertiser=domain|domain'")
            elif bad := [h for h in names if not HOSTNAME.match(h)]:
                self.problems.append(f"{name}: {bad[0]!r} is not a domain name")
            else:
                result[advertiser] = names
        return result

    def locales(self, name: str) -> dict[str, str]:
        """`adv=ja-JP,adv2=de-DE`: a language with wording for the creatives, and a region."""
        raw = self._raw(name)
        result: dict[str, str] = {}
        for entry in (e.strip() for e in (raw or "").split(",") if e.strip()):
            advertiser, sep, tag = (part.strip() for part in entry.partition("="))
            problem = _locale_problem(tag)
            if not sep or not ADVERTISER_ID.match(advertiser):
                self.problems.append(f"{name}: {entry!r} is not 'advertiser=locale' (ja-JP)")
            elif advertiser in result:
                self.problems.append(f"{name}: advertiser {advertiser!r} is listed twice")
            elif problem:
                self.problems.append(f"{name}: {advertiser}={tag!r}: {problem}")
            else:
                result[advertiser] = tag
        return result

    def networks(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return ()
        entries = tuple(e for e in re.split(r"[,\s]+", raw) if e)
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                self.problems.append(f"{name}: {entry!r} is not an IP address or network")
                return ()
        return entries

    def public_url(self, name: str) -> str | None:
        """`https://ads.example.com`: an http(s) origin, no path, query or credentials."""
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            url = urlsplit(raw)
            port = url.port
        except ValueError:
            url, port = None, None
        host = url.hostname if url is not None else None
        if (
            url is None
            or url.scheme.lower() not in ("http", "https")
            or not host
            or not (HOSTNAME.match(host) or _is_ip(host))
            or url.username is not None
            or url.path not in ("", "/")
            or url.query
            or url.fragment
        ):
            self.problems.append(
                f"{name}={raw!r}: not an http(s) origin like https://ads.example.com "
                "(no path, query or user)"
            )
            return None
        netloc = f"[{host}]" if ":" in host else host
        return f"{url.scheme.lower()}://{netloc}" + (f":{port}" if port is not None else "")

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        return self.integer(name, 0, low, high) or None if self._raw(name) else None

    def redis_url(self, name: str) -> str | None:
        raw = self._raw(name)
        return None if raw is None else self.check_redis_url(name, raw)

    def check_redis_url(self, name: str, url: str) -> str | None:
        """`url` if Kaeru takes it (the variable's or a flag's value: `name` says which)."""
        try:
            check_url(url)
        except RedisUrlError as exc:
            self.problems.append(f"{name}: {exc}")
            return None
        return url

    def redis_password(self, name: str, url: object) -> str | None:
        """REDIS_URL (or --redis-url) with the password kept apart in `name` (docker-compose's
        env file gives the same one to Redis's requirepass); unused by the embedded Redis."""
        password = self.env.get(name) or None  # taken as written: spaces may be part of it
        if not isinstance(url, str) or password is None:
            return url if isinstance(url, str) else None
        try:
            return with_password(url, password)
        except RedisUrlError as exc:
            self.problems.append(f"{name}: {exc}")
            return url

    def secret(self, name: str) -> bytes:
        raw = self._raw(name)
        if raw is None:
            return b""
        if len(raw) < MIN_SECRET_LENGTH:
            self.problems.append(f"{name}: must be at least {MIN_SECRET_LENGTH} characters")
            return b""
        return raw.encode()

    def token(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is not None and len(raw) < MIN_TOKEN_LENGTH:
            self.problems.append(f"{name}: must be at least {MIN_TOKEN_LENGTH} characters")
            return None
        return raw

    def click_id_param(self, name: str) -> str:
        raw = self._raw(name)
        if raw is not None and not CLICK_ID_PARAM.match(raw):
            self.problems.append(f"{name}={raw!r}: 1 to 32 letters, digits or underscores")
            return "kclid"
        return raw or "kclid"

    def hostname(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is not None and not HOSTNAME.match(raw):
            self.problems.append(f"{name}={raw!r}: not a host name")
            return None
        return raw

    def advertisers(self, name: str) -> dict[str, str]:
        raw = self._raw(name)
        if raw is None:
            return {}
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).expanduser().read_text()
            except OSError as exc:
                self.problems.append(f"{name}: cannot read {raw[1:]}: {exc.strerror}")
                return {}
        return self._advertiser_pairs(name, raw)

    def publishers(self, name: str) -> dict[str, str]:
        """`pub:token,pub2:token2`: publisher ids as `pub=` takes them, tokens of 16+."""
        ids = "a publisher id of 1-64 letters, digits, '.', '_' or '-'"
        return self._token_pairs(name, self._raw(name) or "", "publisher", PUBLISHER_ID, ids)

    def _advertiser_pairs(self, name: str, raw: str) -> dict[str, str]:
        ids = "an advertiser id of lowercase letters, digits, '-' or '_'"
        return self._token_pairs(name, raw, "advertiser", ADVERTISER_ID, ids)

    def _token_pairs(
        self, name: str, raw: str, kind: str, id_pattern: re.Pattern[str], ids: str
    ) -> dict[str, str]:
        """`id:token` entries separated by commas or lines (`#` comments), each checked."""
        pairs: dict[str, str] = {}
        entries = [e.strip() for e in re.split(r"[,\n]", raw)]
        for entry in (e for e in entries if e and not e.startswith("#")):
            owner, sep, token = entry.partition(":")
            if not sep or not id_pattern.match(owner):
                self.problems.append(f"{name}: {owner!r} is not '{kind}:token' with {ids}")
            elif len(token) < MIN_TOKEN_LENGTH:
                self.problems.append(
                    f"{name}: token of {owner!r} must be at least {MIN_TOKEN_LENGTH} chars"
                )
            elif owner in pairs:
                self.problems.append(f"{name}: {kind} {owner!r} is listed twice")
            elif kind == "publisher" and owner in RESERVED_PUBLISHERS:
                self.problems.append(f"{name}: {owner!r} is reserved for Kaeru's own channel")
            else:
                pairs[owner] = token
        return pairs
