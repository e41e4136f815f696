"""`kaeru eval`: measure related items on real clickstreams through the real code path.

Training sessions go through the same ingestion (`Store.record_many`, the per-user Lua) and the
same worker (`RelatedWorker`) as live traffic, into a private Redis. Then every test session is
replayed click by click; after each click the real ranking code (`NeighbourCache.suggest`, and
the ad decision `decide` for the endpoint's mix) is asked for its top 20, and the next
click is looked up in it. The learner is frozen during the test replay, as in the published
protocol. The `product` placement is measured on the same clicks: the next click given the
current item only (no session history), ranked as the shop's product page ranks it
(`product_placement`, over the placements' shared ranking in `adserver.core.recommending`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TextIO

from adserver.core.campaigns import Campaign, default_campaign
from adserver.core.context import ProductContext
from adserver.core.decision import Slot, decide
from adserver.core.lessons import PLAIN_COOCCURRENCE, LearningConfig
from adserver.core.product import Product
from adserver.core.recommending import neighbour_skus, pick, product_sources
from adserver.core.shopper import Shopper, ShopperEvent
from adserver.core.suggestions import Suggestions
from adserver.learning.datasets import Dataset, Session
from adserver.learning.related import PLAIN_RANKING, NeighbourCache, RankingConfig
from adserver.learning.worker import RelatedWorker
from adserver.store import Store
from adserver.store.learning import LearningStore

ADVERTISER = "eval"
KS = (1, 3, 20)
TOP = 20
INGEST_CHUNK = 5000
MODES: dict[str, tuple[LearningConfig, RankingConfig]] = {
    "tuned": (LearningConfig(), RankingConfig()),
    "plain": (PLAIN_COOCCURRENCE, PLAIN_RANKING),
}


@dataclass(slots=True)
class Scores:
    """Hit rates at each k and the reciprocal rank sum, over `cases` predictions."""

    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    reciprocal_ranks: float = 0.0
    cases: int = 0

    def add(self, ranked: Sequence[str], target: str) -> None:
        self.cases += 1
        try:
            rank = list(ranked[:TOP]).index(target) + 1
        except ValueError:
            return
        self.reciprocal_ranks += 1.0 / rank
        for k in KS:
            if rank <= k:
                self.hits[k] += 1

    def percent(self) -> dict[str, float]:
        n = max(1, self.cases)
        result = {f"hr@{k}": round(100.0 * self.hits[k] / n, 2) for k in KS}
        result[f"mrr@{TOP}"] = round(100.0 * self.reciprocal_ranks / n, 2)
        return result


@dataclass(slots=True)
class Report:
    dataset: Dataset
    mode: str
    related: Scores = field(default_factory=Scores)
    mix: Scores = field(default_factory=Scores)
    product: Scores = field(default_factory=Scores)
    seconds: dict[str, float] = field(default_factory=dict)
    test_sessions: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.name,
            "mode": self.mode,
            "related": self.related.percent(),
            "mix": self.mix.percent(),
            "product": self.product.percent(),
            "cases": self.related.cases,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


class Progress:
    """One status line on stderr, redrawn at most every half second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._last = 0.0

    def show(self, phase: str, done: int, total: int, started: float, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        rate = done / max(1e-9, now - started)
        line = f"{phase}: {done:,}/{total:,} ({100 * done / max(1, total):.0f}%), {rate:,.0f}/s"
        end = "\n" if force or not self.stream.isatty() else ""
        if self.stream.isatty() or force or done == total:
            print(f"\r{line:<72}", end=end, file=self.stream, flush=True)


class EvalMarket:
    """Every item of the data set, in stock, sold by one advertiser running the default
    campaign: the market the ad decision sees during an evaluation."""

    def __init__(self, items: Sequence[str], popular: Sequence[str]) -> None:
        self.products = {sku: eval_product(sku) for sku in items}
        self.most_viewed = list(popular)
        self.campaign = default_campaign(ADVERTISER)

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        return self.products

    def popular(self, advertiser: str) -> Sequence[str]:
        return self.most_viewed

    def product_context(self, advertiser: str, sku: str) -> ProductContext | None:
        return None  # the replay passes no page context

    def upsell(self, advertiser: str, sku: str) -> Sequence[str]:
        return ()

    def campaigns(self, advertiser: str) -> Sequence[Campaign]:
        return [self.campaign]

    def newcomer_campaigns(self, advertiser: str, size: str) -> Sequence[Campaign]:
        return [self.campaign]  # the default campaign serves anyone in any size

    def ctr(self, advertiser: str, campaign: str) -> float:
        return 0.0


def eval_product(sku: str) -> Product:
    return Product(
        sku,
        sku,
        "https://eval.invalid/",
        "https://eval.invalid/i",
        Decimal(1),
        "EUR",
        price_text="1",
    )


def shopper_id(prefix: str, number: int) -> str:
    return f"{prefix}{number:021d}"


def configure(
    mode: str, overrides: Mapping[str, str] | None = None
) -> tuple[LearningConfig, RankingConfig]:
    """The mode's configs with `name=value` overrides of their fields (for ablations)."""
    learning, ranking = MODES[mode]
    for name, raw in (overrides or {}).items():
        target = next((c for c in (learning, ranking) if name in c.__dataclass_fields__), None)
        if target is None:
            raise ValueError(f"unknown setting {name!r}")
        current = getattr(target, name)
        value: object = (
            raw.lower() in ("1", "true", "yes") if isinstance(current, bool) else type(current)(raw)
        )
        changes: dict[str, Any] = {name: value}
        if target is learning:
            learning = replace(learning, **changes)
        else:
            ranking = replace(ranking, **changes)
    return learning, ranking


async def product_placement(
    ranking: NeighbourCache, market: EvalMarket, advertiser: str, item: str
) -> list[str]:
    """The `product` placement for one item, as `/recs.json?placement=product` ranks it
    (`adserver.core.recommending`, which `adserver.recs.placements` uses): the item's
    viewed-together list from the same cache, then the shop's popular products, never the
    item itself nor a product outside the catalog; no shopper history. The "same category"
    source is empty: the data sets have no categories."""
    key = ("viewed", advertiser, item)
    found = (await ranking.lists([key])).get(key)
    sources = product_sources(
        neighbour_skus(found.neighbours) if found else [], (), market.popular(advertiser)
    )
    chosen = pick(sources, {item}, market.catalog(advertiser), TOP)
    return [r.product.id for r in chosen]


class Replay:
    """Trains on sessions, then replays sessions click by click asking for rankings."""

    def __init__(
        self,
        store: Store,
        mode: str,
        progress: Progress | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        learning_config, self.ranking_config = configure(mode, overrides)
        self.store = store
        self.worker = RelatedWorker(
            LearningStore(store.redis, learning_config), consumer="eval", batch_size=2000
        )
        self.ranking = NeighbourCache(
            LearningStore(store.redis, learning_config),
            self.ranking_config,
            ttl=1e9,
            max_entries=10**7,
        )
        self.progress = progress or Progress()

    async def train(self, sessions: Sequence[Session]) -> dict[str, float]:
        total = sum(len(s) for s in sessions)
        # Kaeru learns only the products an advertiser sells: the data set's items are its
        # catalog (so the model learnt is exactly what it was before that rule).
        items = sorted({item for session in sessions for item, _ in session})
        if items:
            await self.store.replace_catalog(ADVERTISER, map(eval_product, items))
        started = time.monotonic()
        batch: list[tuple[str, ShopperEvent, float]] = []
        done = 0
        for number, session in enumerate(sessions):
            uid = shopper_id("r", number)
            batch += [(uid, ShopperEvent(ADVERTISER, "view", (item,)), ts) for item, ts in session]
            if len(batch) >= INGEST_CHUNK or number == len(sessions) - 1:
                await self.store.record_many(batch)
                done += len(batch)
                batch = []
                self.progress.show("ingest", done, total, started)
        self.progress.show("ingest", done, total, started, force=True)
        ingested = time.monotonic()
        await self.worker.start()
        while await self.worker.step():
            self.progress.show("learn", self.worker.learnt, total, ingested)
        self.progress.show("learn", self.worker.learnt, total, ingested, force=True)
        return {"ingest": ingested - started, "learn": time.monotonic() - ingested}

    async def predictions(
        self, session: Session, uid: str
    ) -> AsyncIterator[tuple[Shopper, dict[str, Suggestions], str]]:
        """After each click but the last: the shopper as the ad server sees them, the
        related-items suggestions, and the item clicked next."""
        for position, (item, ts) in enumerate(session[:-1]):
            await self.store.record_events(uid, [ShopperEvent(ADVERTISER, "view", (item,))], ts)
            shopper = await self.store.load_shopper(uid, now=ts)
            yield shopper, await self.ranking.suggest(shopper), session[position + 1][0]

    async def test(self, sessions: Sequence[Session], report: Report) -> None:
        items = {item for s in (*report.dataset.train, *sessions) for item, _ in s}
        popular = (await self.store.catalog_snapshot([ADVERTISER])).popular[ADVERTISER]
        market = EvalMarket(sorted(items), popular)
        slot = Slot("eval", "eval", TOP)
        total = sum(max(0, len(s) - 1) for s in sessions)
        started = time.monotonic()
        for number, session in enumerate(sessions):
            uid = shopper_id("t", number)
            position = 0
            async for shopper, suggestions, target in self.predictions(session, uid):
                related = suggestions[ADVERTISER].related if suggestions else ()
                report.related.add(related, target)
                item = session[position][0]
                position += 1
                placed = await product_placement(self.ranking, market, ADVERTISER, item)
                report.product.add(placed, target)
                now = shopper.histories[0].last_seen if shopper.histories else 0.0
                decision = decide(shopper, market, slot, (), now, suggestions)
                report.mix.add([p.product.id for p in decision.picks] if decision else [], target)
                self.progress.show("test", report.related.cases, total, started)
        self.progress.show("test", report.related.cases, total, started, force=True)
        report.test_sessions = len(sessions)
        report.seconds["test"] = time.monotonic() - started


async def evaluate(
    store: Store,
    dataset: Dataset,
    mode: str = "tuned",
    progress: TextIO | None = sys.stderr,
    test_limit: int | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Report:
    overrides = overrides or {}
    replay = Replay(store, mode, Progress(progress), overrides)
    label = " ".join([mode, *(f"{k}={v}" for k, v in overrides.items())])
    report = Report(dataset, label)
    report.seconds.update(await replay.train(dataset.train))
    await replay.test(dataset.test[:test_limit] if test_limit else dataset.test, report)
    report.seconds["total"] = sum(report.seconds.values())
    return report


def format_report(report: Report) -> str:
    dataset = report.dataset
    lines = [
        f"kaeru eval {dataset.name} (mode {report.mode})",
        f"train: {len(dataset.train):,} sessions, {dataset.train_events:,} events; "
        f"test: {report.test_sessions:,} sessions, {report.related.cases:,} predictions",
        "",
        f"{'':28}{'HR@1':>8}{'HR@3':>8}{'HR@20':>8}{'MRR@20':>8}",
    ]
    rows = (
        ("session: related only", report.related),
        ("session: mix (ad endpoint)", report.mix),
        ("product: this item only", report.product),
    )
    for label, scores in rows:
        p = scores.percent()
        lines.append(
            f"{label:28}{p['hr@1']:8.2f}{p['hr@3']:8.2f}{p['hr@20']:8.2f}{p['mrr@20']:8.2f}"
        )
    if dataset.baselines:
        lines += ["", "published baselines (session ranking, same split and protocol):"]
        lines += [
            f"{b.name:28}{'':16}{b.hr20:8.2f}{b.mrr20:8.2f}  {b.source}"
            + ("" if b.checked else " (recalled, not re-checked)")
            for b in dataset.baselines
        ]
    seconds = report.seconds
    lines += [
        "",
        f"time: ingest {seconds['ingest']:.1f} s "
        f"({dataset.train_events / max(1e-9, seconds['ingest']):,.0f} events/s), "
        f"learn {seconds['learn']:.1f} s "
        f"({dataset.train_events / max(1e-9, seconds['learn']):,.0f} events/s), "
        f"test {seconds['test']:.1f} s "
        f"({report.related.cases / max(1e-9, seconds['test']):,.0f} predictions/s); "
        f"total {seconds['total']:.1f} s",
    ]
    return "\n".join(lines)
