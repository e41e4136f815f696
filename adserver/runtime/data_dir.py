"""The data dir, private to the user Kaeru runs as.

It holds the signing key, the embedded Redis's AOF (every shopper's history) and the events
Redis could not take before an exit, so it is checked once at start-up, before anything is
written there:
- missing: created 0700;
- owned by another user: refused (that user could read every file, or swap the key);
- ours but open to others (earlier versions made it 0755 and its files 0644): tightened, the
  directory to 0700 and Kaeru's own files and directories in it to 0600/0700 (group and other
  bits off; anything else in it is left alone), with a warning naming what changed.
Files Kaeru and its Redis create afterwards are 0600 whatever the umask (see
`embedded_redis`, `event_writer.spill`, `settings.with_secret_from_data_dir`).
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path

from adserver.config.settings import SettingsError

log = logging.getLogger(__name__)
PRIVATE_DIR = 0o700
UMASK = 0o077  # for processes writing into the data dir (the embedded redis-server)
# What Kaeru and its embedded Redis keep in the data dir (older Redis: a top-level AOF).
OWN = (
    "secret",
    "demo-token",
    "redis.log",
    "appendonlydir",
    "appendonly.aof",
    "dump.rdb",
    "unsent",
)


def prepare_data_dir(path: Path, name: str = "KAERU_DATA_DIR") -> None:
    """Create `path` private, or check and tighten it; SettingsError naming `name` (the
    variable or flag that chose it) if it cannot be ours alone."""
    where = f"{name}={path}"
    if path.exists() and not path.is_dir():
        raise SettingsError([f"{where}: not a directory"])
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        info = path.stat()
    except OSError as exc:
        raise SettingsError([f"{where}: cannot create it: {exc.strerror}"]) from None
    if info.st_uid != os.geteuid():
        raise SettingsError(
            [
                f"{where}: owned by uid {info.st_uid} ({_user(info.st_uid)}), not by uid "
                f"{os.geteuid()} ({_user(os.geteuid())}) that runs Kaeru; its files (the "
                "signing key, every shopper's history) must be private to Kaeru's user: "
                "chown the directory to that user or choose another one"
            ]
        )
    problems = make_private(path)
    if problems:
        raise SettingsError([f"{where}: cannot make it private: {p}" for p in problems])


def make_private(root: Path) -> list[str]:
    """Take group and other permissions off `root` and off Kaeru's own files in it (`OWN`,
    recursively); other entries are left as they are, unreachable to others through `root`.
    Owner bits are kept, symbolic links and sockets skipped. Returns what could not be changed."""
    problems: list[str] = []
    tightened: list[str] = []
    for path in (root, *_own_entries(root)):
        try:
            info = path.lstat()
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue
            if stat.S_IMODE(info.st_mode) & 0o077:
                path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)
                tightened.append(str(path.relative_to(root)))
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    if tightened:
        log.warning(
            "data dir %s was readable by other users: made private (%s)",
            root,
            ", ".join(tightened[:5]) + (f" and {len(tightened) - 5} more" if tightened[5:] else ""),
        )
    return problems


def _own_entries(root: Path) -> list[Path]:
    found: list[Path] = []
    for name in OWN:
        top = root / name
        found.append(top)
        if top.is_dir() and not top.is_symlink():
            for directory, subdirectories, files in os.walk(top):  # does not follow links
                found.extend(Path(directory, entry) for entry in (*subdirectories, *files))
    return [path for path in found if path.exists() or path.is_symlink()]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no such user"
