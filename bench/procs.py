"""The machine and the processes the benchmark starts: each in its own process group (so a
Ctrl-C in the terminal reaches only the bench, which then stops them all), optionally pinned to
a core, with CPU time read from /proc."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

STOP_SECONDS = 5.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def pinned(core: int | None) -> list[str]:
    """`taskset -c CORE` when taskset exists and there is more than one core, else nothing."""
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def pin_running(pid: int, core: int) -> bool:
    """Move every thread of a running process to `core`."""
    if not pinned(core):
        return False
    done = subprocess.run(
        ["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True, check=False
    )
    return done.returncode == 0


def _group_members(pgid: int) -> Iterator[tuple[Path, list[str]]]:
    """(/proc entry, stat fields after the command name) of each live process in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:
            yield entry, fields


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in a process group."""
    ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in _group_members(pgid))
    return ticks / TICKS_PER_SECOND


def group_rss_bytes(pgid: int) -> int:
    """Resident memory (VmRSS) of every live process in a process group."""
    total = 0
    for entry, _ in _group_members(pgid):
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def core_busy_ticks() -> dict[str, tuple[int, int]]:
    """Per core: (busy ticks, total ticks) from /proc/stat."""
    busy: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            busy[name] = (sum(ticks) - idle, sum(ticks))
    return busy


def busy_between(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> dict[str, float]:
    """How busy each core was between two `core_busy_ticks` readings (0..1)."""
    return {
        core: (after[core][0] - before[core][0]) / max(1, after[core][1] - before[core][1])
        for core in after
        if core in before
    }


def core_busy_share(seconds: float = 1.0) -> dict[str, float]:
    """How busy each core is over the next `seconds`, whoever keeps it busy."""
    before = core_busy_ticks()
    time.sleep(seconds)
    return busy_between(before, core_busy_ticks())


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    placement: str
    log: Path

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Everything started here is stopped by `stop_all`, whatever happened."""

    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        log: Path,
        core: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Service:
        prefix = pinned(core)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*prefix, *command],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        placement = f"core {core}" if prefix else "not pinned"
        service = Service(name, process, port, placement, log)
        self.services.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.services):
            stop_group(service.process)
        self.services.clear()


def stop_group(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def run_bounded(command: Sequence[str], timeout: float) -> str:
    """Run a command to completion in its own process group; killed after `timeout` seconds
    or on any interruption. Returns its stdout; raises on a non-zero exit."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        stop_group(process)
        raise
    if process.returncode != 0:
        said = (stderr.strip() or stdout.strip())[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}: {said}")
    return stdout


def nginx_conf(home: Path, port: int) -> str:
    temp = " ".join(
        f"{kind}_temp_path {home / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {home / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    {temp}
    uwsgi_temp_path {home / "uwsgi"}; scgi_temp_path {home / "scgi"};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            empty_gif;
            add_header Cache-Control no-store;
            add_header Set-Cookie "uid=AAAAAAAAAAAAAAAAAAAAAA; Max-Age=34214400; Path=/; SameSite=None; Secure; HttpOnly";
        }}
    }}
}}
"""  # noqa: E501


def machine() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "n/a"
        return (done.stdout or done.stderr).strip().splitlines()[0] if done else "n/a"

    model = "n/a"
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    wrk = first_line(["wrk", "-v"]) if shutil.which("wrk") else "no wrk"
    nginx = first_line(["nginx", "-v"]) if shutil.which("nginx") else "no nginx"

    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "aiohttp": version("aiohttp"),
        "uvloop": version("uvloop"),
        "redis-py": version("redis"),
        "wrk": wrk.split(" Copyright")[0],
        "nginx": nginx.removeprefix("nginx version: "),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load": Path("/proc/loadavg").read_text().strip(),
    }
