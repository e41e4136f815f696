"""ARCHITECTURE.md against the code: every file and function it names exists, every module
lives in one of its rooms, and every import keeps to its table of what each room may import."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "ARCHITECTURE.md"
PACKAGES = ("adserver", "pixel", "creatives")
# `path/to/file.py` or `path/to/file.py::Name.attr`; a directory is `path/to/`.
REFERENCE = re.compile(r"`((?:[\w.-]+/)+(?:[\w.-]+\.\w+)?)(?:::([\w.]+))?`")
ANYTHING = "anything"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def references() -> list[tuple[str, str | None]]:
    """What the flows name, from the repository's root (the rooms table names files relative
    to their room: `table_files`)."""
    text = "\n".join(line for line in page().splitlines() if not line.startswith("| "))
    found = {(path, name or None) for path, name in REFERENCE.findall(text)}
    return sorted(found, key=lambda ref: (ref[0], ref[1] or ""))


def table_files() -> list[str]:
    """The files and directories the rooms table names, each from the root."""
    files = []
    for row in [line for line in page().splitlines() if line.startswith("| ")][2:]:
        room, holds, _ = (cell.strip() for cell in row.strip("|").split("|"))
        base = "" if room == "entry points" else re.findall(r"`([^`]+/)`", room)[0]
        for name in re.findall(r"`([\w./-]+(?:\.(?:py|js|html|json)|/))`", holds):
            files.append(base + name)
    return sorted(set(files))


@cache
def defined_names(path: Path) -> frozenset[str]:
    """Dotted names a module defines: functions, classes, their methods, module constants."""
    names: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + node.name)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.Assign):
                names.update(prefix + t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(prefix + node.target.id)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return frozenset(names)


@pytest.mark.parametrize(("path", "name"), references(), ids=lambda v: v or "")
def test_every_file_and_function_the_map_names_exists(path: str, name: str | None) -> None:
    target = ROOT / path
    assert target.exists(), f"ARCHITECTURE.md names {path}, which does not exist"
    if name is not None:
        assert target.suffix == ".py", f"{path}::{name}: names inside .py files only"
        assert name in defined_names(target), f"{path} defines no {name}"


@pytest.mark.parametrize("path", table_files())
def test_every_file_the_rooms_table_names_exists(path: str) -> None:
    assert (ROOT / path).exists(), f"ARCHITECTURE.md's rooms table names {path}: no such file"


def test_the_map_names_enough_to_be_checked() -> None:
    # A typo in the reference syntax would silently check nothing.
    assert len([r for r in references() if r[1] is not None]) >= 60
    assert len(table_files()) >= 50


def rooms_table() -> dict[str, list[str]]:
    """Room (a directory like 'adserver/core/', or a file of the entry points row) -> the rooms
    it may import, as the table says; ANYTHING for the entry points."""
    rows = [line for line in page().splitlines() if line.startswith("| ")][2:]  # no header
    rules: dict[str, list[str]] = {}
    for row in rows:
        room, holds, may_import = (cell.strip() for cell in row.strip("|").split("|"))
        named = re.findall(r"`([^`]+)`", may_import)
        if room == "entry points":
            for entry in re.findall(r"`(adserver/\w+\.py)`", holds):
                rules[entry] = [ANYTHING]
            continue
        (directory,) = re.findall(r"`([^`]+/)`", room)
        if may_import == "—":
            allowed: list[str] = []
        elif may_import == ANYTHING:
            allowed = [ANYTHING]
        elif may_import.startswith("every room above"):
            excluded = set(named)
            allowed = [r for r in rules if r.endswith("/") and r not in excluded]
        else:
            allowed = named
            assert all(a in rules for a in allowed), f"{directory}: unknown room in {named}"
        rules[directory] = allowed
    return rules


def room_of(rules: dict[str, list[str]], module_path: str) -> str | None:
    if module_path in rules:
        return module_path
    rooms = [r for r in rules if r.endswith("/") and module_path.startswith(r)]
    return max(rooms, key=len) if rooms else None


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def path_of_module(module: str) -> str | None:
    """'adserver.store.keys' -> 'adserver/store/keys.py' (or the package's __init__.py)."""
    base = ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return str(candidate.relative_to(ROOT))
    return None


def kaeru_imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            # `from adserver.http.admin import products`: the submodule is what is imported
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.split(".")[0] in PACKAGES and path_of_module(m)]


def test_every_module_lives_in_a_room() -> None:
    rules = rooms_table()
    homeless = [
        str(p.relative_to(ROOT))
        for p in modules()
        if room_of(rules, str(p.relative_to(ROOT))) is None
        and str(p.relative_to(ROOT)) != "adserver/__init__.py"
    ]
    assert not homeless, f"modules in no room of ARCHITECTURE.md: {homeless}"
    assert not kaeru_imports(ROOT / "adserver" / "__init__.py"), "adserver/__init__ imports"


def test_imports_keep_to_the_rooms_table() -> None:
    rules = rooms_table()
    wrong = []
    for path in modules():
        relative = str(path.relative_to(ROOT))
        room = room_of(rules, relative)
        if room is None or rules[room] == [ANYTHING]:
            continue
        for module in kaeru_imports(path):
            target = room_of(rules, path_of_module(module) or "")
            if target is not None and target != room and target not in rules[room]:
                wrong.append(f"{relative} imports {module} ({room} may not import {target})")
    assert not wrong, "\n".join(wrong)


def test_the_rooms_table_is_what_the_check_reads() -> None:
    rules = rooms_table()
    assert rules["adserver/core/"] == []
    assert "pixel/" not in rules["adserver/http/"]
    assert "adserver/http/" in rules["pixel/"]
    assert rules["adserver/app.py"] == [ANYTHING]


def test_only_the_store_talks_to_redis() -> None:
    # The embedded Redis starts servers and pings them; it holds no data access.
    allowed = {"adserver/runtime/embedded_redis.py"}
    talking = []
    for path in modules():
        relative = str(path.relative_to(ROOT))
        if relative.startswith("adserver/store/") or relative in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            talking += [f"{relative}: {n}" for n in names if n.split(".")[0] == "redis"]
    assert not talking, talking


def test_the_readme_table_of_contents_links_the_map() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    contents = readme.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert "(ARCHITECTURE.md)" in contents
