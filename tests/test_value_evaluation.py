"""`kaeru value-eval`: the predictions measured on a synthetic shop with known parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from adserver.value.evaluation import check_real_data, evaluate_value

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_the_model_beats_last_year_again_and_the_lapsed_order_least() -> None:
    report = evaluate_value(3_000, seed=2, data=None, progress=None)
    value = report.value_12m
    assert value["bgnbd_gamma_gamma"]["mae"] < value["last_year_again"]["mae"]
    assert abs(value["bgnbd_gamma_gamma"]["total_error_pct"]) < 10
    for timing in report.timing.values():
        assert timing.cases > 100
        assert timing.due["lapsed"]["ordered_pct"] < timing.due["due_now"]["ordered_pct"]
    rhythmic = report.timing["rhythmic (gamma gaps, shape 4)"].next_order_mae
    assert rhythmic["k=0.5"] < rhythmic["typical_only"]
    assert max(report.segments, key=lambda s: report.segments[s]["next_year_value"]) == "champions"


def test_the_command_prints_json_and_shows_progress_on_stderr(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "adserver.cli",
            "value-eval",
            "--shoppers",
            "1000",
            "--json",
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    assert set(report["value_12m"]) == {"bgnbd_gamma_gamma", "true_parameters", "last_year_again"}
    assert report["true"]["r"] == 0.9
    assert "simulating shoppers" in run.stderr and "fitting BG/NBD" in run.stderr


def test_the_command_prints_a_readable_table(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "adserver.cli",
            "value-eval",
            "--shoppers",
            "500",
            "--data",
            str(tmp_path / "absent"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "12-month value per shopper" in run.stdout
    assert "days to the next order, MAE" in run.stdout
    assert f"no data folder at {tmp_path / 'absent'}" in run.stdout


def test_too_few_shoppers_is_refused() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "adserver.cli", "value-eval", "--shoppers", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--shoppers must be between" in run.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data sets at {SHARED_DATA}")
def test_the_shared_clickstreams_carry_no_purchases() -> None:
    found = check_real_data(SHARED_DATA)
    assert any(line.startswith("diginetica: no purchases") for line in found), found
    assert any(line.startswith("rsc15-100k: no purchases") for line in found), found


def test_a_data_set_with_a_buys_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "yoochoose-buys.dat").write_text("1,2,3\n")
    assert check_real_data(tmp_path) == [
        "shop: yoochoose-buys.dat may hold purchases (no loader yet)"
    ]
