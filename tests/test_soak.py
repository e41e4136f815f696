"""The soak (bench/soak.py), short: a real `kaeru serve` and a private Redis under a fixed-rate
mix for 16 s, Redis stopped for 2 s in the middle. The same musts as the 10-minute run: no
failed pixel or batch, no 5xx, every acknowledged event in Redis, nothing dropped or left unsent,
a clean exit on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def test_short_soak_with_a_redis_restart_loses_nothing(tmp_path: Path) -> None:
    out, summary_file = tmp_path / "SOAK.md", tmp_path / "soak.json"
    command = [sys.executable, str(SOAK), "--duration", "16", "--rate", "150"]
    command += ["--redis-down", "2", "--out", str(out), "--json", str(summary_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    summary = json.loads(summary_file.read_text())
    assert summary["passed"] and all(summary["musts"].values()), summary["musts"]
    events = summary["events"]["total"]
    assert events["acknowledged"] == events["found"] > 1000 and events["missing"] == 0
    assert summary["pixel_failures"] == 0 and summary["server_errors"] == 0
    assert summary["restart"]["keys_after"] >= summary["restart"]["keys_before"] > 0
    # Redis was really away: the pixel answered from the buffer, replayed afterwards.
    assert summary["kaeru_counters"]["kaeru_events_buffered_total"] > 0
    counters = summary["kaeru_counters"]
    assert sum(v for k, v in counters.items() if k.startswith("kaeru_events_shed")) == 0
    assert summary["exit_code"] == 0
    # Ads served while Redis was away were counted once it was back.
    impressions = summary["impressions"]
    assert impressions["counted"] >= impressions["served"] > 100, impressions
    assert "| every acknowledged event found in Redis" in out.read_text()
