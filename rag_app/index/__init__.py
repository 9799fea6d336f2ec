"""An index: where chunks, vectors and lexical tokens live, behind one backend interface, with its embedder."""

from rag_app.index.backend import ChunkerSignature, FileChunks, FileRecord, IndexBackend, IndexFacts, Query
from rag_app.index.copy import CopyReport, copy_index
from rag_app.index.errors import (
    EmbedderMismatchError,
    IndexBusyError,
    IndexCorruptError,
    IndexError_,
    IndexNotFoundError,
)
from rag_app.index.index import Index, choose_embedder
from rag_app.index.location import display_name as index_name
from rag_app.index.location import index_location

__all__ = [
    "ChunkerSignature", "CopyReport", "EmbedderMismatchError", "FileChunks", "FileRecord", "Index", "IndexBackend",
    "IndexBusyError", "IndexCorruptError", "IndexError_", "IndexFacts", "IndexNotFoundError", "Query",
    "choose_embedder", "copy_index", "index_location", "index_name",
]
