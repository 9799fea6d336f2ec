"""Removing documents from an index: their chunks dropped in one transaction, the result published to readers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rag_app.index import Index
from rag_app.models.embedder import Embedder


def remove_documents(paths: Sequence[str], index: Path | str, embedder: Embedder | str | None = None) -> list[str]:
    """Drop the documents at these stored paths from the index at `index` (the writer's lock held); the paths
    it held. The files themselves are left alone; ingesting them again brings them back."""
    with Index.create(index, embedder) as writer:
        store = writer.backend
        known = store.files()
        held = [path for path in dict.fromkeys(paths) if path in known]
        if held:
            store.replace_files([], {}, held)
        store.finish_write()
    return held
