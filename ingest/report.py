"""The ingest summary and the progress events that the CLI and the UI show."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Skipped:
    """A path that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest did: files by outcome, chunks written and embedded, time taken, notes."""

    index: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.skipped

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["counts"] = {name: len(getattr(self, name))
                          for name in ("added", "updated", "unchanged", "removed", "skipped")}
        return data

    def summary(self) -> str:
        counts = self.to_dict()["counts"]
        lines = [
            f"Index {self.index}: " + ", ".join(f"{count} {name}" for name, count in counts.items()),
            f"{self.chunks_written} chunks written ({self.chunks_embedded} embedded) in {self.seconds:.1f} s",
        ]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"skipped {item.path}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class IngestProgress:
    """A progress event, sent after each file is read, each embedded sub-batch and each commit.

    `files_done`: files finished (committed, unchanged or skipped) out of `files_total`; `chunks_done`: chunks
    committed; `chunks_embedded`: chunks given a vector so far (embedded, or an identical text's stored vector
    reused) out of `chunks_total`, the chunks of the changed files (exact once every file is read, estimated
    from the files read so far before that). The ETA follows the chunks, where the time goes.
    """

    files_done: int
    files_total: int
    chunks_done: int
    elapsed: float
    current: str = ""
    chunks_embedded: int = 0
    chunks_total: int = 0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far: by chunks once some are embedded, else by files; None at the start."""
        if self.chunks_embedded and self.chunks_total:
            return self.elapsed / self.chunks_embedded * max(self.chunks_total - self.chunks_embedded, 0)
        if self.files_done == 0 or self.files_total == 0:
            return None
        return self.elapsed / self.files_done * (self.files_total - self.files_done)
