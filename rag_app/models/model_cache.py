"""The converted-model cache: one folder per source *content* (sha256), shared by every checkout using RAG_APP_HOME.

Sources are GGUF files (converted to transformers folders) and embedders' weight files (exported to ONNX for
their queries, rag_app.models.onnx_query). A source's digest is computed once and remembered in
`models/gguf-digests.json` under its path, size and mtime, so
a later start does not re-read the file (hashing the bundled 98 MB GGUF costs 0.58 s of CPU, 2.8 s wall at load
average 10; the remembered lookup 0.2 ms). Each use touches the folder's `.last-used` mark; `prune` removes folders
unused for N days and folders whose content matches no source still on disk (the old path-keyed copies, or a deleted
clone's).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag_app.atomic import write_atomically
from rag_app.config import app_home
from rag_app.digest import file_sha256

MODELS_FOLDER = "models"
DIGESTS_NAME = "gguf-digests.json"
USED_MARK = ".last-used"
KEY_LENGTH = 12
DAY = 86_400.0


@dataclass(frozen=True)
class CacheEntry:
    """A converted model folder: its size, when it was last used, and the source files on disk it was made from."""

    folder: Path
    size_bytes: int
    last_used: float
    sources: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.folder.name.rsplit("-", 1)[-1]

    def age_days(self, now: float | None = None) -> float:
        return ((now or time.time()) - self.last_used) / DAY


def models_dir(cache: Path | None = None) -> Path:
    """Where converted models live: RAG_APP_HOME/models (or CACHE/models)."""
    return (cache or app_home()) / MODELS_FOLDER


def _read_digests(cache: Path | None) -> dict[str, dict[str, int | str]]:
    try:
        return json.loads((models_dir(cache) / DIGESTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or half-written by another process: digests are recomputed, nothing is lost


def source_digest(source: Path, cache: Path | None = None) -> str:
    """The sha256 of a source file, remembered under its path, size and mtime (re-hashed only when they change)."""
    path = source.expanduser().resolve()
    stat = path.stat()
    digests = _read_digests(cache)
    known = digests.get(str(path))
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return str(known["sha256"])
    sha = file_sha256(path)
    digests[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
    models_dir(cache).mkdir(parents=True, exist_ok=True)
    write_atomically(models_dir(cache) / DIGESTS_NAME, json.dumps(digests, indent=1).encode())
    return sha


def cached_folder(source: Path, cache: Path | None = None, marker: str = "config.json",
                  stem: str | None = None) -> Path:
    """The folder for this source's content: an existing one with its key that holds `marker` (whatever the file
    was called), else `<stem>-<key>`."""
    key = source_digest(source, cache)[:KEY_LENGTH]
    existing = sorted(models_dir(cache).glob(f"*-{key}/{marker}"))
    return existing[0].parent if existing else models_dir(cache) / f"{stem or source.stem}-{key}"


def mark_used(folder: Path) -> None:
    """Record that the folder was used now (for `prune`); a read-only shared cache is used as it is."""
    with contextlib.suppress(OSError):
        (folder / USED_MARK).touch()


def known_sources(cache: Path | None = None, extra: Iterable[Path] = ()) -> dict[str, list[str]]:
    """Key -> source paths still on disk, unchanged since they were hashed (plus `extra` files, hashed if needed)."""
    for path in extra:
        if path.is_file():
            source_digest(path, cache)
    sources: dict[str, list[str]] = {}
    for path, facts in _read_digests(cache).items():
        try:
            stat = Path(path).stat()
        except OSError:
            continue
        if stat.st_size == facts.get("size") and stat.st_mtime_ns == facts.get("mtime_ns"):
            sources.setdefault(str(facts["sha256"])[:KEY_LENGTH], []).append(path)
    return sources


def _size(folder: Path) -> int:
    return sum(item.stat().st_size for item in folder.rglob("*") if item.is_file())


def _last_used(folder: Path) -> float:
    mark = folder / USED_MARK
    return (mark if mark.exists() else folder).stat().st_mtime


def entries(cache: Path | None = None, extra: Iterable[Path] = ()) -> list[CacheEntry]:
    """Every converted model folder in the cache, most recently used first."""
    sources = known_sources(cache, extra)
    found = []
    for folder in models_dir(cache).iterdir() if models_dir(cache).is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("."):
            key = folder.name.rsplit("-", 1)[-1]
            found.append(CacheEntry(folder, _size(folder), _last_used(folder), tuple(sources.get(key, ()))))
    return sorted(found, key=lambda entry: entry.last_used, reverse=True)


def prune(cache: Path | None = None, older_than_days: float = 30.0, extra: Iterable[Path] = (),
          dry_run: bool = False) -> list[CacheEntry]:
    """Remove folders unused for `older_than_days` and folders made from no source still on disk; returns them."""
    now = time.time()
    doomed = [entry for entry in entries(cache, extra)
              if not entry.sources or entry.age_days(now) > older_than_days]
    if not dry_run:
        for entry in doomed:
            shutil.rmtree(entry.folder, ignore_errors=True)
    return doomed
