"""A sample of a corpus's text, for the one rule that picks a new index's embedder (rag_app.index.choose_embedder)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from ingest.document import LoaderError
from ingest.loaders import load_file
from ingest.walk import walk

SAMPLE_FILES = 40
SAMPLE_BYTES = 256 * 1024


def sample_texts(paths: Sequence[Path | str], files: int = SAMPLE_FILES) -> list[str]:
    """The text of the first few loadable files under `paths` (unreadable ones are skipped here)."""
    texts = []
    for found in islice((item for item in walk([Path(path) for path in paths]) if item.problem is None), files):
        try:
            texts.append(load_file(found.path, max_bytes=SAMPLE_BYTES).text)
        except (LoaderError, OSError):
            continue
    return texts
