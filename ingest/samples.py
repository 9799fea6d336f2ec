"""The bundled sample corpus (the user guide, English and Chinese) that a first start ingests."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import ingest
from ingest.report import IngestReport
from ingest.tracking import ProgressCallback
from rag_app.index import Index
from rag_app.models.embedder import Embedder

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


def ensure_index(
    index_dir: Path, embedder: str | Embedder | None = None, device: str = "auto", corpus: Path = SAMPLES_DIR,
    progress: ProgressCallback | None = None,
) -> IngestReport | None:
    """Build the index from `corpus` when it does not exist yet (embedder chosen for the corpus unless given)."""
    if Index.exists(index_dir):
        return None
    return ingest([corpus], index_dir, embedder, device=device, progress=progress)
