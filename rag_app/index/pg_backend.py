"""The PostgreSQL backend: one index in one schema of a PostgreSQL database with pgvector (`IndexBackend`).

`postgresql://user@host:port/db?schema=NAME` (without `schema`: `public`). Every write method is one transaction
(nested: a savepoint), so a killed writer leaves the last committed state. Writers take a session advisory lock on
the schema and wait for one another; readers never wait, and each search reads one committed state (one snapshot,
with the lexical leg read again in it when a commit landed between the legs), so readers in other processes see
each committed write at once, without reopening. docs/postgres.md has the design.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from threading import RLock
from typing import Any

import numpy as np

from rag_app import __version__
from rag_app.index.backend import Candidates, FileChunks, FileRecord, IndexFacts, Query, SearchRequest
from rag_app.index.errors import IndexBusyError, IndexCorruptError, IndexError_, IndexNotFoundError
from rag_app.index.fusion import fused_hits
from rag_app.index.lexical import TOKENIZER_VERSION
from rag_app.index.location import shown
from rag_app.index.pg_schema import (
    DROP_SEARCH_INDEXES_DDL,
    FORMAT_VERSION,
    HNSW_DDL,
    POSTINGS_BY_CHUNK_DDL,
    POSTINGS_INDEXES_DDL,
    PROBES_SQL,
    REQUIRED_TABLES,
    schema_ddl,
    vector_column_ddl,
)
from rag_app.index.pg_server import libpq_url
from rag_app.index.pg_sql import DENSE_SQL, EF_SEARCH, lexical_parameters, lexical_statement
from rag_app.index.pg_write import delete_paths, insert_files
from rag_app.types import Chunk

WRITER_WAIT_VARIABLE = "RAG_APP_PG_WRITER_WAIT"
WRITER_WAIT_SECONDS = 3600.0
_CHUNK_COLUMNS = "id, path, ordinal, text, page, heading, start_line, end_line, start_char, end_char, content_hash"
log = logging.getLogger(__name__)


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    return Chunk(id=row[0], path=row[1], ordinal=row[2], text=row[3], page=row[4], heading=row[5],
                 start_line=row[6], end_line=row[7], start_char=row[8], end_char=row[9], content_hash=row[10])


def connect(url: str) -> tuple[Any, str]:
    """(an autocommit connection with the vector type registered, the schema); clear errors for what is missing."""
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError as error:
        raise IndexError_(f"a PostgreSQL index ({shown(url)}) needs psycopg and pgvector: pip install "
                          f"'psycopg[binary]' pgvector ({error})") from error
    try:
        conninfo, schema = libpq_url(url)
    except ValueError as error:
        raise IndexError_(f"bad index URL {shown(url)}: {error}") from error
    try:
        connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise IndexNotFoundError(
            f"cannot connect to PostgreSQL at {shown(url)} ({detail}): start the server (a local one: python -m "
            "rag_app.index.pg_server start --dir DIR) or correct --index") from error
    try:
        register_vector(connection)
    except psycopg.ProgrammingError:
        connection.close()
        raise IndexError_(f"the database at {shown(url)} has no pgvector extension: run CREATE EXTENSION vector "
                          "in it (as a user allowed to), then try again") from None
    connection.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    connection.execute("SET hnsw.iterative_scan = strict_order")  # filtered searches take 8x the pool
    connection.execute("SET jit = off")  # JIT compiling the BM25 aggregation costs more than it saves here
    # psycopg prepares the search statement on its 5th run, and PostgreSQL then switched to a generic plan, blind
    # to the pool sizes and the query's terms: at 100k chunks lexical searches went from 13-46 ms to 87-266 ms
    # from about the 16th on (40 SciFact claims: 24 of 35 prepared runs generic). Planned per search: 13-38 ms.
    connection.execute("SET plan_cache_mode = force_custom_plan")
    return connection, schema or "public"


class PostgresBackend:
    """One index in one PostgreSQL schema, opened for reading, or for writing with the writer's advisory lock."""

    def __init__(self, url: str, connection: Any, schema: str, writer: bool) -> None:
        self.location = url
        self.schema = schema
        self._db = connection
        self._writer = writer
        self._lock = RLock()
        self.probed = True  # whether lexical candidates are scored by probes (pg_sql); set from the index on open
        self._lexical: ThreadPoolExecutor | None = None  # with _lexical_db: see _lexical_connection
        self._lexical_db: Any = None

    # ---- opening -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> PostgresBackend:
        """Open an existing index for reading; refuse a missing one or one of another format."""
        connection, schema = _require_extension(url, create=False)
        backend = cls(url, connection, schema, writer=False)
        try:
            if not backend._tables():
                raise IndexNotFoundError(
                    f"no index at {shown(url)}: build one with `rag-ingest PATH --index {shown(url)}`")
            backend._check_readable()
            backend.probed = backend._execute(PROBES_SQL, (schema,)).fetchone()[0]
        except BaseException:
            connection.close()
            raise
        return backend

    @classmethod
    def open_for_write(cls, url: str, facts: IndexFacts) -> PostgresBackend:
        """Wait for the writer's lock, then open (or create with `facts`) the index in its schema."""
        connection, schema = _require_extension(url, create=True)
        backend = cls(url, connection, schema, writer=True)
        try:
            backend._take_writer_lock()
            tables = backend._tables()
            if not tables:
                backend._initialise(facts)
            else:
                backend._check_readable()
                backend._add_probes()
        except BaseException:
            connection.close()
            raise
        return backend

    @classmethod
    def exists(cls, url: str) -> bool:
        """Whether an index is stored in the URL's schema."""
        connection, schema = connect(url)
        with connection:
            return bool(cls(url, connection, schema, writer=False)._tables())

    @classmethod
    def check_writable(cls, url: str) -> None:
        """Fail fast, before any model loads: the server must answer and the schema be empty or an index."""
        connection, schema = connect(url)
        with connection:
            backend = cls(url, connection, schema, writer=False)
            if backend._tables():
                backend._check_readable()

    @classmethod
    def recorded_embedder(cls, url: str) -> str | None:
        """The embedder the index at `url` was built with (None for a new one)."""
        connection, schema = connect(url)
        with connection:
            backend = cls(url, connection, schema, writer=False)
            return backend.meta().get("embedder") if "meta" in backend._tables() else None

    def _tables(self) -> set[str]:
        rows = self._execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)).fetchall()
        return {row[0] for row in rows}

    def _check_readable(self) -> None:
        tables = self._tables()
        if not REQUIRED_TABLES.issubset(tables):
            raise IndexCorruptError(
                f"schema {self.schema!r} at {shown(self.location)} holds tables but no complete rag_app index "
                f"(missing {', '.join(sorted(REQUIRED_TABLES - tables))}); it was left untouched: choose another "
                "?schema= for --index")
        meta = self.meta()
        if meta.get("backend") != "postgresql" or meta.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"index at {shown(self.location)} has format version {meta.get('format_version')}; this rag_app "
                f"reads version {FORMAT_VERSION}: re-ingest into a new --index (another ?schema=)")

    def _initialise(self, facts: IndexFacts) -> None:
        with self.transaction() as db:
            db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            db.execute(f'SET LOCAL search_path = "{self.schema}", public')
            db.execute(schema_ddl(facts.dimension))
            _set_meta(db, {
                "backend": "postgresql", "format_version": FORMAT_VERSION, "embedder": facts.embedder,
                "dimension": facts.dimension, "embedder_max_tokens": facts.max_tokens, "chunking": None,
                "chunker_version": None, "lexical_tokenizer": TOKENIZER_VERSION, "project_version": __version__,
                "created_at": time.time(), "updated_at": time.time(), "generation": 0,
            })

    def _add_probes(self) -> None:
        """Rebuild an index's postings_by_chunk written before the probes (at 100k chunks ~10 s, once). The new
        index is built beside the old (a SHARE lock: readers go on searching, in the rescored form until they
        reopen), which is dropped only at the end."""
        if not self._execute(PROBES_SQL, (self.schema,)).fetchone()[0]:
            log.warning("%s: rebuilding postings_by_chunk so that lexical candidates are scored exactly (once)",
                        shown(self.location))
            with self.transaction() as db:
                db.execute(POSTINGS_BY_CHUNK_DDL.format(name="postings_by_chunk_probes"))
                db.execute("DROP INDEX IF EXISTS postings_by_chunk")
                db.execute("ALTER INDEX postings_by_chunk_probes RENAME TO postings_by_chunk")

    def _take_writer_lock(self) -> None:
        """Wait for other writers of this schema to finish (a killed one's lock goes with its connection)."""
        wait = float(os.environ.get(WRITER_WAIT_VARIABLE, WRITER_WAIT_SECONDS))
        deadline, told = time.monotonic() + wait, False
        key = f"rag_app index {self.schema}"
        while not self._execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise IndexBusyError(f"another ingest is writing to {shown(self.location)} and did not finish "
                                     f"within {wait:.0f} s; wait for it to finish and run this one again")
            if not told:
                log.warning("another ingest is writing to %s: waiting for it to finish", shown(self.location))
                told = True
            time.sleep(0.2)

    def close(self) -> None:
        with self._lock:
            if self._lexical is not None:
                self._lexical.shutdown()
                self._lexical_db.close()
                self._lexical = None
            self._db.close()  # also releases the writer's advisory lock

    # ---- meta ----------------------------------------------------------------------------------------------

    def _execute(self, sql: str, parameters: Any = None, **options: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, parameters, **options)

    def meta(self) -> dict[str, Any]:
        """The facts that built the index (the `meta` table)."""
        return dict(self._execute("SELECT key, value FROM meta").fetchall())

    def update_meta(self, values: Mapping[str, Any]) -> None:
        with self.transaction() as db:
            _set_meta(db, values)

    def stats(self) -> dict[str, Any]:
        """Files, chunks, embedder, dimension, last update and generation."""
        meta = self.meta()
        return {"path": shown(self.location), "files": self.count_files(), "chunks": self.count_chunks(),
                "embedder": meta.get("embedder"), "dimension": meta.get("dimension"),
                "updated_at": meta.get("updated_at"), "generation": meta.get("generation")}

    # ---- writing -------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One atomic change (psycopg: BEGIN ... COMMIT, or a savepoint inside an open transaction)."""
        if not self._writer:
            raise IndexError_(f"index at {shown(self.location)} was opened for reading; writes need Index.create")
        with self._lock, self._db.transaction():
            yield self._db

    @contextmanager
    def bulk_load(self) -> Iterator[Any]:
        """A first large load as one transaction: COPY into tables without search indexes, which are built once
        at the end (100k chunks: postings took 154 s with their indexes in place, 12 s + 27 s to build after)."""
        with self.transaction() as db:
            db.execute(DROP_SEARCH_INDEXES_DDL)
            yield db
            db.execute("SET LOCAL maintenance_work_mem = '512MB'")  # the HNSW graph is built in memory
            db.execute(HNSW_DDL)
            db.execute(POSTINGS_INDEXES_DDL)

    def replace_files(self, files: Sequence[FileChunks], vectors: Mapping[str, np.ndarray],
                      removed_paths: Sequence[str] = ()) -> None:
        """In one transaction: drop these files' (and removed files') chunks and postings, store the new."""
        with self.transaction() as db:
            delete_paths(db, [*removed_paths, *(item.record.path for item in files)])
            insert_files(db, files, vectors)
            _bump_generation(db)

    def touch_files(self, records: Sequence[FileRecord]) -> None:
        """Record a new mtime for files whose content did not change."""
        if records:
            with self.transaction() as db, db.cursor() as cursor:
                cursor.executemany("UPDATE files SET mtime_ns = %s, size = %s WHERE path = %s",
                                   [(record.mtime_ns, record.size, record.path) for record in records])

    def reset_embeddings(self, facts: IndexFacts) -> None:
        """Forget every vector (a new embedder, maybe of another dimension); chunks stay."""
        with self.transaction() as db:
            db.execute("UPDATE chunks SET embedding = NULL")
            if facts.dimension != self.meta().get("dimension"):
                db.execute(vector_column_ddl(facts.dimension))
            _set_meta(db, {"embedder": facts.embedder, "dimension": facts.dimension,
                           "embedder_max_tokens": facts.max_tokens})
            _bump_generation(db)

    def chunks_without_vectors(self) -> dict[str, str]:
        """Content hash -> text of stored chunks that have no vector (after an embedder change)."""
        return dict(self._execute("SELECT DISTINCT ON (content_hash) content_hash, text FROM chunks "
                                  "WHERE embedding IS NULL").fetchall())

    def add_vectors(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors for the chunks of these texts (after an embedder change)."""
        with self.transaction() as db, db.cursor() as cursor:
            cursor.executemany("UPDATE chunks SET embedding = %s WHERE content_hash = %s",
                               [(np.asarray(vector, dtype=np.float32), key) for key, vector in vectors.items()])
            _bump_generation(db)

    def finish_write(self) -> None:
        """Refresh the planner's statistics after the writer's last commit (autovacuum keeps the rest)."""
        self._execute("ANALYZE chunks, postings, terms, files")

    # ---- reading -------------------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        rows = self._execute("SELECT path, size, mtime_ns, sha256, kind, chunks, chunker FROM files").fetchall()
        return {row[0]: FileRecord(*row) for row in rows}

    def count_files(self) -> int:
        return int(self._execute("SELECT count(*) FROM files").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self._execute("SELECT count(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """The stored chunks with these ids."""
        rows = self._execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ANY(%s::bigint[])",
                             ([int(value) for value in ids],)).fetchall()
        return {row[0]: _row_to_chunk(row) for row in rows}

    def neighbours(self, chunk: Chunk, radius: int = 1) -> list[Chunk]:
        """The chunk and up to `radius` chunks either side of it in the same file, in order."""
        rows = self._execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = %s AND ordinal BETWEEN %s AND %s "
                             "ORDER BY ordinal", (chunk.path, chunk.ordinal - radius, chunk.ordinal + radius))
        return [_row_to_chunk(row) for row in rows.fetchall()]

    def known_vectors(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these content hashes (identical chunks are embedded once)."""
        rows = self._execute("SELECT DISTINCT ON (content_hash) content_hash, embedding FROM chunks "
                             "WHERE content_hash = ANY(%s::text[]) AND embedding IS NOT NULL",
                             (list(dict.fromkeys(hashes)),), binary=True).fetchall()
        return {key: vector.to_numpy() for key, vector in rows}

    def file_chunks(self, paths: Sequence[str]) -> list[FileChunks]:
        """These files as stored: records, chunks in order and their lexical tokens (for copying an index)."""
        records = self.files()
        rows = self._execute(f"SELECT {_CHUNK_COLUMNS}, tokens FROM chunks WHERE path = ANY(%s::text[]) "
                             "ORDER BY path, ordinal", (list(paths),)).fetchall()
        grouped: dict[str, list[Sequence[Any]]] = {path: [] for path in paths if path in records}
        for row in rows:
            grouped[row[1]].append(row)
        return [FileChunks(records[path], [_row_to_chunk(row) for row in found], [row[11].split() for row in found])
                for path, found in grouped.items()]

    def search(self, query: Query, request: SearchRequest) -> Candidates:
        """Both legs, fused, filtered, with the hits' vectors and the query terms' frequencies."""
        return self.start_search(query.tokens, request)(query)

    def start_search(self, tokens: Sequence[str], request: SearchRequest) -> Callable[[Query], Candidates]:
        """Send the lexical leg (it needs only the tokens) on the second connection now; the returned function
        takes the embedded query, runs the dense leg, fuses both as the local backend does and reads the hits.
        The dense leg and the reads share one snapshot; where the lexical leg saw another generation (a commit
        landed between them) it runs again in that snapshot, so a search still sees one committed state."""
        sql, parameters = lexical_statement(self.probed), lexical_parameters(tokens, request)
        lexical_db = self._lexical_connection()
        lexical = self._lexical.submit(lambda: lexical_db.execute(sql, parameters, binary=True).fetchone())

        def finish(query: Query) -> Candidates:
            pool = 0 if request.mode == "lexical" else request.pool
            with self._lock, self._db.transaction():
                self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                generation, dense_ids, dense_scores = self._db.execute(
                    DENSE_SQL, {"vector": query.vector, "pool": pool}, binary=True).fetchone()
                seen, chunk_count, frequencies, ids, scores = lexical.result()
                if seen != generation:
                    _, chunk_count, frequencies, ids, scores = self._db.execute(
                        sql, parameters, binary=True).fetchone()
                vectors: dict[str, np.ndarray] = {}
                hits = fused_hits(list(zip(dense_ids, dense_scores, strict=True)),
                                  list(zip(ids, scores, strict=True)), request,
                                  partial(self._chunks_with_vectors, vectors=vectors))
            return Candidates(hits, {hit.chunk.content_hash: vectors[hit.chunk.content_hash] for hit in hits},
                              {term: int(value) for term, value in frequencies.items()}, int(chunk_count))

        return finish

    def _chunks_with_vectors(self, ids: Sequence[int], vectors: dict[str, np.ndarray]) -> dict[int, Chunk]:
        """The stored chunks with these ids; their vectors go into `vectors` by content hash."""
        rows = self._execute(f"SELECT {_CHUNK_COLUMNS}, embedding FROM chunks WHERE id = ANY(%s::bigint[])",
                             ([int(value) for value in ids],), binary=True).fetchall()
        vectors.update((row[10], row[11].to_numpy()) for row in rows if row[11] is not None)
        return {row[0]: _row_to_chunk(row) for row in rows}

    def _lexical_connection(self) -> Any:
        """The connection that runs lexical legs on its own thread, opened at the first search."""
        with self._lock:
            if self._lexical is None:
                self._lexical_db = connect(self.location)[0]
                self._lexical = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-lexical")
            return self._lexical_db


def _require_extension(url: str, create: bool) -> tuple[Any, str]:
    """A connection to `url`; for a writer, the vector extension created first if the database lacks it."""
    if create:
        try:
            import psycopg

            conninfo, _ = libpq_url(url)
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
                connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except ImportError:
            pass  # connect() names the package to install
        except Exception as error:  # noqa: BLE001 - connect() below gives the clear error for each case
            log.debug("could not create the vector extension: %s", error)
    return connect(url)


def _set_meta(db: Any, values: Mapping[str, Any]) -> None:
    with db.cursor() as cursor:
        cursor.executemany("INSERT INTO meta (key, value) VALUES (%s, %s::jsonb) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           [(key, json.dumps(value)) for key, value in values.items()])


def _bump_generation(db: Any) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    _set_meta(db, {"generation": int(row[0]) + 1 if row else 1, "updated_at": time.time(),
                   "project_version": __version__})
