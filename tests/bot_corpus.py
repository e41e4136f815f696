"""Labelled User-Agents for measuring the crawler filter, all read from registry packages
installed with the test extras (nothing is downloaded at test time):

- `matomo_bots` / `matomo_browsers`: Matomo Device Detector's own test fixtures
  (matomo-org/device-detector, LGPL-3.0 data), shipped in the PyPI package `device-detector`
  under device_detector/tests/fixtures/upstream/. Entries of bots.yml are labelled crawlers;
  entries of the device fixtures whose client type is `browser` are people's browsers. Neither
  of the lists Kaeru matches with is built from them.
- `real_world_browsers`: fake-useragent's browsers.jsonl (Apache-2.0), browser User-Agents
  collected from real traffic with their share of it.
- `listed_crawler_instances`: the example User-Agents crawler-user-agents lists for each of its
  patterns (MIT). Not independent of the new filter (it matches with that list), so it is
  reported, never the only measure.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import yaml_rs


@functools.cache
def _matomo() -> tuple[tuple[str, ...], tuple[str, ...]]:
    fixtures = resources.files("device_detector") / "tests" / "fixtures" / "upstream"
    bots: list[str] = []
    browsers: list[str] = []
    for path in sorted(fixtures.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yml"):
            continue
        entries: list[dict[str, Any]] = yaml_rs.loads(path.read_text()) or []
        for entry in entries:
            user_agent = entry.get("user_agent")
            if not isinstance(user_agent, str) or not user_agent.strip():
                continue
            client = entry.get("client")
            if "bot" in entry:
                bots.append(user_agent)
            elif isinstance(client, dict) and client.get("type") == "browser":
                browsers.append(user_agent)
    return tuple(bots), tuple(browsers)


def matomo_bots() -> tuple[str, ...]:
    return _matomo()[0]


def matomo_browsers() -> tuple[str, ...]:
    return _matomo()[1]


@functools.cache
def real_world_browsers() -> tuple[tuple[str, float], ...]:
    """(User-Agent, percent of the traffic it was seen in)."""
    lines = (resources.files("fake_useragent") / "data" / "browsers.jsonl").read_text()
    rows = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return tuple((row["useragent"], float(row["percent"])) for row in rows)


@functools.cache
def listed_crawler_instances() -> tuple[str, ...]:
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    return tuple(u for entry in CRAWLER_USER_AGENTS_DATA for u in entry.get("instances", []))
