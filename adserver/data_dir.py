"""The data dir, private to the user Kaeru runs as.

It holds the signing key, the embedded Redis's AOF (every shopper's history) and the events
Redis could not take before an exit, so it is checked once at start-up, before anything is
written there:
- missing: created 0700;
- owned by another user: refused (that user could read every file, or swap the key);
- ours but open to others (earlier versions made it 0755 and its files 0644): tightened to
  0700, its directories to 0700 and its files to 0600, with a warning naming what changed.
Files Kaeru and its Redis create afterwards are 0600 whatever the umask (see
`embedded_redis`, `event_writer.spill`, `settings.with_secret_from_data_dir`).
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path

from adserver.settings import SettingsError

log = logging.getLogger(__name__)
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
UMASK = 0o077  # for processes writing into the data dir (the embedded redis-server)


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
    """Take group and other permissions off `root` and everything in it (directories 0700,
    files 0600; symbolic links and sockets are left alone). Returns what could not be changed."""
    problems: list[str] = []
    tightened: list[str] = []
    for path in (root, *_tree(root)):
        try:
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                wanted = PRIVATE_DIR
            elif stat.S_ISREG(info.st_mode):
                wanted = PRIVATE_FILE
            else:
                continue
            if stat.S_IMODE(info.st_mode) & 0o077:
                path.chmod(stat.S_IMODE(info.st_mode) & wanted)
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


def _tree(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):  # does not follow links
        found.extend(Path(directory, entry) for entry in (*subdirectories, *files))
    return found


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no such user"
