"""The data dir holds every shopper's history (the AOF, the unsent events): it is private to
the user Kaeru runs as, whatever the umask, and a directory another user owns is refused."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from adserver.buffering.buffered_writer import EventWriter
from adserver.config.settings import SettingsError
from adserver.runtime.data_dir import prepare_data_dir
from adserver.runtime.embedded_redis import free_port
from tests.test_cli import get, kaeru_env, wait_ready
from tests.test_restart_safety import FlakyRedis, view

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_under(root: Path) -> dict[str, int]:
    """Mode of every directory and regular file under `root` (itself included)."""
    found = {".": mode(root)}
    for path in root.rglob("*"):
        if path.is_dir() or path.is_file():
            found[str(path.relative_to(root))] = mode(path)
    return found


def private(modes: dict[str, int], root: Path) -> dict[str, int]:
    """The entries whose mode is not 0700 (directories) or 0600 (files): should be none."""
    return {
        name: m for name, m in modes.items() if m != (0o700 if (root / name).is_dir() else 0o600)
    }


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def test_serve_keeps_the_data_dir_private_under_a_permissive_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"  # created by kaeru
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)],
            env=kaeru_env(data),
            stdout=output,
            stderr=subprocess.STDOUT,
            umask=0o022,  # the usual default: new files 0644, new directories 0755
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", process, log)
        assert get(base + "/px?a=shop1&e=view&i=sku-1")[0] == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, log.read_text()
    modes = modes_under(data)
    assert {"secret", "redis.log", "appendonlydir"} <= modes.keys()
    assert any(name.endswith(".aof") for name in modes), modes
    assert private(modes, data) == {}, log.read_text()


def test_unsent_events_are_spilled_to_private_files(tmp_path: Path) -> None:
    writer = EventWriter(FlakyRedis())
    writer.buffer.extend([view("u1", "sku-1"), view("u2", "sku-2")])
    unsent = tmp_path / "data" / "unsent"
    with umask(0o022):
        path = writer.spill(unsent)
    assert path is not None and path.suffix == ".jsonl"
    assert mode(path) == 0o600
    assert mode(unsent) == 0o700


def test_an_open_data_dir_of_ours_is_made_private_files_and_all(tmp_path: Path) -> None:
    """A data dir from an older Kaeru (0755, AOF and unsent files 0644) is tightened at start."""
    data = tmp_path / "old"
    (data / "appendonlydir").mkdir(parents=True)
    (data / "unsent").mkdir()
    for name in ("appendonlydir/appendonly.aof.1.incr.aof", "unsent/events-1-2.jsonl", "secret"):
        (data / name).write_text("x\n")
        (data / name).chmod(0o644)
    for directory in (data, data / "appendonlydir", data / "unsent"):
        directory.chmod(0o755)
    prepare_data_dir(data)
    assert private(modes_under(data), data) == {}


def test_a_new_data_dir_is_created_private(tmp_path: Path) -> None:
    with umask(0o022):
        prepare_data_dir(tmp_path / "new" / "kaeru")
    assert mode(tmp_path / "new" / "kaeru") == 0o700


@needs_root
def test_a_data_dir_owned_by_another_user_is_refused_naming_the_variable(tmp_path: Path) -> None:
    """Another user could read (or swap) every file in it. Refused before anything is written
    there, with the reason: a real `kaeru catalog import` that would otherwise succeed."""
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, NOBODY, NOBODY)
    feed = tmp_path / "feed.ndjson"
    feed.write_bytes(orjson.dumps({"id": "sku-1", "title": "A", "price": "1.00"}) + b"\n")
    result = subprocess.run(
        [sys.executable, "-m", "adserver.cli", "catalog", "import", str(feed)]
        + ["--advertiser", "shop1"],
        env=kaeru_env(foreign),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"KAERU_DATA_DIR={foreign}" in result.stderr
    assert f"owned by uid {NOBODY}" in result.stderr
    assert list(foreign.iterdir()) == []


@needs_root
def test_the_data_dir_flag_is_named_when_it_chose_the_directory(tmp_path: Path) -> None:
    os.chown(tmp_path, NOBODY, NOBODY)
    try:
        with pytest.raises(SettingsError, match=f"--data-dir={tmp_path}: owned by uid {NOBODY}"):
            prepare_data_dir(tmp_path, name="--data-dir")
    finally:
        os.chown(tmp_path, os.geteuid(), os.getegid())


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="KAERU_DATA_DIR=.*: not a directory"):
        prepare_data_dir(tmp_path / "file")


def test_tightening_touches_only_kaerus_own_files_and_keeps_owner_bits(tmp_path: Path) -> None:
    """A data dir pointed at a directory holding other things: those are not rewritten (the
    0700 directory already keeps others out of them)."""
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    (tmp_path / "tool.sh").chmod(0o755)
    (tmp_path / "secret").write_text("x" * 40)
    (tmp_path / "secret").chmod(0o640)
    tmp_path.chmod(0o755)
    prepare_data_dir(tmp_path)
    assert mode(tmp_path) == 0o700
    assert mode(tmp_path / "tool.sh") == 0o755
    assert mode(tmp_path / "secret") == 0o600
