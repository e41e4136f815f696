"""What the related-items learner reads, remembers and teaches (value objects): a stream
event, a shopper's state between batches, the lessons of one batch, and how it learns
(`LearningConfig`). `adserver.learning.cooccurrence` does the learning; the store keeps them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

CREDIT_SCALE = 65535  # what a shopper credited to a pair is remembered in 1/65535ths


@dataclass(frozen=True, slots=True)
class LearningConfig:
    """How the worker turns events into neighbour weights (see adserver.learning.cooccurrence)."""

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
    # (advertiser, unix day) -> sku -> views that UTC day, undecayed: what `trending` compares
    popular_days: dict[tuple[str, int], dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
