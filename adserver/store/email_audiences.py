"""The hashed e-mails of each shop's identified shoppers, for its e-mail flows' audiences.

An `identify` with an e-mail (under the tracking gates, `adserver.identity.links`) stores the
SHA-256 the shop's page sent as `keys.user_email` (that shopper, that shop only, expiring with
the lookback, erased with the shopper) and adds the uid to the shop's index
`keys.email_audience`, scored by last activity: every later event of that shopper at that
shop raises the score in the event write's round trip (`bump_commands`: ZADD XX GT never adds
anyone). The index is trimmed by age and to the newest `StoreLimits.email_audience_cap` at
each add; a forgotten shopper is removed from it (`forget_commands`), and a listing names a
uid only while its `user_email` exists, so an erasure hides a shopper at once.

`page` reads one page in two round trips: the index script (`scripts.EMAIL_AUDIENCE_PAGE`),
then per uid its e-mail and its profile (the ad decision's script) in one pipeline. Shoppers
it finds without their e-mail (it expired while their activity kept them in the index) are
then dropped (`drop`, a third round trip only then).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from adserver.core.shopper import AdvertiserHistory
from adserver.store import keys, scripts
from adserver.store.base import (
    MAX_ADVERTISERS_PER_SHOPPER,
    Command,
    StoreLimits,
    day_of,
    histories_of,
    raise_first_error,
    send_with_scripts,
)
from adserver.store.base import text as _text


@dataclass(frozen=True, slots=True)
class AudienceEntry:
    """One shopper of a page: their e-mail hash (None: no longer stored, leave them out),
    their last activity (ms) and their history at the shop (None: nothing within the lookback)."""

    uid: str
    email_sha256: str | None
    last_ms: int
    history: AdvertiserHistory | None


@dataclass(frozen=True, slots=True)
class AudiencePage:
    entries: list[AudienceEntry]
    more: bool  # the index holds entries after the last one


class EmailAudiences:
    def __init__(self, redis: Any, limits: StoreLimits, load_shopper_sha: str) -> None:
        self.redis = redis
        self.limits = limits
        self._load_shopper_sha = load_shopper_sha
        self._page = redis.register_script(scripts.EMAIL_AUDIENCE_PAGE)
        self._drop = redis.register_script(scripts.EMAIL_AUDIENCE_DROP)

    def remember_commands(
        self, uid: str, emails: Sequence[tuple[str, str]], now: float
    ) -> list[Command]:
        """What an identify writes: per (advertiser, email_sha256), the shopper's e-mail at
        that shop and their place in its index (trimmed by age and to the cap, its TTL
        renewed). Plain commands, sent with the identity links (one round trip)."""
        now_ms = int(now * 1000)
        ttl_ms = self.limits.lookback_seconds * 1000
        latest = dict(emails)  # one e-mail per shop: the batch's last
        commands: list[Command] = []
        for advertiser, email_sha256 in latest.items():
            index = keys.email_audience(advertiser)
            commands += [
                ("SET", keys.user_email(uid, advertiser), email_sha256, "PX", ttl_ms),
                ("ZADD", index, "GT", now_ms, uid),
                ("ZREMRANGEBYSCORE", index, "-inf", f"({now_ms - ttl_ms}"),
                ("ZREMRANGEBYRANK", index, 0, -(self.limits.email_audience_cap + 1)),
                ("PEXPIRE", index, ttl_ms),
            ]
        return commands

    @staticmethod
    def bump_commands(activity: Iterable[tuple[str, str, float]]) -> list[Command]:
        """Raise the last activity of shoppers already in their shop's index (uid,
        advertiser, time): one ZADD XX GT per pair, which adds nobody."""
        newest: dict[tuple[str, str], int] = {}
        for uid, advertiser, at in activity:
            ms = int(at * 1000)
            if ms > newest.get((uid, advertiser), -1):
                newest[(uid, advertiser)] = ms
        return [
            ("ZADD", keys.email_audience(advertiser), "XX", "GT", ms, uid)
            for (uid, advertiser), ms in newest.items()
        ]

    @staticmethod
    def forget_commands(uid: str, advertisers: Iterable[str]) -> list[Command]:
        return [("ZREM", keys.email_audience(advertiser), uid) for advertiser in advertisers]

    async def page(
        self,
        advertiser: str,
        since_ms: int,
        after: tuple[int, str] | None,
        limit: int,
        now: float | None = None,
    ) -> AudiencePage:
        """Up to `limit` shoppers of the shop's index active from `since_ms` on, oldest
        activity first, after `after` (the last entry of the previous page): two round trips."""
        now = time.time() if now is None else now
        cutoff_ms = int((now - self.limits.lookback_seconds) * 1000)
        score, uid = after if after is not None else ("", "")
        sha = self._page.sha
        index_page: Command = (
            *("EVALSHA", sha, 1, keys.email_audience(advertiser)),
            *(max(since_ms, cutoff_ms), score, uid, limit + 1, cutoff_ms),
        )
        replies = await send_with_scripts(
            self.redis, [index_page], {sha: scripts.EMAIL_AUDIENCE_PAGE}
        )
        raise_first_error(replies)
        flat = [_text(v) for v in replies[0]]
        found = [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
        more, found = len(found) > limit, found[:limit]
        return AudiencePage(await self._read(advertiser, found, cutoff_ms, now), more)

    async def kept_email(self, uid: str, advertiser: str) -> str | None:
        """The hashed e-mail this shopper's signed identify kept at the shop, if any."""
        found = await self.redis.get(keys.user_email(uid, advertiser))
        return _text(found) if found else None

    async def entry(self, advertiser: str, uid: str, now: float | None = None) -> AudienceEntry:
        """One shopper's e-mail kept at the shop and their profile (one round trip): what the
        single-address form asks of the uid an e-mail resolves to (that uid is a member for
        that e-mail only if it kept that very e-mail at this shop)."""
        now = time.time() if now is None else now
        cutoff_ms = int((now - self.limits.lookback_seconds) * 1000)
        return (await self._read(advertiser, [(uid, 0)], cutoff_ms, now))[0]

    async def _read(
        self, advertiser: str, found: list[tuple[str, int]], cutoff_ms: int, now: float
    ) -> list[AudienceEntry]:
        """Per shopper, their e-mail at the shop and their profile: one round trip."""
        if not found:
            return []
        load = self._load_shopper_sha
        commands: list[Command] = []
        for uid, _ in found:
            commands.append(("GET", keys.user_email(uid, advertiser)))
            commands.append(
                (
                    *("EVALSHA", load, 1, keys.user_advertisers(uid), keys.user_prefix(uid)),
                    *(cutoff_ms, MAX_ADVERTISERS_PER_SHOPPER),
                )
            )
        replies = await send_with_scripts(self.redis, commands, {load: scripts.LOAD_SHOPPER})
        raise_first_error(replies)
        entries, today = [], day_of(now)
        for n, (uid, last_ms) in enumerate(found):
            email, profile = replies[2 * n], replies[2 * n + 1]
            histories = histories_of(profile, today)
            history = next((h for h in histories if h.advertiser == advertiser), None)
            entries.append(AudienceEntry(uid, _text(email) if email else None, last_ms, history))
        return entries

    async def drop(self, advertiser: str, entries: Sequence[AudienceEntry]) -> None:
        """Take shoppers a page found without their e-mail (it expired) out of the shop's
        index, unless they were active again since (their score moved)."""
        if not entries:
            return
        sha = self._drop.sha
        pairs = [arg for e in entries for arg in (e.uid, e.last_ms)]
        command: Command = ("EVALSHA", sha, 1, keys.email_audience(advertiser), *pairs)
        replies = await send_with_scripts(self.redis, [command], {sha: scripts.EMAIL_AUDIENCE_DROP})
        raise_first_error(replies)
