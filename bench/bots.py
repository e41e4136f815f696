"""The crawler filter before (CrawlerDetect alone, as on main up to issue 11) and after
(adserver/identity/bots.py: both maintained lists and the automation markers, on RE2): recall
and false
positives on the labelled public sets of tests/bot_corpus.py, and the cost of one call.

    .venv/bin/python bench/bots.py

Cost: "uncached" calls the check on User-Agents it has not seen (Matomo's browsers, each once,
the cache bypassed); "cached" calls `is_bot`'s cached function again on one User-Agent.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawlerdetect import CrawlerDetect  # noqa: E402
from tests import bot_corpus  # noqa: E402

from adserver.identity import bots  # noqa: E402

_DETECTOR = CrawlerDetect()


def old_uncached(user_agent: str) -> bool:
    return bool(_DETECTOR.isCrawler(user_agent))


old_cached = functools.lru_cache(maxsize=10_000)(old_uncached)
new_uncached: Callable[[str], bool] = bots.is_crawler.__wrapped__
new_cached = bots.is_crawler


def share(check: Callable[[str], bool], user_agents: Sequence[str]) -> str:
    hits = sum(map(check, user_agents))
    return f"{hits}/{len(user_agents)} = {hits / len(user_agents):.2%}"


def per_call_us(check: Callable[[str], bool], user_agents: Sequence[str]) -> float:
    start = time.perf_counter()
    for user_agent in user_agents:
        check(user_agent)
    return (time.perf_counter() - start) / len(user_agents) * 1e6


def cached_us(check: Callable[[str], bool], user_agent: str, calls: int = 200_000) -> float:
    check(user_agent)
    return per_call_us(check, [user_agent] * calls)


def main() -> None:
    crawlers = bot_corpus.matomo_bots()
    browsers = bot_corpus.matomo_browsers()
    real_world = [ua for ua, _ in bot_corpus.real_world_browsers()]
    listed = bot_corpus.listed_crawler_instances()
    fresh = browsers[:3000]
    old_cost, new_cost = per_call_us(old_uncached, fresh), per_call_us(new_uncached, fresh)
    rows = [
        (
            "recall, Matomo's labelled bots",
            share(old_uncached, crawlers),
            share(new_cached, crawlers),
        ),
        (
            "recall, crawler-user-agents' instances",
            share(old_uncached, listed),
            share(new_cached, listed),
        ),
        (
            "false positives, Matomo's browsers",
            share(old_uncached, browsers),
            share(new_cached, browsers),
        ),
        (
            "false positives, fake-useragent's",
            share(old_uncached, real_world),
            share(new_cached, real_world),
        ),
        ("us per call, uncached", f"{old_cost:.1f}", f"{new_cost:.1f}"),
        (
            "us per call, cached",
            f"{cached_us(old_cached, fresh[0]):.2f}",
            f"{cached_us(new_cached, fresh[0]):.2f}",
        ),
    ]
    print(f"{'':40} {'before (CrawlerDetect)':>24} {'after (adserver/identity/bots.py)':>24}")
    for name, before, after in rows:
        print(f"{name:40} {before:>24} {after:>24}")


if __name__ == "__main__":
    main()
