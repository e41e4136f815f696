"""BG/NBD (how many orders) and Gamma-Gamma (how much per order), fitted per advertiser.

The models themselves (their predictions, pure) are in `adserver/core/value_prediction.py`,
where the segment report and the decision's explanation use them too; this module fits them
by maximum likelihood (Nelder-Mead on the log parameters, pure Python: a few seconds for some
thousands of shoppers, off the hot path). Time is in days.

One difference from the usual setup: the record keeps the mean value of all orders (not of the
repeat orders only), so Gamma-Gamma is fitted on every buyer with x = orders.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from adserver.core.value_prediction import HORIZON_DAYS as HORIZON_DAYS
from adserver.core.value_prediction import BgNbd as BgNbd
from adserver.core.value_prediction import GammaGamma as GammaGamma
from adserver.core.value_prediction import History as History
from adserver.core.value_prediction import ValueModel as ValueModel
from adserver.core.value_prediction import hyp2f1 as hyp2f1
from adserver.core.value_record import ValueRecord


def fit_bgnbd(histories: Iterable[History]) -> BgNbd:
    counted = Counter(histories)
    if not counted:
        raise ValueError("no shopper to fit")
    mean_age = sum(h.age * c for h, c in counted.items()) / sum(counted.values())

    def loss(logs: Sequence[float]) -> float:
        r, alpha, a, b = (math.exp(v) for v in logs)
        try:
            return -BgNbd(r, alpha, a, b).log_likelihood(counted)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf

    start = [0.0, math.log(max(1.0, mean_age)), 0.0, 0.0]
    r, alpha, a, b = (math.exp(v) for v in nelder_mead(loss, start))
    return BgNbd(r, alpha, a, b)


def fit_gamma_gamma(spends: Iterable[tuple[int, float]]) -> GammaGamma:
    """Fitted on (orders, mean order value) of buyers with a positive mean."""
    kept = [(n, m) for n, m in spends if n >= 1 and m > 0]
    if not kept:
        raise ValueError("no buyer to fit")
    mean = sum(m for _, m in kept) / len(kept)

    def loss(logs: Sequence[float]) -> float:
        p, q, g = (math.exp(v) for v in logs)
        try:
            return -GammaGamma(p, q, g).log_likelihood(kept)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf

    p, q, g = (math.exp(v) for v in nelder_mead(loss, [0.0, math.log(2.0), math.log(mean)]))
    return GammaGamma(p, q, g)


def fit_value_model(records: Iterable[ValueRecord], today: int) -> ValueModel:
    sample = list(records)
    orders = fit_bgnbd(History.of(r, today) for r in sample)
    spend = fit_gamma_gamma((r.orders, r.mean_order_cents) for r in sample)
    return ValueModel(orders, spend)


def nelder_mead(
    f: Callable[[Sequence[float]], float],
    start: Sequence[float],
    step: float = 0.5,
    iterations: int = 4000,
    tolerance: float = 1e-10,
) -> list[float]:
    """The minimum of `f` near `start` by the Nelder-Mead simplex (standard coefficients)."""
    n = len(start)
    simplex = [list(start)] + [
        [v + (step if i == j else 0.0) for j, v in enumerate(start)] for i in range(n)
    ]
    values = [f(point) for point in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) <= tolerance * (abs(values[0]) + tolerance):
            break
        centre = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]

        def toward(
            share: float, centre: list[float] = centre, worst: list[float] = worst
        ) -> list[float]:
            return [c + share * (w - c) for c, w in zip(centre, worst, strict=True)]

        reflected = toward(-1.0)
        fr = f(reflected)
        if fr < values[0]:
            expanded = toward(-2.0)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = toward(0.5 if fr >= values[-1] else -0.5)
            fc = f(contracted)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [
                    [(b + v) / 2 for b, v in zip(best, p, strict=True)] for p in simplex[1:]
                ]
                values = [values[0]] + [f(p) for p in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]
