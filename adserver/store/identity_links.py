"""Identity links: which shoppers (uids) an identifier token is linked to, and back.

An identifier token (`adserver.identity.identifiers`: a keyed hash, never a raw value) has
`keys.identity_link` (uid -> last linked, ms) and each uid `keys.user_identifiers` (token ->
last linked). Both are bounded (the oldest link falls out, on both sides) and expire with the
lookback. The two keys live in different slots, so a link is a pipeline, never a script; a
half-written link (one side only) is harmless: resolution reads one side, forgetting walks
both.

Those bounds are what resolution sees, and anyone can push a shopper out of them (five
identify calls from made-up uids, with the shopper's hashed e-mail). So each side also keeps
what forgetting walks: `keys.identity_link_ever` and `keys.user_identifiers_ever`, every link
within the lookback up to FORGETTING_BOUND (trimmed by age, the oldest falling out past the
bound, never cleaned up by the other side's bound), written in the same round trip, never
read by resolution. An erasure by e-mail, uid or first-party id reaches a shopper a flood
pushed out of the links resolution sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adserver.store import keys
from adserver.store.base import Command, StoreLimits, raise_first_error, send_commands
from adserver.store.base import text as _text

# Forgetting walks links from a uid or identifier to every uid and identifier reachable; the
# bounds per key keep that small, these keep it finite whatever is stored (nearest first:
# what the walk reaches in fewer steps is never left out for what it reaches in more).
MAX_LINKED_UIDS = 200
MAX_LINKED_IDENTIFIERS = 1000
# The links forgetting walks, per identifier and per uid (at least twice what resolution
# sees): a flood must link this many made-up uids to an e-mail within the lookback to push
# its shopper out of reach of an erasure by that e-mail.
FORGETTING_BOUND = 50


@dataclass(slots=True)
class Linked:
    """Everything reachable through links from where forgetting started."""

    uids: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)


class IdentityLinks:
    def __init__(self, redis: Any, limits: StoreLimits) -> None:
        self.redis = redis
        self.limits = limits

    async def resolve(
        self, identifiers: Sequence[str], also_check: Sequence[str] = ()
    ) -> tuple[str | None, bool]:
        """The uid most recently linked to the first of `identifiers` that has one (or None),
        and whether any of `identifiers` and `also_check` opted out (see `suppress`): one
        round trip."""
        commands: list[Command] = [
            ("ZREVRANGE", keys.identity_link(token), 0, 0) for token in identifiers
        ]
        checked = list(dict.fromkeys([*identifiers, *also_check]))
        commands += [("EXISTS", keys.identity_optout(token)) for token in checked]
        if not commands:
            return None, False
        replies = await send_commands(self.redis, commands)
        raise_first_error(replies)
        opted_out = any(int(reply) for reply in replies[len(identifiers) :])
        for reply in replies[: len(identifiers)]:
            if reply:
                return _text(reply[0]), opted_out
        return None, opted_out

    async def suppress(self, identifiers: Iterable[str], seconds: int) -> None:
        """Remember for `seconds` that these identifiers' shopper opted out."""
        commands: list[Command] = [
            ("SET", keys.identity_optout(token), 1, "EX", seconds) for token in identifiers
        ]
        if commands:
            raise_first_error(await send_commands(self.redis, commands))

    async def unsuppress(self, identifiers: Iterable[str]) -> None:
        """The opt-out taken back (the opt-out page's undo button)."""
        commands: list[Command] = [("DEL", keys.identity_optout(t)) for t in identifiers]
        if commands:
            raise_first_error(await send_commands(self.redis, commands))

    async def opted_out(self, identifiers: Sequence[str]) -> set[str]:
        """Which of these identifiers' shoppers opted out (see `suppress`): one round trip."""
        tokens = list(dict.fromkeys(identifiers))
        if not tokens:
            return set()
        commands: list[Command] = [("EXISTS", keys.identity_optout(t)) for t in tokens]
        replies = await send_commands(self.redis, commands)
        raise_first_error(replies)
        return {token for token, reply in zip(tokens, replies, strict=True) if int(reply)}

    async def link(
        self, uid: str, identifiers: Iterable[str], now: float, also: Sequence[Command] = ()
    ) -> None:
        """Link `uid` to each identifier (refreshing links that exist), in one round trip; a
        second only when a bound pushed older links out (their other sides are removed). The
        same round trip records the links for forgetting (see the module's docstring) and
        sends `also` (the e-mail audiences' writes, `EmailAudiences.remember_commands`)."""
        tokens = list(dict.fromkeys(identifiers))
        if not tokens:
            return
        now_ms = int(now * 1000)
        ttl_ms = self.limits.lookback_seconds * 1000
        per_token, per_uid = self.limits.uids_per_identifier, self.limits.identifiers_per_uid
        commands: list[Command] = []
        for token in tokens:
            commands += _bounded_add(keys.identity_link(token), {uid: now_ms}, per_token, ttl_ms)
        own = keys.user_identifiers(uid)
        commands += _bounded_add(own, dict.fromkeys(tokens, now_ms), per_uid, ttl_ms)
        # After the links (whose replies the clean-up below reads by position).
        ever_token = max(FORGETTING_BOUND, 2 * per_token)
        for token in tokens:
            commands += _recorded(keys.identity_link_ever(token), {uid: now_ms}, ever_token, ttl_ms)
        ever_uid = max(FORGETTING_BOUND, 2 * per_uid)
        ever = keys.user_identifiers_ever(uid)
        commands += _recorded(ever, dict.fromkeys(tokens, now_ms), ever_uid, ttl_ms)
        commands += also  # last: the clean-up below reads the links' replies by position
        replies = await send_commands(self.redis, commands)
        raise_first_error(replies)
        cleanup: list[Command] = []
        for n, token in enumerate(tokens):
            for gone in replies[n * 4 + 1] or ():
                cleanup.append(("ZREM", keys.user_identifiers(_text(gone)), token))
        for gone in replies[len(tokens) * 4 + 1] or ():
            cleanup.append(("ZREM", keys.identity_link(_text(gone)), uid))
        if cleanup:
            raise_first_error(await send_commands(self.redis, cleanup))

    async def linked(self, uids: Iterable[str] = (), identifiers: Iterable[str] = ()) -> Linked:
        """Every uid and identifier reachable from these through the links and the links
        kept for forgetting (one round trip per step of the walk; at most MAX_LINKED_UIDS
        uids and MAX_LINKED_IDENTIFIERS identifiers, the nearest first)."""
        found = Linked()
        todo_uids, todo_tokens = set(uids), set(identifiers)
        while todo_uids or todo_tokens:
            todo_uids = set(sorted(todo_uids)[: max(0, MAX_LINKED_UIDS - len(found.uids))])
            room = max(0, MAX_LINKED_IDENTIFIERS - len(found.identifiers))
            todo_tokens = set(sorted(todo_tokens)[:room])
            found.uids |= todo_uids
            found.identifiers |= todo_tokens
            order: list[tuple[bool, str]] = [(True, u) for u in sorted(todo_uids)]
            order += [(False, t) for t in sorted(todo_tokens)]
            commands: list[Command] = []
            for is_uid, name in order:
                if is_uid:
                    commands.append(("ZRANGE", keys.user_identifiers(name), 0, -1))
                    commands.append(("ZRANGE", keys.user_identifiers_ever(name), 0, -1))
                else:
                    commands.append(("ZRANGE", keys.identity_link(name), 0, -1))
                    commands.append(("ZRANGE", keys.identity_link_ever(name), 0, -1))
            if not commands:
                break
            replies = await send_commands(self.redis, commands)
            raise_first_error(replies)
            todo_uids, todo_tokens = set(), set()
            for n, (is_uid, _) in enumerate(order):
                names = {_text(m) for reply in replies[2 * n : 2 * n + 2] for m in reply or ()}
                if is_uid:
                    todo_tokens |= names - found.identifiers
                else:
                    todo_uids |= names - found.uids
        return found

    async def erase(self, linked: Linked) -> int:
        """Delete the link keys of these uids and identifiers (and those kept for
        forgetting); returns how many existed."""
        commands: list[Command] = []
        for uid in sorted(linked.uids):
            commands += [
                ("DEL", keys.user_identifiers(uid)),
                ("DEL", keys.user_identifiers_ever(uid)),
            ]
        for token in sorted(linked.identifiers):
            commands += [
                ("DEL", keys.identity_link(token)),
                ("DEL", keys.identity_link_ever(token)),
            ]
        if not commands:
            return 0
        replies = await send_commands(self.redis, commands)
        raise_first_error(replies)
        return sum(int(reply) for reply in replies)


def _bounded_add(key: str, members: dict[str, int], bound: int, ttl_ms: int) -> list[Command]:
    """ZADD, then the members past the newest `bound` (read, then removed), then the TTL:
    four commands, whose second reply names what fell out."""
    pairs: list[str | int] = []
    for member, score in members.items():
        pairs += [score, member]
    return [
        ("ZADD", key, *pairs),
        ("ZRANGE", key, 0, -(bound + 1)),
        ("ZREMRANGEBYRANK", key, 0, -(bound + 1)),
        ("PEXPIRE", key, ttl_ms),
    ]


def _recorded(key: str, members: dict[str, int], bound: int, ttl_ms: int) -> list[Command]:
    """The links kept for forgetting: ZADD, then those older than the lookback removed, then
    those past the newest `bound`, then the TTL (four commands; nothing is read back)."""
    pairs: list[str | int] = []
    for member, score in members.items():
        pairs += [score, member]
    newest = max(members.values())
    return [
        ("ZADD", key, *pairs),
        ("ZREMRANGEBYSCORE", key, "-inf", f"({newest - ttl_ms}"),
        ("ZREMRANGEBYRANK", key, 0, -(bound + 1)),
        ("PEXPIRE", key, ttl_ms),
    ]
