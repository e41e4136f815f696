"""Prometheus metrics, one registry per app so that several apps (tests) never collide."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kaeru_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "kaeru_http_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_stored = Counter(
            "kaeru_events_stored", "Shopper events written to Redis", ["event"], registry=r
        )
        self.events_buffered = Counter(
            "kaeru_events_buffered",
            "Events kept in memory while Redis was slow or down",
            registry=r,
        )
        self.events_shed = Counter(
            "kaeru_events_shed",
            "Events refused, never stored, because the buffer was full ('e': answered 503 "
            "with Retry-After, the tag sends them again; 'px': the GIF all the same)",
            ["endpoint"],
            registry=r,
        )
        self.delivery_buffered = Counter(
            "kaeru_delivery_buffered",
            "Clicks and impressions/renders ('shown') kept in memory because Redis failed them",
            ["kind"],
            registry=r,
        )
        self.delivery_shed = Counter(
            "kaeru_delivery_shed",
            "Clicks and impressions/renders not counted because their buffer was full (the "
            "click still redirects, the ad is still served)",
            ["kind"],
            registry=r,
        )
        self.tracking_rejects = Counter(
            "kaeru_tracking_rejects",
            "Tracking input refused and stored nowhere",
            ["reason"],
            registry=r,
        )
        self.unknown_items = Counter(
            "kaeru_unknown_items",
            "Product ids not in the advertiser's catalog: waiting for a feed, counted after all "
            "(a feed brought them in time), dropped, or skipped by the learner (not_learnt, also "
            "products sold out)",
            ["outcome"],
            registry=r,
        )
        self.bad_requests = Counter(
            "kaeru_bad_requests",
            "Requests answered 4xx for bad input",
            ["route", "reason"],
            registry=r,
        )
        self.impressions_uncounted = Counter(
            "kaeru_impressions_uncounted",
            "Ads served but not counted: the client was past its hourly impression cap",
            registry=r,
        )
        self.browser_conversions_over_cap = Counter(
            "kaeru_browser_conversions_over_cap",
            "Browser-reported purchases recorded but not attributed: their client address was "
            "past its hourly cap (ten times KAERU_BROWSER_CONVERSIONS_PER_DAY)",
            registry=r,
        )
        self.eids_over_cap = Counter(
            "kaeru_eids_over_cap",
            "Ad requests whose eid (no token) was not resolved: their client address had "
            "tried more distinct hashed e-mails this hour than it may",
            registry=r,
        )
        self.eids_refused = Counter(
            "kaeru_eids_refused",
            "Ad requests (/ad, /ad.js frames) whose eid was ignored, not personalising the ad: "
            "unsigned, unregistered_publisher, expired, too_far_ahead (eid_exp more than a "
            "day ahead) or bad_signature (not the publisher's for this pub, eid and eid_exp)",
            ["reason"],
            registry=r,
        )
        self.email_sigs_refused = Counter(
            "kaeru_email_sigs_refused",
            "Identify events whose hashed e-mail was linked for ads only, not kept for the "
            "shop's e-mail audiences: unsigned, bad_email_sig (malformed, or not the shop's "
            "signature of this advertiser, hash and sig_exp), expired, too_far_ahead (sig_exp "
            "more than a day ahead)",
            ["reason"],
            registry=r,
        )
        self.renders_uncounted = Counter(
            "kaeru_renders_uncounted",
            "Render beacons not counted: their impression's render was counted already, "
            "their impression was not counted (past the cap), "
            "or it came back from a buffer too late to tell",
            registry=r,
        )
        self.ads = Counter(
            "kaeru_ads_served",
            "Ads served, by strategy of the lead product",
            ["strategy"],
            registry=r,
        )
        self.recs = Counter(
            "kaeru_recs",
            "Answers of /recs.json and the e-mail recommendations by placement, filled or empty",
            ["placement", "outcome"],
            registry=r,
        )
        self.no_fill = Counter("kaeru_ads_no_fill", "Ad requests with nothing to show", registry=r)
        self.clicks = Counter(
            "kaeru_clicks",
            "Valid clicks redirected: counted, replays not counted again, or over_cap (a client "
            "past its hourly cap, not counted)",
            ["outcome"],
            registry=r,
        )
        self.bot_requests = Counter(
            "kaeru_bot_requests",
            "Requests from known crawlers, served but not counted",
            ["route"],
            registry=r,
        )
        self.click_rejects = Counter(
            "kaeru_click_rejects", "Click tokens refused", ["reason"], registry=r
        )
        self.click_ids = Counter(
            "kaeru_click_ids",
            "Click ids on landing URLs: minted, too_long (redirected without one), and sent "
            "back by the tag (tag_touch, or tag_<reason> when refused) or the conversions "
            "postback (postback, or postback_<reason>)",
            ["outcome"],
            registry=r,
        )
        self.feed_rows = Counter(
            "kaeru_feed_rows", "Catalog feed rows by outcome", ["outcome"], registry=r
        )
        self.malformed_requests = Counter(
            "kaeru_malformed_requests",
            "Requests aiohttp could not parse (raw bytes in the target, a request line over "
            "its limit, broken headers), answered 400 before any route; logged without address",
            ["reason"],
            registry=r,
        )
        self.store_errors = Counter(
            "kaeru_store_errors", "Redis operations that failed", ["operation"], registry=r
        )

        # Labelled children looked up once: `labels()` takes a lock and builds a key each call.
        self._answered: dict[tuple[str, int], tuple[Histogram, Counter]] = {}
        self._stored: dict[str, Counter] = {}

    def answered(self, route: str, status: int, seconds: float) -> None:
        """One HTTP answer: its latency and its count by route and status."""
        children = self._answered.get((route, status))
        if children is None:
            children = (self.latency.labels(route), self.requests.labels(route, str(status)))
            self._answered[(route, status)] = children
        children[0].observe(seconds)
        children[1].inc()

    def stored(self, kind: str, count: int = 1) -> None:
        """Shopper events of `kind` (one of a fixed set) written to Redis."""
        child = self._stored.get(kind)
        if child is None:
            child = self._stored[kind] = self.events_stored.labels(kind)
        child.inc(count)

    def render(self) -> bytes:
        """This process's metrics, or every process's under `kaeru serve --workers N`."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
