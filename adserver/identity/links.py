"""Who a request is, beyond the uid cookie: the identity links the handlers use.

- Shop side (`pixel.handlers.batch`): a tag batch is stored under the uid cookie when the
  browser sends a valid one (and the batch's first-party id gets linked to it); else under the
  uid that first-party id is linked to; else under a new uid (linked to it). `identify` events
  link their hashed e-mail or customer id to that uid; a hashed e-mail the shop's server
  signed (`Identify.email_vouched`, `adserver.identity.email_signatures`) is also kept for that
  shop's e-mail audiences (`adserver.store.email_audiences`), in the same round trip. A hashed
  e-mail or customer id never decides the uid a browser is given: anyone may send anyone's
  hashed e-mail, and a browser that took over its owner's uid would be shown their history.
  A first-party id is 128 random bits the shop's own page keeps, yet not only that browser
  knows it: every script on the shop's pages can read it (and the shop itself). So a uid
  found through a first-party id stays on the server: the batch is stored under it, and the
  answer never issues it as the uid cookie (`ShopUid.issue`), or whoever sends a shopper's
  first-party id would get their uid, and with it their history at every advertiser.
- Partner side (`adserver.http.ads`): with no usable uid cookie, a publisher-provided hashed
  e-mail (`eid=`) resolves to the uid most recently linked to it (one round trip; the profile
  read is the second).

Handlers call this only once the request passed the gates (`adserver.identity.gates.Gates`):
links are stored, and used, only with the consent tracking needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adserver.identity.identifiers import IdentifierHasher, Identify
from adserver.identity.uid_cookie import new_uid
from adserver.store import Store


@dataclass(frozen=True, slots=True)
class ShopUid:
    """The uid a tag batch is stored under, and whether the answer may issue it as the uid
    cookie: yes for the browser's own valid cookie (refreshed) and for a new uid; no for a uid
    found through a first-party id (see the module's docstring)."""

    uid: str
    issue: bool


class IdentityResolver:
    __slots__ = ("hasher", "_store")

    def __init__(self, store: Store, secret: bytes) -> None:
        self._store = store
        self.hasher = IdentifierHasher(secret)

    def tokens(
        self, advertisers: Iterable[str], fpid: str | None, identifies: Sequence[Identify]
    ) -> tuple[list[str], list[str]]:
        """The identifier tokens of a batch: (its first-party ids, one per advertiser of the
        batch; its identified e-mails and customer ids)."""
        first_party = (
            [self.hasher.fpid(a, fpid) for a in dict.fromkeys(advertisers)] if fpid else []
        )
        told = [t for t in map(self.hasher.of_identify, identifies) if t is not None]
        return first_party, told

    async def shop_uid(
        self,
        cookie_uid: str | None,
        advertisers: Iterable[str],
        fpid: str | None,
        identifies: Sequence[Identify],
        now: float,
        give_up_at: float = math.inf,
    ) -> ShopUid | None:
        """The uid a tag batch is stored under (see the module's docstring), its links written:
        two round trips (resolve the first-party id when there is no cookie, and check that
        none of the batch's identifiers opted out; link). None: one of them opted out (on
        another site, maybe, where Kaeru's cookie cannot tell): nothing may be tracked.

        Past `give_up_at` (`time.monotonic()`) once the resolution answers, nothing is linked:
        the caller stopped waiting and refused the batch, and a link to a uid its browser
        never got would keep that browser's next batches from being given a cookie."""
        first_party, told = self.tokens(advertisers, fpid, identifies)
        resolving = first_party if cookie_uid is None else []
        checked = [t for t in (*first_party, *told) if t not in resolving]
        found, opted_out = await self._store.identities.resolve(resolving, checked)
        if opted_out:
            return None
        uid = cookie_uid or found or new_uid()
        if time.monotonic() > give_up_at:
            return ShopUid(uid, issue=False)
        emails = [
            (e.advertiser, e.email_sha256) for e in identifies if e.email_sha256 and e.email_vouched
        ]
        listed = self._store.email_audiences.remember_commands(uid, emails, now)
        await self._store.identities.link(uid, [*first_party, *told], now, listed)
        return ShopUid(uid, issue=cookie_uid is not None or found is None)

    async def first_party_uid(self, advertiser: str, fpid: str) -> str | None:
        """The uid the shop tag's first-party id is linked to, if any and if its shopper did
        not opt out (one round trip): who a shop page's `/recs.json` is for when Kaeru's
        cookie is blocked. Links nothing."""
        uid, opted_out = await self._store.identities.resolve([self.hasher.fpid(advertiser, fpid)])
        return None if opted_out else uid

    async def opted_out_emails(self, emails: Iterable[str]) -> set[str]:
        """Which of these hashed e-mails opted out (an opt-out reached them: one round trip)."""
        tokens = {self.hasher.email(e): e for e in emails}
        return {tokens[t] for t in await self._store.identities.opted_out(list(tokens))}

    async def partner_uid(self, email_sha256: str) -> str | None:
        """The uid most recently linked to a publisher-provided hashed e-mail, if any and if
        its shopper did not opt out (one round trip)."""
        uid, opted_out = await self._store.identities.resolve([self.hasher.email(email_sha256)])
        return None if opted_out else uid
