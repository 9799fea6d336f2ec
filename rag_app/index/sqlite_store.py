"""The local backend's source of truth: one SQLite file with files, chunks, vectors and meta.

Every change is one SQLite transaction, so a killed process leaves the last committed state. A lock file keeps a
single writer; readers use WAL and never block it. The `files` table is the per-file manifest: path, size, mtime,
sha256 and the chunker signature. The schema and its format version live here, side by side.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from rag_app import __version__
from rag_app.index.backend import FileChunks, FileRecord, IndexFacts, batched
from rag_app.index.errors import IndexBusyError, IndexCorruptError, IndexNotFoundError
from rag_app.index.lexical import TOKENIZER_VERSION
from rag_app.index.manifest import FORMAT_VERSION, MANIFEST_NAME, write_manifest
from rag_app.types import Chunk

STORE_NAME = "store.sqlite3"
LOCK_NAME = ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    kind TEXT NOT NULL, chunks INTEGER NOT NULL, chunker TEXT NOT NULL, ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    page INTEGER, heading TEXT, start_line INTEGER, end_line INTEGER, start_char INTEGER, end_char INTEGER,
    content_hash TEXT NOT NULL, tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path, ordinal);
CREATE TABLE IF NOT EXISTS vectors (content_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""
_CHUNK_COLUMNS = "id, path, ordinal, text, page, heading, start_line, end_line, start_char, end_char, content_hash"
_SQLITE_HEADER = b"SQLite format 3\x00"


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    return Chunk(id=row[0], path=row[1], ordinal=row[2], text=row[3], page=row[4], heading=row[5],
                 start_line=row[6], end_line=row[7], start_char=row[8], end_char=row[9], content_hash=row[10])


class SQLiteStore:
    """An index folder's SQLite store, opened for reading, or for writing with the lock held."""

    def __init__(self, directory: Path, connection: sqlite3.Connection, lock: FileLock | None) -> None:
        self.directory = directory
        self.location = str(directory)
        self._db = connection
        self._lock = lock
        self._db_lock = threading.RLock()

    # ---- opening -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path | str) -> SQLiteStore:
        """Open an existing index for reading; refuse a missing or damaged one."""
        directory = Path(directory).expanduser().resolve()
        if not (directory / STORE_NAME).exists():
            raise IndexNotFoundError(f"no index at {directory}: build one with `rag-ingest PATH --index {directory}`")
        _check_header(directory / STORE_NAME)
        store = cls(directory, _connect(directory / STORE_NAME, readonly=True), None)
        store._check_readable()
        return store

    @classmethod
    def open_for_write(cls, directory: Path | str, facts: IndexFacts) -> SQLiteStore:
        """Take the writer's lock and open (or create with `facts`) the index; a second writer is refused."""
        directory = Path(directory).expanduser().resolve()
        cls.check_writable(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise _busy(directory) from None
        try:
            fresh = not (directory / STORE_NAME).exists()
            store = cls(directory, _connect(directory / STORE_NAME, readonly=False), lock)
            if fresh:
                store._initialise(facts)
            else:
                store._check_readable()
            _remove_stale_temporaries(directory)
            return store
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def exists(directory: Path | str) -> bool:
        """Whether an index is stored in `directory`."""
        return (Path(directory).expanduser() / STORE_NAME).exists()

    @staticmethod
    def check_writable(directory: Path | str) -> None:
        """Fail fast, before any model loads, if a writer would be refused: a busy, damaged or foreign folder."""
        directory = Path(directory).expanduser().resolve()
        if directory.exists() and not directory.is_dir():
            raise IndexCorruptError(f"{directory} is a file, not an index folder: choose another --index")
        existing = directory.exists() and any(directory.iterdir())
        if existing and not (directory / STORE_NAME).exists() and not (directory / LOCK_NAME).exists():
            raise IndexCorruptError(
                f"{directory} is not empty and holds no rag_app index; it was left untouched: "
                "choose an empty or new folder for --index"
            )
        if (directory / STORE_NAME).exists():
            _check_header(directory / STORE_NAME)
        if (directory / LOCK_NAME).exists():
            lock = FileLock(str(directory / LOCK_NAME))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise _busy(directory) from None
            lock.release()

    def _initialise(self, facts: IndexFacts) -> None:
        with self._db_lock:
            self._db.executescript(SCHEMA)
        self.update_meta({
            "format_version": FORMAT_VERSION, "embedder": facts.embedder, "dimension": facts.dimension,
            "embedder_max_tokens": facts.max_tokens, "chunking": None, "chunker_version": None,
            "lexical_tokenizer": TOKENIZER_VERSION, "project_version": __version__,
            "created_at": time.time(), "updated_at": time.time(), "generation": 0,
        })
        self.write_manifest()

    def _check_readable(self) -> None:
        try:
            with self._db_lock:
                status = self._db.execute("PRAGMA quick_check").fetchone()[0]
                tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as error:
            raise self._corrupt(str(error)) from error
        if status != "ok" or not {"meta", "files", "chunks", "vectors"} <= tables:
            raise self._corrupt(status if status != "ok" else "tables are missing")
        version = self.meta().get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise IndexCorruptError(
                f"index at {self.directory} has format version {version}, written by a newer rag_app; this one "
                f"reads version {FORMAT_VERSION}: upgrade rag_app to open it (it was left untouched)"
            )
        if version != FORMAT_VERSION:
            raise IndexCorruptError(
                f"index at {self.directory} has format version {version}; this rag_app reads version "
                f"{FORMAT_VERSION}: re-ingest into a new --index"
            )

    def _corrupt(self, detail: str) -> IndexCorruptError:
        return IndexCorruptError(
            f"index at {self.directory} is damaged ({detail}); it was left untouched: move it aside and "
            "re-ingest, or ingest into a new --index"
        )

    def close(self) -> None:
        with self._db_lock:
            self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- meta ----------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        with self._db_lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def update_meta(self, values: Mapping[str, Any]) -> None:
        with self.transaction() as db:
            _set_meta(db, values)

    def generation(self) -> int:
        """Bumped by every committed change; the search copies are tagged with it."""
        with self._db_lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def write_manifest(self) -> None:
        manifest = self.meta()
        manifest["files"] = self.count_files()
        manifest["chunks"] = self.count_chunks()
        write_manifest(self.directory, manifest)

    def stats(self) -> dict[str, Any]:
        meta = self.meta()
        return {
            "path": self.location, "files": self.count_files(), "chunks": self.count_chunks(),
            "embedder": meta.get("embedder"), "dimension": meta.get("dimension"),
            "updated_at": meta.get("updated_at"), "generation": meta.get("generation"),
        }

    # ---- writing -------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change: committed as a whole on success, rolled back on any error or kill.

        Inside an open transaction it is a savepoint, so a caller can make many changes one atomic whole.
        """
        with self._db_lock:
            if self._db.in_transaction:
                self._db.execute("SAVEPOINT nested")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK TO nested")
                    self._db.execute("RELEASE nested")
                    raise
                self._db.execute("RELEASE nested")
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def bulk_load(self) -> AbstractContextManager[sqlite3.Connection]:
        """A first large load as one transaction (the search copies are built once, by `finish_write`)."""
        return self.transaction()

    def reset_embeddings(self, facts: IndexFacts) -> None:
        """Forget every vector (a new embedder); chunks stay, and are re-chunked or re-embedded by the caller."""
        with self.transaction() as db:
            db.execute("DELETE FROM vectors")
            _set_meta(db, {"embedder": facts.embedder, "dimension": facts.dimension,
                           "embedder_max_tokens": facts.max_tokens})
            _bump_generation(db)

    def chunks_without_vectors(self) -> dict[str, str]:
        """Content hash -> text of stored chunks that have no vector (after an embedder change)."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT content_hash, text FROM chunks WHERE content_hash NOT IN (SELECT content_hash FROM vectors)"
            ).fetchall()
        return dict(rows)

    def add_vectors(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self.transaction() as db:
            _insert_vectors(db, vectors)
            _bump_generation(db)

    def replace_files(self, files: Sequence[FileChunks], vectors: Mapping[str, np.ndarray],
                      removed_paths: Sequence[str] = ()) -> None:
        """In one transaction: drop the old chunks of these files (and of removed ones), store the new."""
        with self.transaction() as db:
            for path in [*removed_paths, *(item.record.path for item in files)]:
                db.execute("DELETE FROM chunks WHERE path = ?", (path,))
                db.execute("DELETE FROM files WHERE path = ?", (path,))
            _insert_vectors(db, vectors)
            for item in files:
                record = item.record
                db.execute(
                    "INSERT INTO files(path, size, mtime_ns, sha256, kind, chunks, chunker, ingested_at) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.path, record.size, record.mtime_ns, record.sha256, record.kind,
                     record.chunks, record.chunker, time.time()),
                )
                db.executemany(
                    "INSERT INTO chunks(path, ordinal, text, page, heading, start_line, end_line, start_char, "
                    "end_char, content_hash, tokens) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(record.path, chunk.ordinal, chunk.text, chunk.page, chunk.heading, chunk.start_line,
                      chunk.end_line, chunk.start_char, chunk.end_char, chunk.content_hash, " ".join(tokens))
                     for chunk, tokens in zip(item.chunks, item.tokens, strict=True)],
                )
            _bump_generation(db)

    def touch_files(self, records: Sequence[FileRecord]) -> None:
        """Record a new mtime for files whose content did not change."""
        if not records:
            return
        with self.transaction() as db:
            db.executemany("UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?",
                           [(record.mtime_ns, record.size, record.path) for record in records])

    def finish_write(self) -> None:
        """After the last commit: drop vectors no chunk uses any more, and write the manifest."""
        with self.transaction() as db:
            db.execute("DELETE FROM vectors WHERE content_hash NOT IN (SELECT content_hash FROM chunks)")
        self.write_manifest()

    # ---- reading -------------------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        with self._db_lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, sha256, kind, chunks, chunker FROM files").fetchall()
        return {row[0]: FileRecord(*row) for row in rows}

    def count_files(self) -> int:
        with self._db_lock:
            return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def count_chunks(self) -> int:
        with self._db_lock:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        found: dict[int, Chunk] = {}
        with self._db_lock:
            for batch in batched([int(value) for value in ids]):
                marks = ",".join("?" * len(batch))
                for row in self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch):
                    found[row[0]] = _row_to_chunk(row)
        return found

    def neighbours(self, chunk: Chunk, radius: int = 1) -> list[Chunk]:
        """The chunk and up to `radius` chunks either side of it in the same file, in order."""
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? AND ordinal BETWEEN ? AND ? ORDER BY ordinal",
                (chunk.path, chunk.ordinal - radius, chunk.ordinal + radius),
            ).fetchall()
        return [_row_to_chunk(row) for row in rows]

    def known_vectors(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these content hashes (identical chunks are embedded once)."""
        found: dict[str, np.ndarray] = {}
        with self._db_lock:
            for batch in batched(list(dict.fromkeys(hashes))):
                marks = ",".join("?" * len(batch))
                for key, blob in self._db.execute(
                    f"SELECT content_hash, vector FROM vectors WHERE content_hash IN ({marks})", batch
                ):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk's id and vector (ids int64, vectors float32 rows), for building the dense copy."""
        dimension = int(self.meta()["dimension"])
        with self._db_lock:
            rows = self._db.execute(
                "SELECT chunks.id, vectors.vector FROM chunks JOIN vectors USING (content_hash)"
            ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dimension)
        return ids, matrix

    def tokens_of(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        """(id, stored tokens) of these chunks."""
        found: list[tuple[int, str]] = []
        with self._db_lock:
            for batch in batched([int(value) for value in ids]):
                marks = ",".join("?" * len(batch))
                found.extend(self._db.execute(f"SELECT id, tokens FROM chunks WHERE id IN ({marks})", batch))
        return found

    def all_tokens(self) -> list[tuple[int, str, str, str | None]]:
        """Every chunk's (id, stored tokens, text, chunker signature), in id order, for building the BM25 copy."""
        with self._db_lock:
            return self._db.execute(
                "SELECT chunks.id, chunks.tokens, chunks.text, files.chunker FROM chunks "
                "LEFT JOIN files USING (path) ORDER BY chunks.id"
            ).fetchall()


def _set_meta(db: sqlite3.Connection, values: Mapping[str, Any]) -> None:
    db.executemany(
        "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(key, json.dumps(value)) for key, value in values.items()],
    )


def _bump_generation(db: sqlite3.Connection) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    generation = int(json.loads(row[0])) + 1 if row else 1
    _set_meta(db, {"generation": generation, "updated_at": time.time(), "project_version": __version__})


def _insert_vectors(db: sqlite3.Connection, vectors: Mapping[str, np.ndarray]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO vectors(content_hash, vector) VALUES(?, ?)",
        [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in vectors.items()],
    )


def _busy(directory: Path) -> IndexBusyError:
    return IndexBusyError(f"another ingest is writing to {directory}; wait for it to finish and run this one again")


def _check_header(path: Path) -> None:
    """Refuse a store file that is not SQLite before SQLite touches it (so its bytes stay as they were)."""
    try:
        with path.open("rb") as stream:
            header = stream.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise IndexCorruptError(f"index store {path} cannot be read ({error.strerror or error})") from error
    if header != _SQLITE_HEADER:
        raise IndexCorruptError(
            f"index store {path} is not an SQLite database (damaged or overwritten); it was left untouched: "
            "move it aside and re-ingest, or ingest into a new --index"
        )


def _remove_stale_temporaries(directory: Path) -> None:
    """Drop temporary files a killed writer left behind (the writer's lock is held, so none is in use)."""
    for leftover in directory.glob(f".{MANIFEST_NAME}.*"):
        leftover.unlink(missing_ok=True)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer); autocommit off, explicit BEGINs."""
    try:
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        if readonly:
            connection.execute("PRAGMA query_only=ON")
    except sqlite3.DatabaseError as error:
        raise IndexCorruptError(
            f"index store {path} cannot be opened ({error}); it was left untouched: move it aside and "
            "re-ingest, or ingest into a new --index"
        ) from error
    return connection
