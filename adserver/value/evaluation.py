"""`kaeru value-eval`: the value predictions against what a synthetic population (known
parameters, seeded) really did in the year after the cut-off.

Measured: the fitted parameters next to the true ones; the 12-month value per shopper (MAE and
the error of the total) for BG/NBD + Gamma-Gamma, for the model with the true parameters (the
floor any fit can reach) and for "next year repeats last year"; the days to the next order of
repeat buyers who ordered again (MAE) for several shrinkage weights k; and how often each due
status really ordered within the next `DUE_WINDOW_DAYS` days.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, TextIO

from adserver.core.value_record import ValueRecord
from adserver.value.models import ValueModel, fit_value_model
from adserver.value.rfm import rfm_cuts, rfm_score, segment
from adserver.value.synthetic import (
    CALIBRATION_DAYS,
    HOLDOUT_DAYS,
    TRUE_ORDERS,
    TRUE_SPEND,
    SyntheticShopper,
    simulate,
)
from adserver.value.timing import SHRINK_K, Due, due_status, next_order_day, typical_interval

DUE_WINDOW_DAYS = 30
KS: tuple[float, ...] = tuple(sorted({0.0, 0.5, 1.0, 2.0, 5.0, SHRINK_K})) + (math.inf,)
PURCHASE_WORDS = ("buy", "buys", "purchase", "order", "transaction")


@dataclass(slots=True)
class Timing:
    """The next-order estimate on one population: MAE in days per shrinkage weight, over
    `cases` repeat buyers who ordered again, and each due status's share that ordered."""

    next_order_mae: dict[str, float]
    cases: int
    due: dict[str, dict[str, float]]

    def as_json(self) -> dict[str, Any]:
        return {"next_order_mae_days": self.next_order_mae, "cases": self.cases, "due": self.due}


POPULATIONS = {"memoryless (BG/NBD)": 1.0, "rhythmic (gamma gaps, shape 4)": 4.0}


@dataclass(slots=True)
class ValueReport:
    shoppers: int
    seed: int
    fitted: dict[str, float] = field(default_factory=dict)
    true: dict[str, float] = field(default_factory=dict)
    value_12m: dict[str, dict[str, float]] = field(default_factory=dict)
    timing: dict[str, Timing] = field(default_factory=dict)
    segments: dict[str, dict[str, float]] = field(default_factory=dict)
    real_data: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "shoppers": self.shoppers,
            "seed": self.seed,
            "fitted": self.fitted,
            "true": self.true,
            "value_12m": self.value_12m,
            "timing": {name: t.as_json() for name, t in self.timing.items()},
            "segments": self.segments,
            "real_data": self.real_data,
            "seconds": round(self.seconds, 1),
        }


def _say(progress: TextIO | None, text: str) -> None:
    if progress is not None:
        print(text, file=progress, flush=True)


def evaluate_value(
    shoppers: int = 20_000,
    seed: int = 1,
    data: Path | None = None,
    progress: TextIO | None = sys.stderr,
) -> ValueReport:
    started = time.monotonic()
    report = ValueReport(shoppers, seed, real_data=check_real_data(data))
    cut = CALIBRATION_DAYS
    records = _population(shoppers, seed, 1.0, progress)
    _say(progress, f"fitting BG/NBD and Gamma-Gamma on {len(records):,} shoppers...")
    model = fit_value_model((r for _, r in records), cut)
    report.fitted = _parameters(model)
    report.true = _parameters(ValueModel(TRUE_ORDERS, TRUE_SPEND))
    _say(progress, "predicting the holdout year...")
    report.value_12m = _value_errors(records, model, cut)
    report.segments = _segment_values(records, cut)
    for name, regularity in POPULATIONS.items():
        if regularity != 1.0:
            records = _population(shoppers, seed, regularity, progress)
        typical = typical_interval(r for _, r in records) or float(HOLDOUT_DAYS)
        errors, cases = _next_order_errors(records, typical, cut)
        report.timing[name] = Timing(errors, cases, _due_calibration(records, typical, cut))
    report.seconds = time.monotonic() - started
    return report


def _population(
    shoppers: int, seed: int, regularity: float, progress: TextIO | None
) -> list[tuple[SyntheticShopper, ValueRecord]]:
    """Each simulated shopper with their record at the cut-off (the end of calibration)."""
    records = []
    for i, shopper in enumerate(simulate(shoppers, seed, regularity=regularity), 1):
        if (record := shopper.record_until(CALIBRATION_DAYS)) is not None:
            records.append((shopper, record))
        if i % max(1, shoppers // 5) == 0:
            _say(progress, f"simulating shoppers (regularity {regularity:g}): {i:,}/{shoppers:,}")
    return records


def _parameters(model: ValueModel) -> dict[str, float]:
    o, s = model.orders, model.spend
    values = {"r": o.r, "alpha": o.alpha, "a": o.a, "b": o.b, "p": s.p, "q": s.q, "gamma": s.gamma}
    return {k: round(v, 3) for k, v in values.items()}


def _value_errors(
    records: Sequence[tuple[SyntheticShopper, ValueRecord]], model: ValueModel, cut: int
) -> dict[str, dict[str, float]]:
    actual = [sum(o.cents for o in s.between(cut, cut + HOLDOUT_DAYS)) for s, _ in records]
    oracle = ValueModel(TRUE_ORDERS, TRUE_SPEND)
    predictions = {
        "bgnbd_gamma_gamma": [model.predicted_value(r, cut) for _, r in records],
        "true_parameters": [oracle.predicted_value(r, cut) for _, r in records],
        "last_year_again": [
            float(sum(o.cents for o in s.between(cut - 365, cut))) for s, _ in records
        ],
    }
    total = sum(actual)
    return {
        name: {
            "mae": round(
                fmean(abs(p - a) for p, a in zip(predicted, actual, strict=True)) / 100, 2
            ),
            "mean_actual": round(total / len(actual) / 100, 2),
            "total_error_pct": round(100 * (sum(predicted) - total) / max(1, total), 1),
        }
        for name, predicted in predictions.items()
    }


def _next_order_errors(
    records: Sequence[tuple[SyntheticShopper, ValueRecord]], typical: float, cut: int
) -> tuple[dict[str, float], int]:
    """Repeat buyers who ordered again in the holdout: |predicted - actual| days to that order,
    the prediction counted from the cut-off at the earliest (an overdue shopper: now)."""
    cases = [(r, nxt[0].day) for s, r in records if r.orders >= 2 and (nxt := s.between(cut, 1e9))]
    errors = {}
    for k in KS:
        if math.isinf(k):
            predicted = [max(cut, r.last_day + typical) for r, _ in cases]
        else:
            predicted = [max(cut, next_order_day(r, typical, k)) for r, _ in cases]
        name = "typical_only" if math.isinf(k) else f"k={k:g}"
        errors[name] = round(
            fmean(abs(p - d) for p, (_, d) in zip(predicted, cases, strict=True)), 1
        )
    return errors, len(cases)


def _due_calibration(
    records: Sequence[tuple[SyntheticShopper, ValueRecord]], typical: float, cut: int
) -> dict[str, dict[str, float]]:
    counts: Counter[str] = Counter()
    ordered: Counter[str] = Counter()
    for shopper, record in records:
        status = due_status(record, cut, typical)
        if status is None:
            continue
        for name in (status.value, "all_repeat_buyers"):
            counts[name] += 1
            ordered[name] += bool(shopper.between(cut, cut + DUE_WINDOW_DAYS))
    names = [d.value for d in Due] + ["all_repeat_buyers"]
    return {
        name: {"shoppers": counts[name], "ordered_pct": _pct(ordered[name], counts[name])}
        for name in names
        if counts[name]
    }


def _segment_values(
    records: Sequence[tuple[SyntheticShopper, ValueRecord]], cut: int
) -> dict[str, dict[str, float]]:
    cuts = rfm_cuts((r for _, r in records), cut)
    values: defaultdict[str, list[int]] = defaultdict(list)
    for shopper, record in records:
        name = segment(rfm_score(record, cuts, cut), record)
        values[name].append(sum(o.cents for o in shopper.between(cut, cut + HOLDOUT_DAYS)))
    return {
        name: {"shoppers": len(v), "next_year_value": round(fmean(v) / 100, 2)}
        for name, v in sorted(values.items(), key=lambda item: -fmean(item[1]))
    }


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def check_real_data(data: Path | None) -> list[str]:
    """What each shared data set could give (purchases by the same shopper over time?)."""
    if data is None or not data.is_dir():
        return [f"no data folder at {data}" if data else "no data folder given"]
    found = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(f.name for f in folder.iterdir() if f.is_file())
        buys = [f for f in files if any(w in f.lower() for w in PURCHASE_WORDS)]
        if buys:
            found.append(f"{folder.name}: {', '.join(buys)} may hold purchases (no loader yet)")
        else:
            found.append(f"{folder.name}: no purchases ({', '.join(files)}: views or clicks)")
    return found


def _timing_lines(name: str, timing: Timing) -> list[str]:
    lines = [
        "",
        f"{name}: days to the next order, MAE over {timing.cases:,} repeat buyers who "
        "ordered again",
    ]
    lines += [f"  {k:<14} {mae:>6.1f}" for k, mae in timing.next_order_mae.items()]
    lines.append(f"  due status at the cut-off: ordered within {DUE_WINDOW_DAYS} days")
    lines += [
        f"    {status:<18} {v['ordered_pct']:>5.1f}%  of {int(v['shoppers']):,}"
        for status, v in timing.due.items()
    ]
    return lines


def format_value_report(report: ValueReport) -> str:
    lines = [
        f"Customer value on a synthetic shop: {report.shoppers:,} shoppers, seed {report.seed}, "
        f"a {CALIBRATION_DAYS}-day calibration year, the next {HOLDOUT_DAYS} days held out",
        "",
        "parameter  " + "  ".join(f"{k:>8}" for k in report.true),
        "true       " + "  ".join(f"{v:>8g}" for v in report.true.values()),
        "fitted     " + "  ".join(f"{v:>8g}" for v in report.fitted.values()),
        "",
        "12-month value per shopper     MAE  mean actual  total error",
    ]
    for name, v in report.value_12m.items():
        lines.append(
            f"  {name:<26} {v['mae']:>7.2f}  {v['mean_actual']:>11.2f}  "
            f"{v['total_error_pct']:>+10.1f}%"
        )
    for name, timing in report.timing.items():
        lines += _timing_lines(name, timing)
    lines += ["", "RFM segments at the cut-off: mean value of the next year"]
    lines += [
        f"  {name:<16} {v['next_year_value']:>8.2f}  ({int(v['shoppers']):,} shoppers)"
        for name, v in report.segments.items()
    ]
    lines += ["", "real data:"] + [f"  {line}" for line in report.real_data]
    lines.append(f"\n{report.seconds:.1f} s")
    return "\n".join(lines)
