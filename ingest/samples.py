"""The bundled sample corpus (the user guide, English and Chinese) that a first start ingests."""

from __future__ import annotations

from pathlib import Path

from ingest.embedder_choice import embedder_for_index
from ingest.pipeline import ingest
from ingest.report import IngestReport
from rag_app.index.store import STORE_NAME
from rag_app.models.registry import shared_embedder

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


def ensure_index(
    index_dir: Path, embedder_name: str | None = None, device: str = "auto", corpus: Path = SAMPLES_DIR
) -> IngestReport | None:
    """Build the index from `corpus` when it does not exist yet (embedder chosen for the corpus unless named)."""
    if (Path(index_dir) / STORE_NAME).exists():
        return None
    name = embedder_name or embedder_for_index(index_dir, [corpus])
    return ingest([corpus], index_dir, shared_embedder(name, device))
