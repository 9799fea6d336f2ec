"""Both index backends for the same tests: parametrised fixtures that give a fresh index location (a folder, or a
new schema on the session's PostgreSQL), and checks that read either backend's truth."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rag_app.index.backend import IndexBackend, Query, SearchRequest
from rag_app.index.errors import IndexNotFoundError
from rag_app.index.location import IndexLocation, backend_for, is_database_url
from rag_app.index.sqlite_store import STORE_NAME
from rag_app.types import Chunk

BACKENDS = ("local", "postgresql")
_schemas = itertools.count()


@pytest.fixture(scope="session")
def pg_database(pg_server) -> str:
    """The URL of the session server's test database (with the vector extension)."""
    return pg_server.create_database("rag_test")


def fresh_location(request: pytest.FixtureRequest, kind: str, folder: Path) -> IndexLocation:
    """A location where no index exists yet: `folder`/index, or a new schema in the test database."""
    if kind == "local":
        return folder / "index"
    return f"{request.getfixturevalue('pg_database')}?schema=idx_{os.getpid()}_{next(_schemas)}"


@pytest.fixture(params=BACKENDS)
def index_location(request, tmp_path) -> IndexLocation:
    """A fresh index location for one test, once per backend."""
    return fresh_location(request, request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_kind(request) -> str:
    """The backend a module's shared index lives on (each module runs once per backend)."""
    return request.param


def opened(location: IndexLocation) -> IndexBackend:
    return backend_for(location).open(location)


def chunk_rows(location: IndexLocation) -> list[tuple[str, int, str]]:
    """(path, ordinal, text) of every stored chunk, in path and ordinal order."""
    backend = opened(location)
    try:
        files = backend.file_chunks(sorted(backend.files()))
        rows = [(chunk.path, chunk.ordinal, chunk.text) for item in files for chunk in item.chunks]
        assert backend.count_chunks() == len(rows), "chunks without a file record"
        return rows
    finally:
        backend.close()


def assert_consistent(location: IndexLocation) -> IndexBackend:
    """Each file's chunk count is right, every chunk has its vector, and the search structures agree with the
    truth (local: FAISS holds exactly the chunks; PostgreSQL: postings, df and collection counts add up)."""
    rows = chunk_rows(location)
    assert len(rows) == len({(path, ordinal) for path, ordinal, _ in rows}), "duplicate chunks"
    backend = opened(location)
    for path, record in backend.files().items():
        assert record.chunks == sum(1 for row in rows if row[0] == path)
    assert backend.chunks_without_vectors() == {}
    if is_database_url(location):
        _assert_postings_consistent(backend)
    else:
        import faiss

        vectors = backend.copies.view().vectors
        faiss_ids = {int(i) for i in faiss.vector_to_array(vectors.id_map)}
        assert vectors.ntotal == backend.count_chunks() and faiss_ids == set(backend.chunks(sorted(faiss_ids)))
    return backend


def _assert_postings_consistent(backend) -> None:
    """lexical_stats, terms.df and postings say the same as the chunks table."""
    db = backend._db
    chunks, tokens = db.execute("SELECT count(*), coalesce(sum(token_count), 0) FROM chunks").fetchone()
    assert db.execute("SELECT chunks, tokens FROM lexical_stats").fetchone() == (chunks, tokens)
    assert db.execute("SELECT count(*) FROM postings WHERE chunk_id NOT IN (SELECT id FROM chunks)").fetchone()[0] == 0
    wrong = db.execute("SELECT count(*) FROM terms LEFT JOIN (SELECT term_id, count(*) AS n FROM postings "
                       "GROUP BY term_id) AS p ON p.term_id = terms.id WHERE terms.df <> coalesce(p.n, 0)").fetchone()
    assert wrong[0] == 0, "document frequencies disagree with the postings"


def nearest(backend: IndexBackend, vector: np.ndarray) -> tuple[Chunk, float]:
    """The chunk whose stored vector is nearest to `vector`, and its cosine, by the backend's dense leg."""
    found = backend.search(Query("", (), vector), SearchRequest(mode="dense", pool=1))
    chunk = found.hits[0].chunk
    return chunk, float(found.vectors[chunk.content_hash] @ vector)


def generation(location: IndexLocation) -> int:
    """The committed generation, read without taking part in any write (0 before the index exists)."""
    if is_database_url(location):
        try:
            backend = opened(location)
        except IndexNotFoundError:
            return 0
        try:
            return int(backend.meta().get("generation") or 0)
        finally:
            backend.close()
    store = Path(location) / STORE_NAME
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(json.loads(row[0])) if row else 0


def child_environment() -> dict[str, str]:
    """The environment for a child Python: this checkout first on its path, models offline."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}

