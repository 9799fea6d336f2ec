"""Copying an index to another location (a folder into PostgreSQL, or back) with its vectors: nothing is re-embedded.

Into an empty target the whole copy is one transaction (`bulk_load`: the search indexes are built once at the
end); into one that holds files, each batch is a transaction and a file already there with the same record is
left as it is. Either way a copy that was stopped leaves a consistent target and finishes when run again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from rag_app.index.backend import IndexBackend, IndexFacts, batched
from rag_app.index.errors import EmbedderMismatchError
from rag_app.index.location import IndexLocation, backend_for

BATCH_FILES = 200


@dataclass
class CopyReport:
    """What a copy did: files and chunks written, files already in the target."""

    files: int = 0
    chunks: int = 0
    unchanged: int = 0


def copy_index(source: IndexLocation, target: IndexLocation,
               progress: Callable[[CopyReport, int], None] | None = None) -> CopyReport:
    """Copy every file, chunk, vector and lexical token of the index at `source` into `target` (new or same
    embedder); `progress(report, total_files)` after each batch."""
    reader = backend_for(source).open(source)
    try:
        meta = reader.meta()
        facts = IndexFacts(meta["embedder"], int(meta["dimension"]), int(meta.get("embedder_max_tokens") or 0))
        writer_class = backend_for(target)
        writer_class.check_writable(target)
        writer = writer_class.open_for_write(target, facts)
        try:
            return _copy_files(reader, writer, meta, progress)
        finally:
            writer.close()
    finally:
        reader.close()


def _copy_files(reader: IndexBackend, writer: IndexBackend, meta: dict[str, Any],
                progress: Callable[[CopyReport, int], None] | None) -> CopyReport:
    """The files of `reader` that `writer` lacks (or holds in another version), batch by batch."""
    recorded = writer.meta()
    if recorded.get("embedder") != meta["embedder"] or recorded.get("dimension") != meta["dimension"]:
        raise EmbedderMismatchError(
            f"the target index at {writer.location} holds vectors of {recorded.get('embedder')!r}, the source's "
            f"are {meta['embedder']!r}: copy into a new or empty index")
    writer.update_meta({key: meta.get(key) for key in ("chunking", "chunker_version", "lexical_tokenizer")})
    present = writer.files()
    wanted = reader.files()
    report = CopyReport()
    todo = []
    for path, record in sorted(wanted.items()):
        if present.get(path) == record:
            report.unchanged += 1
        else:
            todo.append(path)
    with writer.bulk_load() if not present else nullcontext():
        for batch in batched(todo, BATCH_FILES):
            files = reader.file_chunks(batch)
            hashes = [chunk.content_hash for item in files for chunk in item.chunks]
            writer.replace_files(files, reader.known_vectors(hashes))
            report.files += len(files)
            report.chunks += len(hashes)
            if progress:
                progress(report, len(todo))
    writer.finish_write()
    return report
