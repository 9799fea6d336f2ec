"""Find the files to ingest under the user's paths, reporting the paths that cannot be walked."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SKIPPED_DIRECTORIES = frozenset({
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", "site-packages",
})


@dataclass(frozen=True)
class Found:
    """A file to ingest, or (with `problem`) a path that could not be used and why."""

    path: Path
    problem: str | None = None


def _is_virtualenv(directory: Path) -> bool:
    return (directory / "pyvenv.cfg").exists()


def _skip_directory(directory: Path) -> bool:
    name = directory.name
    return name.startswith(".") or name in SKIPPED_DIRECTORIES or _is_virtualenv(directory)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not _matches(relative, include):
        return False
    return not (exclude and _matches(relative, exclude))


def walk(
    roots: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[Found]:
    """Yield each file once (by its resolved path), following symlinks but never round a loop."""
    seen_files: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            problem = "broken symlink" if root.is_symlink() else "path does not exist"
            yield Found(root.absolute(), problem)
            continue
        if root.is_file():
            resolved = root.resolve()
            if resolved not in seen_files:
                seen_files.add(resolved)
                yield Found(resolved)
            continue
        yield from _walk_directory(root, include, exclude, seen_files)


def _walk_directory(
    root: Path, include: Sequence[str], exclude: Sequence[str], seen_files: set[Path]
) -> Iterator[Found]:
    visited: set[Path] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        real = directory.resolve()
        if real in visited:
            yield Found(directory.absolute(), "symlink loop: this folder was already walked")
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            yield Found(directory.absolute(), f"cannot list folder: {error.strerror or error}")
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():
                if not _skip_directory(path):
                    stack.append(path)
                continue
            relative = path.relative_to(root).as_posix()
            if not _selected(relative, include, exclude):
                continue
            if entry.is_symlink() and not path.exists():
                yield Found(path.absolute(), "broken symlink")
                continue
            if not entry.is_file():
                continue
            resolved = path.resolve()
            if resolved not in seen_files:
                seen_files.add(resolved)
                yield Found(resolved)
        stack.sort(key=lambda item: item.name, reverse=True)
