"""The bundled sample corpus (the user guide, English and Chinese) that a first start ingests."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import ingest
from ingest.report import IngestReport
from ingest.tracking import ProgressCallback
from rag_app.models.embedder import Embedder

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


def ensure_index(
    index_dir: Path, embedder: str | Embedder | None = None, device: str = "auto", corpus: Path = SAMPLES_DIR,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Build the index from `corpus` (embedder chosen for the corpus unless given), or bring an existing one up to
    date with it: an updated guide, or a new chunker version, is read again; unchanged files cost a hash each
    (about 0 s for the bundled guide), and files ingested from elsewhere are left alone."""
    return ingest([corpus], index_dir, embedder, device=device, progress=progress)
