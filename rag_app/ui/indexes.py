"""The indexes a UI user can pick, create and delete (under the indexes folder, plus the one the app started
with), one agent each; uploads stored so that they never collide; documents removed from an index."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from ingest.pipeline import file_sha256, ingest
from ingest.remove import remove_documents
from ingest.report import IngestProgress, IngestReport
from rag_app.agent import RagAgent
from rag_app.config import AgentSettings, IngestOptions, ModelSettings
from rag_app.index import Index, index_location, index_name
from rag_app.models.actions import ActionRecords
from rag_app.models.chat import ChatLLM
from rag_app.models.registry import embedder_choice, load_llm

UPLOADS_FOLDER = "uploads"
INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
NAME_RULE = "1-48 letters, digits, '-' or '_', starting with a letter or digit"
# One browser update per interval, with the newest event: the pipeline sends one per file read and per sub-batch.
PROGRESS_INTERVAL_S = 0.25


class UnknownIndexError(ValueError):
    """An index name that is not in the catalogue (never a path: clients cannot point the app at folders)."""


class IndexNameError(ValueError):
    """A new index name that is malformed or taken, or an index that cannot be deleted."""


class UnknownDocumentError(ValueError):
    """A document path that the chosen index does not hold."""


class IndexCatalog:
    """Index names → folders, one shared open Index per folder and one agent over it (models load once)."""

    def __init__(self, root: Path, default: Path | str, models: ModelSettings | None = None,
                 settings: AgentSettings | None = None) -> None:
        self.root = Path(root).resolve()
        default = index_location(str(default))  # a folder, or a postgresql:// URL
        self.default = default.resolve() if isinstance(default, Path) else default
        self.models = models or ModelSettings()
        self.settings = settings
        self._indexes: dict[Path | str, Index] = {}
        self._agents: dict[str, RagAgent] = {}
        self._lock = threading.Lock()

    @property
    def default_name(self) -> str:
        return index_name(self.default)

    def folders(self) -> dict[str, Path | str]:
        """Every index by name: the folders under the root that hold an index, and the app's own index."""
        found = {}
        if self.root.is_dir():
            found = {folder.name: folder.resolve() for folder in sorted(self.root.iterdir()) if Index.exists(folder)}
        found[self.default_name] = self.default
        return found

    def names(self) -> list[str]:
        return sorted(self.folders())

    def location(self, name: str | None) -> Path | str:
        """Where index `name` is (the default index for None or "")."""
        folders = self.folders()
        name = name or self.default_name
        if name not in folders:
            raise UnknownIndexError(f"there is no index named {name!r}; choose one of {sorted(folders)}")
        return folders[name]

    def path(self, name: str | None) -> Path:
        """The folder that keeps index `name`'s uploads: its own folder, or one under the root for a database."""
        location = self.location(name)
        return location if isinstance(location, Path) else self.root / index_name(location)

    def index(self, name: str | None) -> Index:
        """Index `name` with its embedder, opened on first use and shared by every session (no LLM loaded)."""
        folder = self.location(name)
        with self._lock:
            if folder not in self._indexes:
                self._indexes[folder] = Index.open(folder, embedder_choice(self.models), self.models.device)
            return self._indexes[folder]

    def llm(self) -> ChatLLM:
        """The one LLM every agent shares: in process, or served at `models.llm_url` (loaded on first use)."""
        return load_llm(self.models)

    def agent(self, name: str | None) -> RagAgent:
        """The agent over index `name`, made on first use and shared by every session."""
        index = self.index(name)
        with self._lock:
            if index.location not in self._agents:
                self._agents[index.location] = RagAgent(index, self.llm(), self.settings, ActionRecords.shared())
            return self._agents[index.location]

    def create(self, name: str) -> str:
        """Start an empty index `name` under the root, with the app's embedder (so no second model loads)."""
        name = (name or "").strip()
        if not INDEX_NAME.fullmatch(name):
            raise IndexNameError(f"{name!r} is not a valid index name: use {NAME_RULE}")
        if name in self.folders() or (self.root / name).exists():
            raise IndexNameError(f"an index named {name!r} exists already: pick it in the list, or choose another name")
        self.root.mkdir(parents=True, exist_ok=True)
        ingest([], self.root / name, self.index(None).embedder)  # publishes an empty state readers can open
        return name

    def delete(self, name: str | None) -> None:
        """Delete index `name` (never the app's own) with the writer's lock held, so no ingest is cut short."""
        folder = self.path(name)
        if folder == self.default or folder.parent != self.root:
            raise IndexNameError(f"{folder.name!r} is the app's own index and cannot be deleted from the UI")
        with self._lock:
            reader = self._indexes.pop(folder, None)
            self._agents.pop(folder, None)
        embedder = reader.embedder if reader is not None else self.index(None).embedder
        retired = self.root / f".deleted-{folder.name}-{uuid.uuid4().hex[:8]}"
        with Index.create(folder, embedder):  # refused while an ingest writes; the name goes away at once
            folder.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
        if reader is not None:
            reader.close()

    def documents(self, name: str | None) -> list[str]:
        """The stored paths of the documents index `name` holds."""
        return self.index(name).files()

    def remove_document(self, name: str | None, path: str) -> None:
        """Remove one document from index `name`; a stored upload's own copy is deleted with it."""
        index = self.index(name)
        if path not in index.files():
            raise UnknownDocumentError(f"index {Path(index.location).name!r} holds no document {path!r}: refresh "
                                       "the list and choose one of its documents")
        remove_documents([path], index.location, index.embedder)
        uploads = Path(index.location) / UPLOADS_FOLDER
        stored = Path(path).parent
        if stored.parent == uploads:  # uploads/<content hash>/<name>: the folder is this upload's own
            shutil.rmtree(stored, ignore_errors=True)

    def model_markdown(self) -> str:
        """Which model answers and where it runs, as Markdown (the error when it cannot be reached)."""
        try:
            llm = self.llm()
        except Exception as error:  # shown to the user; the app keeps running
            return f"**Model unavailable:** {error}"
        window = f"{'~' if llm.window_estimated else ''}{llm.context_window} tokens"
        estimated = " (estimated)" if llm.window_estimated else ""
        return f"**Model:** `{Path(llm.name).name}` · {llm.backend} · window {window}{estimated}"

    def stats_markdown(self, name: str | None) -> str:
        """Files, chunks, embedder and last update of index `name`, as Markdown."""
        try:
            index = self.index(name)
            stats = index.stats()
        except Exception as error:  # shown to the user; the app keeps running
            return f"**Index unavailable:** {error}"
        updated = stats.get("updated_at")
        when = (time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)) if isinstance(updated, (int, float))
                else str(updated or "never"))
        return (f"**{index.name}** · {stats['files']} files · {stats['chunks']} chunks · "
                f"embedder `{stats['embedder']}` · last update {when}")


def save_uploads(files: Sequence[str | Path], index_folder: Path) -> list[Path]:
    """Copy uploaded files (Gradio's temporary copies) next to the index, each as uploads/<content hash>/<its own
    name>: uploads of the same name by two users never overwrite each other, and sources keep the file's name."""
    saved = []
    for file in files:
        source = Path(file)
        folder = index_folder / UPLOADS_FOLDER / file_sha256(source)[:32]
        folder.mkdir(parents=True, exist_ok=True)
        destination = folder / source.name
        if not destination.exists():  # the same name and content: the same file, already stored
            staging = folder / f".{source.name}.{uuid.uuid4().hex}"
            shutil.copyfile(source, staging)
            os.replace(staging, destination)  # never a half-copied file under the real name
        saved.append(destination)
    return saved


def progress_bar(progress: IngestProgress | None) -> str:
    """A live HTML progress bar for an ingest: chunks embedded out of the (estimated) total, files finished, ETA."""
    if progress is None:
        return "<progress id='ingest-progress'></progress> starting…"
    eta = progress.eta_seconds
    done = progress.files_done >= progress.files_total and progress.chunks_embedded >= progress.chunks_total
    eta_text = f" · about {eta:.0f} s left" if eta is not None and not done else ""
    if progress.chunks_total:
        value, total = progress.chunks_embedded, progress.chunks_total
    else:
        value, total = progress.files_done, max(progress.files_total, 1)
    return (f"<progress id='ingest-progress' value='{value}' max='{total}'></progress> "
            f"<span id='ingest-counts'>{progress.chunks_embedded} / {progress.chunks_total} chunks embedded · "
            f"{progress.files_done} / {progress.files_total} files done{eta_text}</span>")


def run_ingest(paths: Sequence[Path], index: Index,
               options: IngestOptions) -> Iterator[tuple[IngestProgress | None, IngestReport | None]]:
    """Ingest into `index` (with its embedder: no LLM is loaded) on a worker thread, yielding progress events
    as they come and then the report."""
    events: Queue[tuple[str, Any]] = Queue()

    def work() -> None:
        try:
            report = ingest(list(paths), index.location, index.embedder, options,
                            progress=lambda event: events.put(("progress", event)))
            events.put(("done", report))
        except Exception as error:  # re-raised in the caller's thread below
            events.put(("error", error))

    worker = threading.Thread(target=work, daemon=True, name="rag-ui-ingest")
    worker.start()
    yield None, None
    while True:
        time.sleep(PROGRESS_INTERVAL_S)
        queued = _drain(events)
        progress = [value for kind, value in queued if kind == "progress"]
        if progress:
            yield progress[-1], None
        for kind, value in queued:
            if kind == "error":
                raise value
            if kind == "done":
                worker.join()
                yield None, value
                return


def _drain(events: Queue[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Everything queued now, without waiting."""
    queued = []
    while True:
        try:
            queued.append(events.get_nowait())
        except Empty:
            return queued
