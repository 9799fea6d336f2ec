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
    """A progress event: files handled so far out of the total, chunks written, and an ETA."""

    files_done: int
    files_total: int
    chunks_done: int
    elapsed: float
    current: str = ""

    @property
    def eta_seconds(self) -> float | None:
        if self.files_done == 0 or self.files_total == 0:
            return None
        return self.elapsed / self.files_done * (self.files_total - self.files_done)
