"""The indexes a UI user can pick (under the indexes folder, plus the one the app started with), one agent each."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from ingest.pipeline import ingest
from ingest.report import IngestProgress, IngestReport
from rag_app.agent import RagAgent
from rag_app.config import AgentSettings, IngestOptions, ModelSettings
from rag_app.index import Index
from rag_app.models.actions import ActionRecords
from rag_app.models.chat import ChatLLM
from rag_app.models.registry import embedder_choice, load_llm

UPLOADS_FOLDER = "uploads"
# One browser update per interval, with the newest event: the pipeline sends one per file read and per sub-batch.
PROGRESS_INTERVAL_S = 0.25


class UnknownIndexError(ValueError):
    """An index name that is not in the catalogue (never a path: clients cannot point the app at folders)."""


class IndexCatalog:
    """Index names → folders, one shared open Index per folder and one agent over it (models load once)."""

    def __init__(self, root: Path, default: Path, models: ModelSettings | None = None,
                 settings: AgentSettings | None = None) -> None:
        self.root = Path(root).resolve()
        self.default = Path(default).resolve()
        self.models = models or ModelSettings()
        self.settings = settings
        self._indexes: dict[Path, Index] = {}
        self._agents: dict[Path, RagAgent] = {}
        self._lock = threading.Lock()

    @property
    def default_name(self) -> str:
        return self.default.name

    def folders(self) -> dict[str, Path]:
        """Every index by name: the folders under the root that hold an index, and the app's own index."""
        found = {}
        if self.root.is_dir():
            found = {folder.name: folder.resolve() for folder in sorted(self.root.iterdir()) if Index.exists(folder)}
        found[self.default_name] = self.default
        return found

    def names(self) -> list[str]:
        return sorted(self.folders())

    def path(self, name: str | None) -> Path:
        """The folder of index `name` (the default index for None or "")."""
        folders = self.folders()
        name = name or self.default_name
        if name not in folders:
            raise UnknownIndexError(f"there is no index named {name!r}; choose one of {sorted(folders)}")
        return folders[name]

    def index(self, name: str | None) -> Index:
        """Index `name` with its embedder, opened on first use and shared by every session (no LLM loaded)."""
        folder = self.path(name)
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
            folder = Path(index.location)
            if folder not in self._agents:
                self._agents[folder] = RagAgent(index, self.llm(), self.settings, ActionRecords.shared())
            return self._agents[folder]

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
            folder = self.path(name)
            stats = self.index(name).stats()
        except Exception as error:  # shown to the user; the app keeps running
            return f"**Index unavailable:** {error}"
        updated = stats.get("updated_at")
        when = (time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)) if isinstance(updated, (int, float))
                else str(updated or "never"))
        return (f"**{folder.name}** · {stats['files']} files · {stats['chunks']} chunks · "
                f"embedder `{stats['embedder']}` · last update {when}")


def save_uploads(files: Sequence[str | Path], index_folder: Path) -> list[Path]:
    """Copy uploaded files (Gradio's temporary copies) next to the index, so that their paths stay valid."""
    target = index_folder / UPLOADS_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    saved = []
    for file in files:
        source = Path(file)
        destination = target / source.name
        shutil.copyfile(source, destination)
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
