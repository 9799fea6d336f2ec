"""Counts an ingest's files and chunks as they move through the pipeline and sends `IngestProgress` events."""

from __future__ import annotations

import time
from collections.abc import Callable

from ingest.report import IngestProgress

ProgressCallback = Callable[[IngestProgress], None]


class ProgressTracker:
    """Files read, finished and committed; chunks read, given vectors and committed; one event per change."""

    def __init__(self, callback: ProgressCallback | None, files_total: int, started: float) -> None:
        self.callback = callback
        self.files_total = files_total
        self.started = started
        self.files_read = 0
        self.files_done = 0
        self.chunks_read = 0
        self.chunks_embedded = 0
        self.chunks_done = 0
        self.current = ""

    def file_read(self, path: str, chunks: int, finished: bool) -> None:
        """A file came back from the loader: with `chunks` to embed, or `finished` (unchanged or skipped)."""
        self.files_read += 1
        self.chunks_read += chunks
        self.files_done += finished
        self.current = path
        self.send()

    def embedded(self, chunks: int) -> None:
        """`chunks` more chunks have their vectors (embedded now, or reused)."""
        self.chunks_embedded += chunks
        self.send()

    def committed(self, files: int, chunks: int) -> None:
        self.files_done += files
        self.chunks_done += chunks
        self.send()

    @property
    def chunks_total(self) -> int:
        """Chunks of the files read so far, plus the files still unread at the average so far."""
        if self.files_read == 0:
            return 0
        unread = self.files_total - self.files_read
        return self.chunks_read + round(unread * self.chunks_read / self.files_read)

    def event(self) -> IngestProgress:
        return IngestProgress(self.files_done, self.files_total, self.chunks_done,
                              time.perf_counter() - self.started, self.current, self.chunks_embedded,
                              max(self.chunks_total, self.chunks_embedded))

    def send(self) -> None:
        if self.callback is not None:
            self.callback(self.event())
