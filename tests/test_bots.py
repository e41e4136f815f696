"""The crawler filter (adserver/identity/bots.py) against labelled public User-Agents
(tests/bot_corpus.py):
recall on crawlers it was not built from, false positives on people's browsers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from crawlerdetect import CrawlerDetect

from adserver.identity import bots
from adserver.identity.bots import is_crawler
from tests import bot_corpus
from tests.conftest import BROWSER, SHOP, stream_events

RECALL_FLOOR = 0.85  # Matomo's labelled bots; CrawlerDetect alone caught 79.0%
MAX_FALSE_POSITIVES = 0.002  # of people's browsers

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SEEN_IN_THE_FIELD = [
    "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Perplexity-User/1.0; "
    "+https://perplexity.ai/perplexity-user)",
    f"{CHROME} Playwright/1.49.0",
    f"{CHROME} Selenium",
    "selenium/4.27.0 (python linux)",
    CHROME.replace("Chrome/", "HeadlessChrome/"),
    "ELB-HealthChecker/2.0",
    "Amazon-Route53-Health-Check-Service (ref 0f1e; report http://amzn.to/1vsZADi)",
    "Consul Health Check",
    "kube-probe/1.31",
    "GoogleHC/1.0",
    "Datadog/Synthetics",
    "Prometheus/2.53.0",
    "Blackbox Exporter/0.25.0",
]
PEOPLE = [
    CHROME,
    BROWSER["User-Agent"],
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    f"{CHROME} Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 15; CPH2655 Build/AP3A.240617.008) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/131.0.6778.200 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 6.0; OPPO R9s Build/MMB29M; wv) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Version/4.0 Chrome/68.0.3440.106 Mobile Safari/537.36 SogouMSE,SogouMobileBrowser/5.22",
    "",
]


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {hits / total:.2%}"


def test_recall_and_false_positives_on_labelled_public_sets() -> None:
    crawlers = bot_corpus.matomo_bots()
    browsers = bot_corpus.matomo_browsers()
    real_world = bot_corpus.real_world_browsers()
    assert len(crawlers) > 1000 and len(browsers) > 30_000 and len(real_world) > 5000
    caught = sum(map(is_crawler, crawlers))
    flagged = [ua for ua in browsers if is_crawler(ua)]
    flagged_real = [(ua, share) for ua, share in real_world if is_crawler(ua)]
    listed = bot_corpus.listed_crawler_instances()
    print(
        f"\nrecall on Matomo's labelled bots: {rate(caught, len(crawlers))}"
        f"\nfalse positives on Matomo's browsers: {rate(len(flagged), len(browsers))}"
        f"\nfalse positives on fake-useragent's real-world browsers: "
        f"{rate(len(flagged_real), len(real_world))}"
        f" ({sum(share for _, share in flagged_real):.3f}% of their traffic)"
        f"\n(recall on crawler-user-agents' own instances: "
        f"{rate(sum(map(is_crawler, listed)), len(listed))})"
    )
    assert caught / len(crawlers) >= RECALL_FLOOR
    assert len(flagged) / len(browsers) < MAX_FALSE_POSITIVES, flagged[:20]
    assert len(flagged_real) / len(real_world) < MAX_FALSE_POSITIVES, flagged_real[:20]


@pytest.mark.parametrize("user_agent", SEEN_IN_THE_FIELD)
def test_crawlers_automation_and_health_checks_seen_in_the_field(user_agent: str) -> None:
    assert is_crawler(user_agent)


@pytest.mark.parametrize("user_agent", PEOPLE)
def test_peoples_browsers_are_not_bots(user_agent: str) -> None:
    assert not is_crawler(user_agent)


def test_undecodable_and_non_ascii_user_agents_are_judged() -> None:
    """aiohttp keeps header bytes that are not UTF-8 as lone surrogates."""
    assert not is_crawler(b"Mozilla/5.0 \xff\xfe".decode("utf-8", "surrogateescape"))
    assert is_crawler(b"\x80 Googlebot/2.1".decode("utf-8", "surrogateescape"))
    assert not is_crawler(f"{CHROME} \u00e9\u2028")


def test_patterns_dropped_as_too_broad_still_catch_their_crawlers() -> None:
    """A pattern of the second list dropped because it names a browser or a phone loses none
    of the crawlers that list gives as its examples (the first list or a marker has them);
    two of them list only browsers' User-Agents as examples."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    browsers_listed = {"Fluid", r"AP3A\.240617\.008"}
    dropped = [e for e in CRAWLER_USER_AGENTS_DATA if e["pattern"] in bots._TOO_BROAD]
    assert {e["pattern"] for e in dropped} == bots._TOO_BROAD  # all still in the list
    for entry in dropped:
        if entry["pattern"] not in browsers_listed:
            assert all(map(is_crawler, entry["instances"])), entry["pattern"]


def test_re2_gives_the_lists_own_answers() -> None:
    """RE2 runs the patterns; on a sample the answers are those of each list's own code
    (CrawlerDetect's class; crawler-user-agents' matcher, on Python's `re`, or a marker)."""
    import crawleruseragents

    detector = CrawlerDetect()
    sample = [*bot_corpus.matomo_bots()[::4], *bot_corpus.matomo_browsers()[::200]]
    for user_agent in sample:
        assert bots.crawlerdetect_says(user_agent) == detector.is_crawler(user_agent), user_agent
        listed = crawleruseragents.matching_crawlers(user_agent)
        own = any(
            crawleruseragents.CRAWLER_USER_AGENTS_DATA[i]["pattern"] not in bots._TOO_BROAD
            for i in listed
        ) or any(re.search(m, user_agent, re.IGNORECASE) for m in bots.AUTOMATION_MARKERS)
        assert bots._crawler_user_agents_or_markers(user_agent) == own, user_agent


def test_markers_are_plain_and_few() -> None:
    assert len(bots.AUTOMATION_MARKERS) <= 25
    for marker in bots.AUTOMATION_MARKERS:
        re.compile(marker)


@pytest.mark.parametrize(
    "user_agent", [f"{CHROME} Playwright/1.49.0", SEEN_IN_THE_FIELD[1], "ELB-HealthChecker/2.0"]
)
async def test_automation_is_served_but_not_tracked(
    stocked: TestClient[Any, Any], redis_url: str, user_agent: str
) -> None:
    headers = {"User-Agent": user_agent}
    response = await stocked.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=headers
    )
    assert response.status == 200 and response.content_type == "image/gif"
    assert await stream_events(redis_url) == []
    metrics = await (await stocked.get("/metrics")).text()
    assert 'kaeru_tracking_rejects_total{reason="bot"} 1.0' in metrics
