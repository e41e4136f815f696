"""What the learnt model suggests for one shopper at one shop: the value object the decision
reads (`adserver.learning.related` fills it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Ranking = tuple[str, ...]


class Suggestions:
    """Ranked candidates for one shop, before catalog and purchase filtering.

    Each ranking may be given as a function and is then computed on first use: most decisions
    fill their slot from the cart and recent views and never look at one."""

    __slots__ = ("_cross_sell", "_related")

    def __init__(
        self,
        related: Sequence[str] | Callable[[], Sequence[str]] = (),
        cross_sell: Sequence[str] | Callable[[], Sequence[str]] = (),
    ) -> None:
        self._related = related
        self._cross_sell = cross_sell

    @property
    def related(self) -> Ranking:
        if not isinstance(self._related, tuple):
            self._related = tuple(self._related() if callable(self._related) else self._related)
        return self._related

    @property
    def cross_sell(self) -> Ranking:
        if not isinstance(self._cross_sell, tuple):
            made = self._cross_sell() if callable(self._cross_sell) else self._cross_sell
            self._cross_sell = tuple(made)
        return self._cross_sell

    def __repr__(self) -> str:
        return f"Suggestions(related={self.related!r}, cross_sell={self.cross_sell!r})"
