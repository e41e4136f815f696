"""Learning which products go together, from the event stream, one batch at a time (pure).

For every product view the shopper's previous few views (their *window*) pair with it, both
ways, with a weight that falls with the distance between the two views (1/log2(1 + d)).
Purchases pair with the
other items of the same order and with the shopper's earlier purchases (`cross_sell`).
Every increment is scaled by a forward-decay factor 2^((t - EPOCH) / half_life): newer
evidence weighs exponentially more, so last season's pairs fade from the ranking without ever
rewriting old scores.

A shopper's influence is bounded: while two products stay in the shopper's window, their pair
gains at most weight 1 from that shopper (`credit_once`: what was credited is remembered for
the pairs of the window only, a few hundred bytes, instead of every pair the shopper ever
formed); repeated views of one product in a row teach no pairs, and after
`max_events_per_shopper` events within `memory_seconds` a shopper teaches nothing more.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

DECAY_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
CREDIT_SCALE = 65535  # what a shopper credited to a pair is remembered in 1/65535ths


@dataclass(frozen=True, slots=True)
class LearningConfig:
    """How the worker turns events into neighbour weights (see the module docstring)."""

    window: int = 10  # earlier distinct views of the shopper that pair with a new view
    distance_weighting: str = "log"  # "log": 1/log2(1+d); "flat": 1
    reverse_weight: float = 1.0  # weight of later -> earlier, relative to earlier -> later
    collapse_repeats: bool = True  # a view of the item just viewed teaches no pair
    self_pairs: bool = False  # a repeated item pairs with itself (association rules do)
    credit_once: bool = True  # a shopper credits an ordered pair once, at its best distance
    half_life_days: float = 30.0  # forward decay; 0 disables it
    max_events_per_shopper: int = 500  # per `memory_seconds`; 0: unbounded
    memory_seconds: int = 86400  # how long the learner remembers a shopper's window and credit
    cap: int = 200  # neighbours kept per product (trimmed when a list doubles); 0: unbounded
    popular_cap: int = 100_000  # products kept in an advertiser's popularity (same trimming)


# Association rules as in session-rec: every pair of views within a session, counted once per
# occurrence, both directions alike, no decay, no bounds.
PLAIN_COOCCURRENCE = LearningConfig(
    window=1_000_000,
    distance_weighting="flat",
    reverse_weight=1.0,
    collapse_repeats=False,
    self_pairs=True,
    credit_once=False,
    half_life_days=0.0,
    max_events_per_shopper=0,
    cap=0,
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """The fields of a stream entry the learner needs."""

    uid: str
    advertiser: str
    kind: str
    items: tuple[str, ...]
    ts_ms: int


@dataclass(slots=True)
class ShopperState:
    """What the learner remembers of one shopper at one shop between batches."""

    viewed: list[str] = field(default_factory=list)  # oldest first, at most `window`
    bought: list[str] = field(default_factory=list)
    events: int = 0
    # "a\x1fb" -> weight credited to the ordered pair a-then-b, for pairs of the window only
    credit: dict[str, float] = field(default_factory=dict)


Weights = dict[tuple[str, str], dict[str, float]]  # (advertiser, item) -> neighbour -> weight


@dataclass(slots=True)
class Lessons:
    """Increments learnt from one batch, summed, ready to be written in one go."""

    co_viewed: Weights = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    co_bought: Weights = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    popular: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


def sold_only(
    events: Iterable[StreamEvent], sells: Callable[[str, str], bool]
) -> tuple[list[StreamEvent], int]:
    """The events with only the items their advertiser sells, and how many items were left
    out: a product that is not in the catalog teaches nothing (popularity, neighbours)."""
    kept: list[StreamEvent] = []
    unsold = 0
    for event in events:
        items = tuple(item for item in event.items if sells(event.advertiser, item))
        unsold += len(event.items) - len(items)
        kept.append(event if len(items) == len(event.items) else replace(event, items=items))
    return kept, unsold


def decay_factor(ts_ms: int, half_life_days: float) -> float:
    if half_life_days <= 0:
        return 1.0
    return float(2.0 ** ((ts_ms - DECAY_EPOCH_MS) / (half_life_days * 86_400_000)))


def learn(
    events: Iterable[StreamEvent],
    states: Mapping[tuple[str, str], ShopperState],
    config: LearningConfig,
) -> Lessons:
    """Fold events (in stream order) into increments; updates `states` in place."""
    lessons = Lessons()
    for event in events:
        if event.kind not in ("view", "purchase") or not event.items:
            continue
        state = states[(event.uid, event.advertiser)]
        bounded = config.max_events_per_shopper > 0
        if bounded and state.events >= config.max_events_per_shopper:
            continue
        state.events += 1
        scale = decay_factor(event.ts_ms, config.half_life_days)
        if event.kind == "view":
            for item in event.items:
                _learn_view(lessons, state, event.advertiser, item, scale, config)
        else:
            _learn_purchase(lessons, state, event.advertiser, event.items, scale, config)
    return lessons


def pair_weight(distance: int, config: LearningConfig) -> float:
    return 1.0 / math.log2(1 + distance) if config.distance_weighting == "log" else 1.0


def _learn_view(
    lessons: Lessons,
    state: ShopperState,
    advertiser: str,
    item: str,
    scale: float,
    config: LearningConfig,
) -> None:
    lessons.popular[advertiser][item] += scale
    window = state.viewed
    if config.collapse_repeats and window and window[-1] == item:
        return
    for distance, earlier in enumerate(reversed(window), start=1):
        if earlier == item and not config.self_pairs:
            continue
        weight = pair_weight(distance, config)
        if config.credit_once:
            pair = f"{earlier}\x1f{item}"
            credited = state.credit.get(pair, 0.0)
            if weight <= credited:
                continue
            # Remembered in 1/65535ths, rounded up (as stored, see store.learning), so the
            # model does not depend on where batches start and end.
            state.credit[pair] = math.ceil(weight * CREDIT_SCALE) / CREDIT_SCALE
            weight -= credited
        lessons.co_viewed[(advertiser, earlier)][item] += weight * scale
        lessons.co_viewed[(advertiser, item)][earlier] += weight * scale * config.reverse_weight
    window.append(item)
    left = window[: max(0, len(window) - config.window)]
    del window[: len(left)]
    if state.credit and any(gone not in window for gone in left):
        inside = set(window)
        state.credit = {
            pair: weight
            for pair, weight in state.credit.items()
            if all(part in inside for part in pair.split("\x1f"))
        }


def _learn_purchase(
    lessons: Lessons,
    state: ShopperState,
    advertiser: str,
    items: tuple[str, ...],
    scale: float,
    config: LearningConfig,
) -> None:
    order = list(dict.fromkeys(items))
    for index, item in enumerate(order):
        for other in (*order[:index], *state.bought):
            if other != item:
                lessons.co_bought[(advertiser, item)][other] += scale
                lessons.co_bought[(advertiser, other)][item] += scale
    state.bought = [*state.bought, *order][-config.window :]
