"""Which embedder a new index gets when none is named: the multilingual one for corpora with Chinese text."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from ingest.document import LoaderError
from ingest.loaders import load_file
from ingest.walk import walk
from rag_app.config import DEFAULT_EMBEDDER
from rag_app.index.manifest import read_manifest
from rag_app.language import embedder_for

SAMPLE_FILES = 40
SAMPLE_BYTES = 256 * 1024


def sample_texts(paths: Sequence[Path], files: int = SAMPLE_FILES) -> list[str]:
    """The text of the first few loadable files under `paths` (unreadable ones are skipped here)."""
    texts = []
    for found in islice((item for item in walk(paths) if item.problem is None), files):
        try:
            texts.append(load_file(found.path, max_bytes=SAMPLE_BYTES).text)
        except (LoaderError, OSError):
            continue
    return texts


def embedder_for_index(index: Path, paths: Sequence[Path]) -> str:
    """An existing index keeps its embedder; a new one gets the embedder that suits a sample of its files."""
    try:
        manifest = read_manifest(Path(index).expanduser())
    except (OSError, ValueError):
        manifest = None
    if manifest and manifest.get("embedder"):
        return str(manifest["embedder"])
    return embedder_for(sample_texts(paths)) if paths else DEFAULT_EMBEDDER
