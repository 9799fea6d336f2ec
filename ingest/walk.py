"""Find the files to ingest under the user's paths, reporting the paths that cannot be walked."""

from __future__ import annotations

import errno
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
    """Hidden folders, version-control and tool folders, and virtual environments are never walked."""
    name = directory.name
    return name.startswith(".") or name in SKIPPED_DIRECTORIES or _is_virtualenv(directory)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not _matches(relative, include):
        return False
    return not (exclude and _matches(relative, exclude))


def _dangling_reason(path: Path) -> str | None:
    """Why a path cannot be followed (missing, broken symlink, symlink loop), or None when it can."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop: the link points back to itself"
        if path.is_symlink():
            return "broken symlink: its target does not exist"
        if error.errno == errno.ENOENT:
            return "path does not exist"
        return f"cannot read: {error.strerror or error}"
    return None


def walk(
    roots: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[Found]:
    """Yield each file once (by its resolved path), following symlinks but never round a loop.

    Include/exclude globs match a file's path relative to its root, or its name; they do not apply to
    files named directly.
    """
    seen_files: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser()
        problem = _dangling_reason(root)
        if problem:
            yield Found(root.absolute(), problem)
            continue
        if root.is_dir():
            yield from _walk_directory(root, include, exclude, seen_files)
            continue
        resolved = root.resolve()
        if resolved not in seen_files:
            seen_files.add(resolved)
            yield Found(resolved)


def _walk_directory(
    root: Path, include: Sequence[str], exclude: Sequence[str], seen_files: set[Path]
) -> Iterator[Found]:
    visited: set[Path] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        real = directory.resolve()
        if real in visited:
            if directory.is_symlink() and directory.absolute().parent.resolve().is_relative_to(real):
                yield Found(directory.absolute(), "symlink loop: the link points to a folder that contains it")
            continue  # another name for a folder already walked: its files are taken once
        visited.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            yield Found(directory.absolute(), f"cannot list folder: {error.strerror or error}")
            continue
        subfolders: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            problem = _dangling_reason(path) if entry.is_symlink() else None
            if not problem and entry.is_dir():
                if not _skip_directory(path):
                    subfolders.append(path)
                continue
            relative = path.relative_to(root).as_posix()
            if entry.name.startswith(".") and not (include and _matches(relative, include)):
                continue  # hidden files (.env, .netrc, ...) often hold secrets: only taken when --include names them
            if not _selected(relative, include, exclude):
                continue
            if problem:
                yield Found(path.absolute(), problem)
                continue
            if not entry.is_file():
                continue
            resolved = path.resolve()
            if resolved not in seen_files:
                seen_files.add(resolved)
                yield Found(resolved)
        stack.extend(reversed(subfolders))
