"""The request gates: what Kaeru may do with one request. Every handler that reads or writes
something about a shopper asks them — the pixel and tag batches (`pixel.handlers`), ads, clicks
and render beacons (`adserver.http.ads`) — so a new signal (or a new identifier) is added here
once and holds everywhere.

- `bot`: a known crawler or automated client (two maintained lists and a few automation
  markers, `adserver.identity.bots`): nothing it does is counted, it gets no personalised ad.
- `opted_out`: the opt-out cookie, Global Privacy Control (`Sec-GPC: 1`), or Do Not Track
  where the operator honours it (KAERU_HONOR_DNT, on by default).
- `consented`: IAB TCF v2.2 (`adserver.identity.consent`): where GDPR applies (`gdpr=1`),
  Kaeru stores and personalises only with consent to purposes 1, 3 and 4 (and, with
  KAERU_TCF_VENDOR_ID, vendor consent and no publisher restriction of those purposes).
- `uid`: the uid cookie, when it is one Kaeru could have issued (`adserver.identity.uid_cookie`).

Each answer is worked out on first use: a handler that stops at the first gate pays for no other.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from adserver.config.settings import Settings
from adserver.identity.bots import MAX_USER_AGENT, is_crawler
from adserver.identity.consent import may_personalise
from adserver.identity.uid_cookie import read_uid

OPTOUT_COOKIE = "optout"
_UNKNOWN = object()


class Gates:
    """The gates of one request, with the TCF signals it carries (`gdpr`, `gdpr_consent`: in
    the query of a pixel or an ad, in the body of a tag batch)."""

    __slots__ = (
        "_bot",
        "_consented",
        "_gdpr",
        "_opted_out",
        "_request",
        "_settings",
        "_tc",
        "_uid",
    )

    def __init__(
        self,
        request: web.Request,
        settings: Settings,
        gdpr: str | None = None,
        tc_string: str | None = None,
    ) -> None:
        self._request, self._settings = request, settings
        self._gdpr, self._tc = gdpr, tc_string
        self._bot: bool | None = None
        self._opted_out: bool | None = None
        self._consented: bool | None = None
        self._uid: object = _UNKNOWN

    @classmethod
    def of_query(cls, request: web.Request, settings: Settings) -> Gates:
        """The gates of a request whose TCF signals are in its query string."""
        query = request.query
        return cls(request, settings, query.get("gdpr"), query.get("gdpr_consent"))

    @property
    def bot(self) -> bool:
        if self._bot is None:
            self._bot = self._settings.filter_bots and is_crawler(
                self._request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
            )
        return self._bot

    @property
    def opted_out(self) -> bool:
        if self._opted_out is None:
            request = self._request
            self._opted_out = (
                request.cookies.get(OPTOUT_COOKIE) == "1"
                or request.headers.get("Sec-GPC") == "1"
                or (self._settings.honor_dnt and request.headers.get("DNT") == "1")
            )
        return self._opted_out

    @property
    def consented(self) -> bool:
        if self._consented is None:
            self._consented = may_personalise(self._gdpr, self._tc, self._settings.tcf_vendor_id)
        return self._consented

    @property
    def uid(self) -> str | None:
        """The uid cookie as sent (None when absent or not one Kaeru could have issued),
        whatever the other gates say: ask `personal_uid` for one that may be used."""
        if self._uid is _UNKNOWN:
            self._uid = read_uid(self._request.cookies)
        return self._uid  # type: ignore[return-value]

    def untracked(self) -> Literal["bot", "opted_out"] | None:
        """Why nothing of this request may be tracked or counted, consent apart (a bot first:
        that is what the rejects metric names), or None."""
        if self.bot:
            return "bot"
        return "opted_out" if self.opted_out else None

    def personal_uid(self) -> str | None:
        """The uid whose history may personalise an answer: none for a bot, a browser that
        opted out, or one without consent."""
        if self.bot or self.opted_out or not self.consented:
            return None
        return self.uid
