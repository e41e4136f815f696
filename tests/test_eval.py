"""Quality of related items on real clickstreams, through the real ingestion, worker and
ranking code (`kaeru eval`)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adserver.learning import datasets
from adserver.learning.evaluation import (
    ADVERTISER,
    TOP,
    EvalMarket,
    Replay,
    Report,
    evaluate,
    format_report,
    product_placement,
)
from adserver.learning.related import PreparedList, RankingConfig, rank_item
from adserver.recs.placements import RecsQuery, recommend
from adserver.store import Store, StoreLimits, connect

LONG_AGO = StoreLimits(lookback_seconds=20 * 365 * 86400, stream_maxlen=10**9)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url, timeout=30.0), LONG_AGO)
    yield store
    await store.close()


def read_golden(path: Path) -> dict[tuple[int, int], list[tuple[str, float]]]:
    golden = {}
    with path.open() as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            pairs = zip(row["Recommendations"].split(","), row["Scores"].split(","), strict=True)
            top = [(item, float(score)) for item, score in list(pairs)[:20] if float(score) > 0]
            golden[(int(row["SessionId"]), int(row["Position"]))] = top
    return golden


def same_top(ours: list[tuple[str, float]], gold: list[tuple[str, float]]) -> bool:
    """Equal top lists, where items tied at the cut-off may differ (any of them is right)."""
    mine = ours[: len(gold)]
    if not gold or len(mine) != len(gold):
        return not gold and not mine
    cut = gold[-1][1]
    if any(abs(a[1] - b[1]) > 1e-9 for a, b in zip(mine, gold, strict=True)):
        return False
    above = {item for item, score in gold if score > cut + 1e-9}
    return above == {item for item, score in mine if score > cut + 1e-9}


async def test_plain_mode_reproduces_session_rec_association_rules(
    store: Store, shared_data: Path
) -> None:
    data = shared_data / "rsc15-100k"
    dataset = datasets.load(str(data))
    golden = read_golden(data / "recoms_rsc15_100k_ar.csv")
    with (data / "yoochoose-clicks-100k_test.txt").open() as handle:
        rows = csv.reader(handle, delimiter="\t")
        session_ids = sorted({int(row[0]) for row in rows if row[0].isdigit()})
    replay = Replay(store, "plain")
    await replay.train(dataset.train)

    matched = exact = 0
    for session_id in sorted({sid for sid, _ in golden}):
        session = dataset.test[session_ids.index(session_id)]
        uid = f"g{session_id:021d}"
        position = 0
        async for shopper, suggestions, _next in replay.predictions(session, uid):
            gold = golden.get((session_id, position))
            if gold is not None:
                last = shopper.histories[0].viewed[0]
                lists = await replay.ranking.lists([("viewed", ADVERTISER, last)])
                weights = {s: w for s, w, _ in lists[("viewed", ADVERTISER, last)].neighbours}
                best = max(weights.values())
                ranked = suggestions[ADVERTISER].related
                ours = [(sku, weights[sku] / best) for sku in ranked[:20]]
                matched += same_top(ours, gold)
                exact += {s for s, _ in ours[: len(gold)]} == {s for s, _ in gold}
            position += 1
    assert len(golden) == 387
    # Tie-aware: 387 expected; the reference breaks ties by insertion order, Redis by name,
    # which makes plain set equality lower (reported, not asserted).
    print(f"golden lists reproduced: {matched}/387 (tie-aware), {exact}/387 (same set)")
    assert matched >= 381


async def test_related_items_on_a_diginetica_slice_stay_well_above_a_floor(
    store: Store, shared_data: Path
) -> None:
    full = datasets.load(str(shared_data / "diginetica"))
    piece = datasets.Dataset("diginetica-slice", full.train[-15_000:], full.test[:500])
    report: Report = await evaluate(store, piece, "tuned", progress=None)
    related = report.related.percent()
    print(f"diginetica slice: {related}")
    # Measured on this slice: HR@20 43.5, MRR@20 18.2. The floors are far below, so noise
    # cannot fail them, while losing the tuning does (plain co-occurrence: 24.4 and 8.6).
    assert related["hr@20"] >= 35.0
    assert related["mrr@20"] >= 14.0


def test_eval_command_prints_json_metrics(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "train_sessions.txt").write_text("1 2 3\n1 2\n2 3 4\n1 2 3\n" * 5)
    (data / "test_sessions.txt").write_text("1 2 3\n2 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "adserver.cli", "eval", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["related"]) == {"hr@1", "hr@3", "hr@20", "mrr@20"}
    assert set(report["mix"]) == set(report["related"])
    assert report["related"]["hr@20"] == 100.0  # 1 -> 2 -> 3 and 2 -> 3 are in training
    assert "test:" in result.stderr  # progress


def tiny_data_set(tmp_path: Path) -> Path:
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "train_sessions.txt").write_text("1 2 3\n1 2\n2 3 4\n1 2 3\n" * 5)
    (data / "test_sessions.txt").write_text("1 2 3\n2 3\n")
    return data


def test_eval_reports_the_product_placement_next_to_the_session_ranking(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adserver.cli", "eval", str(tiny_data_set(tmp_path)), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["product"]) == set(report["related"])
    # 1 -> 2 and 2 -> 3 were viewed together in training: the next item of each case is
    # among the current item's neighbours, the item alone being the whole input.
    assert report["product"]["hr@20"] == 100.0


def test_the_product_ranking_is_the_item_neighbours_without_the_item_itself() -> None:
    prepared = PreparedList(10.0, (("a", 1.0), ("b", 3.0), ("x", 9.0)), {"a": 4, "b": 2, "x": 1})
    assert rank_item("x", prepared, RankingConfig()) == ["b", "a"]


def test_the_printed_report_lists_the_baselines_measured_on_this_split(tmp_path: Path) -> None:
    dataset = datasets.load(str(tiny_data_set(tmp_path)))
    report = Report(dataset, "tuned", seconds={"ingest": 1.0, "learn": 1.0, "test": 1.0})
    report.seconds["total"] = 3.0
    printed = format_report(report)
    assert "product: this item only" in printed
    for row in ("SR-GNN", "50.73", "17.59", "GCE-GNN", "54.22", "Item-KNN", "35.75", "MSGIFSR"):
        assert row in printed
    assert "recalled, not re-checked" in printed
    # Rows from NARM's own preprocessing are not comparable with this split.
    for wrong in ("GRU4Rec", "NARM", "62.58", "63.03", "43.82"):
        assert wrong not in printed


async def test_the_product_placement_on_a_diginetica_slice_stays_above_a_floor(
    store: Store, shared_data: Path
) -> None:
    full = datasets.load(str(shared_data / "diginetica"))
    piece = datasets.Dataset("diginetica-slice", full.train[-15_000:], full.test[:500])
    report: Report = await evaluate(store, piece, "tuned", progress=None)
    product = report.product.percent()
    print(f"diginetica slice, product placement: {product}")
    # Measured on this slice: HR@20 21.74, MRR@20 7.26 as the shop's product placement ranks
    # (the neighbour list's stored order, then popular; the session ranking: 43.5 / 18.2); the
    # ranking code's last-item ranking (`NeighbourCache.related_to`) gave 20.46 / 6.70.
    # The floors are far enough below for noise; the item alone is far from the session ranking.
    assert product["hr@20"] >= 15.0
    assert product["mrr@20"] >= 4.5
    assert product["hr@20"] < report.related.percent()["hr@20"] - 10.0


def test_eval_of_a_missing_data_set_says_where_it_looked(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adserver.cli", "eval", "nothing-here", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(tmp_path / "nothing-here") in result.stderr


async def test_the_evaluated_product_placement_is_what_recs_json_ranks(store: Store) -> None:
    """`kaeru eval`'s product placement and the shop's `product` placement
    (`adserver.recs.placements.recommend`) answer the same list for the same learnt model."""
    sessions: list[datasets.Session] = [
        [("1", 1.0), ("2", 2.0), ("3", 3.0)],
        [("1", 4.0), ("3", 5.0)],
        [("4", 6.0), ("5", 7.0)],
        [("5", 8.0), ("6", 9.0)],
    ]
    replay = Replay(store, "tuned")
    await replay.train(sessions)
    popular = (await store.catalog_snapshot([ADVERTISER])).popular[ADVERTISER]
    market = EvalMarket([str(n) for n in range(1, 7)], popular)
    for item in ("1", "3", "5", "6"):
        key = ("viewed", ADVERTISER, item)
        lists = await replay.ranking.lists([key])
        shipped = recommend(
            RecsQuery(ADVERTISER, "product", item, TOP),
            None,
            None,
            lists,
            market.catalog(ADVERTISER),
            market.popular(ADVERTISER),
            lambda sku: (),
        )
        evaluated = await product_placement(replay.ranking, market, ADVERTISER, item)
        assert evaluated == [r.product.id for r in shipped]
        assert item not in evaluated
        assert set(evaluated) == {str(n) for n in range(1, 7)} - {item}  # popular fills up


def test_the_default_data_root_is_the_shared_data_beside_the_checkout(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from elsewhere (a cron job's cwd, say) without KAERU_EVAL_DATA, `kaeru eval` still
    finds ../shared/data next to the checkout it runs from."""
    monkeypatch.delenv("KAERU_EVAL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert datasets.default_data_root().resolve() == shared_data.resolve()
