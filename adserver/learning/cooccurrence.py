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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from adserver.core.lessons import CREDIT_SCALE, LearningConfig, Lessons, ShopperState, StreamEvent

DECAY_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z


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
            day = lessons.popular_days[(event.advertiser, event.ts_ms // 86_400_000)]
            for item in event.items:
                _learn_view(lessons, state, event.advertiser, item, scale, config)
                day[item] += 1.0
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
