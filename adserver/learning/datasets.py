"""Public clickstream data sets for `kaeru eval`, read from disk (never shipped with Kaeru).

Each session becomes one shopper; each click, a product view. DIGINETICA's published split has
no timestamps, so its sessions are spread evenly over the data set's five months in file order
(which is date order); YooChoose keeps its real times.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DIGINETICA_START = 1_451_606_400.0  # 2016-01-01, the data set's first month
DIGINETICA_SPAN_SECONDS = 150 * 86400
SECONDS_BETWEEN_CLICKS = 30.0

Session = list[tuple[str, float]]  # (item, unix time), in click order


@dataclass(frozen=True, slots=True)
class Baseline:
    """A published HR@20 / MRR@20 (percent) on a data set's split, with where it comes from."""

    name: str
    hr20: float
    mrr20: float
    source: str
    checked: bool  # False: recalled from the paper, not re-checked against it


# Published HR@20 / MRR@20 on THIS split (SR-GNN's preprocessing of DIGINETICA), as listed in
# the data set's README. Rows often quoted for "Diginetica" (GRU4Rec 43.82 / 15.46, NARM
# 62.58 / 27.35) come from NARM's own preprocessing, which did not sort clicks by time: they
# are not comparable with this split and are not listed.
DIGINETICA_BASELINES: tuple[Baseline, ...] = (
    Baseline("Item-KNN", 35.75, 11.57, "GCE-GNN paper (SIGIR 2020)", checked=False),
    Baseline(
        "SR-GNN", 50.73, 17.59, "SR-GNN (AAAI 2019); RecBole PR #888: 51.02 / 17.64", checked=True
    ),
    Baseline("GCE-GNN", 54.22, 19.04, "GCE-GNN paper (SIGIR 2020)", checked=False),
    Baseline("MSGIFSR", 55.4, 19.0, "reproduction run, SessionRec-pytorch #3", checked=True),
)


class DatasetError(ValueError):
    pass


@dataclass(slots=True)
class Dataset:
    name: str
    train: list[Session]
    test: list[Session]
    baselines: tuple[Baseline, ...] = ()

    @property
    def train_events(self) -> int:
        return sum(len(s) for s in self.train)

    @property
    def test_events(self) -> int:
        return sum(len(s) for s in self.test)


def default_data_root() -> Path:
    """$KAERU_EVAL_DATA, else ../shared/data next to the current directory or this checkout."""
    if os.environ.get("KAERU_EVAL_DATA"):
        return Path(os.environ["KAERU_EVAL_DATA"])
    checkout = Path(__file__).resolve().parents[2]  # adserver/learning/datasets.py
    for base in (Path.cwd(), checkout):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def load(name_or_path: str, root: Path | None = None) -> Dataset:
    """A data set by name (`diginetica`, `rsc15-100k`) under `root`, or by directory path."""
    path = Path(name_or_path)
    if not path.is_dir():
        path = (root or default_data_root()) / name_or_path
    if not path.is_dir():
        raise DatasetError(f"no data set at {path} (give --data DIR or set KAERU_EVAL_DATA)")
    if (path / "train_sessions.txt").exists():
        return _diginetica(path)
    if (path / "yoochoose-clicks-100k_train_full.txt").exists():
        return _yoochoose(path)
    raise DatasetError(f"{path} holds neither the diginetica nor the rsc15-100k files")


def _diginetica(path: Path) -> Dataset:
    train_lines = _lines(path / "train_sessions.txt")
    test_lines = _lines(path / "test_sessions.txt")
    total = len(train_lines) + len(test_lines)
    step = DIGINETICA_SPAN_SECONDS / max(1, total)
    sessions = [
        [
            (item, DIGINETICA_START + n * step + k * SECONDS_BETWEEN_CLICKS)
            for k, item in enumerate(line.split())
        ]
        for n, line in enumerate(train_lines + test_lines)
    ]
    return Dataset(
        "diginetica",
        sessions[: len(train_lines)],
        sessions[len(train_lines) :],
        DIGINETICA_BASELINES,
    )


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None


def _yoochoose(path: Path) -> Dataset:
    return Dataset(
        "rsc15-100k",
        read_yoochoose(path / "yoochoose-clicks-100k_train_full.txt"),
        read_yoochoose(path / "yoochoose-clicks-100k_test.txt"),
    )


def read_yoochoose(path: Path) -> list[Session]:
    """Sessions ordered by id, clicks by time (the order session-rec uses)."""
    by_session: dict[int, list[tuple[float, str]]] = defaultdict(list)
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                by_session[int(row["SessionId"])].append((float(row["Time"]), row["ItemId"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    return [
        [(item, ts) for ts, item in sorted(clicks, key=lambda c: c[0])]
        for _, clicks in sorted(by_session.items())
    ]
