"""Known crawlers and automated clients, told by their User-Agent.

Two maintained lists, checked together, plus a few markers neither list carries:

- CrawlerDetect (`crawlerdetect`): its exclusions (browser and OS tokens) are cut out of the
  User-Agent first, then its ~1,500 case-insensitive patterns are searched in what is left;
- crawler-user-agents (`crawler-user-agents`, Martin Monperrus' list): ~1,500 case-sensitive
  patterns searched in the whole User-Agent; `_TOO_BROAD` drops the few that name a browser,
  a phone or an Android build rather than a crawler (the crawlers they were meant for are
  caught by CrawlerDetect: tests/test_bots.py checks it on their own listed instances);
- `AUTOMATION_MARKERS`: browser automation, health checkers, monitors and scanners.

The second list and the markers are one RE2 regex, CrawlerDetect's patterns another
(google-re2 runs a DFA, so the cost does not grow with the number of patterns; Python's `re`
tries every alternative at every position, ~1 ms per User-Agent here). Patterns RE2 cannot run
(lookarounds, back-references) are searched with `re` instead.
`is_crawler` is cached, so a User-Agent seen before costs one dictionary lookup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Protocol

import re2
from crawlerdetect.providers.crawlers import data as _CRAWLERDETECT
from crawlerdetect.providers.exclusions import data as _CRAWLERDETECT_EXCLUSIONS
from crawleruseragents import CRAWLER_USER_AGENTS_DATA

MAX_USER_AGENT = 512  # longer User-Agents are judged on their first 512 characters
CACHE_SIZE = 10_000

# Automation, monitoring and scanning that real shoppers' browsers never send (any case).
AUTOMATION_MARKERS = (
    r"HeadlessChrome",
    r"Playwright",
    r"Puppeteer",
    r"Selenium",
    r"PhantomJS",
    r"Health[ _-]?Check",  # ELB-HealthChecker, Route 53 Health Check, Consul Health Check, ...
    r"kube-probe",
    r"GoogleHC/",
    r"Synthetics",  # Datadog/Synthetics, CloudWatch Synthetics
    r"Prometheus/",
    r"Blackbox Exporter",
    r"Grafana/",
    r"collectd/",
    r"munin/",
    r"\bk6/",
    r"Cloud-Scheduler",
    # what bots call themselves and browsers never do
    r"Scanner",
    r"Monitor",
    r"Research",
    r"Google-",  # Google's fetchers (Google-Site-Verification, ...); Chrome never says it
    r"\$\{jndi:",  # Log4Shell probes
)

# crawler-user-agents patterns that match people's browsers: each names a browser (Sogou
# Mobile Browser, Fluid), a device (ViewSonic, HTC Butterfly, Fever and Expanse phones) or an
# Android build shared by many phones (AP3A.240617.008).
_TOO_BROAD = frozenset(
    (r"Sogou", r"Fluid", r"Sonic", r"Butterfly", r"Fever", r"Expanse", r"AP3A\.240617\.008")
)

# Syntax RE2 does not have: lookahead/lookbehind, atomic groups, back-references.
_PERL_ONLY = re.compile(r"\(\?<?[=!]|\(\?>|\\[1-9]")


class _Search(Protocol):
    def __call__(self, text: str) -> bool: ...


def _alternation(patterns: Iterable[str], *, ignore_case: bool) -> _Search:
    """One search over all patterns: RE2 for what it can run, `re` for the rest."""
    patterns = list(patterns)
    portable = [p for p in patterns if not _PERL_ONLY.search(p)]
    perl_only = [p for p in patterns if _PERL_ONLY.search(p)]
    flags = "(?i)" if ignore_case else ""
    options = re2.Options()
    options.max_mem = 64 << 20  # the DFA for ~1,500 alternatives needs more than the 8 MiB default
    options.log_errors = False
    try:
        fast = re2.compile(flags + "|".join(f"(?:{p})" for p in portable), options)
    except re2.error:  # pragma: no cover - a list release with syntax RE2 lacks: stay correct
        fast, perl_only = None, patterns
    slow = re.compile(flags + "|".join(f"(?:{p})" for p in perl_only)) if perl_only else None

    def search(text: str) -> bool:
        return bool(fast and fast.search(text)) or bool(slow and slow.search(text))

    return search


_exclusions = re.compile("|".join(_CRAWLERDETECT_EXCLUSIONS), re.IGNORECASE)
_crawlerdetect = _alternation(_CRAWLERDETECT, ignore_case=True)
_listed = [e["pattern"] for e in CRAWLER_USER_AGENTS_DATA]
# The markers join the second list's regex, case-insensitive in their own groups: one search.
_crawler_user_agents_or_markers = _alternation(
    [*(p for p in _listed if p not in _TOO_BROAD), *(f"(?i:{m})" for m in AUTOMATION_MARKERS)],
    ignore_case=False,
)


def crawlerdetect_says(user_agent: str) -> bool:
    """CrawlerDetect's own rule: its patterns, searched once its exclusions are cut out."""
    stripped = _exclusions.sub("", user_agent.strip())
    return bool(stripped) and _crawlerdetect(stripped)


@functools.lru_cache(maxsize=CACHE_SIZE)
def is_crawler(user_agent: str) -> bool:
    """A known crawler, bot, monitor or automated browser (either list, or a marker). Cached:
    callers cut the header to MAX_USER_AGENT characters first, so the cache stays small."""
    if not user_agent.strip():
        return False
    if not user_agent.isascii():  # aiohttp keeps undecodable header bytes as lone surrogates,
        user_agent = user_agent.encode("utf-8", "replace").decode()  # which RE2 cannot take
    return _crawler_user_agents_or_markers(user_agent) or crawlerdetect_says(user_agent)
