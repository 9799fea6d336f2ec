"""One index folder: SQLite (chunks, files, vectors, meta) is the source of truth; FAISS is its fast copy.

Every change is one SQLite transaction, so a killed process leaves the last committed state. vectors.faiss is
written after the commit (temporary file + rename) and tagged with the store's generation; a reader that finds it
stale rebuilds it from the vectors kept in SQLite. A lock file keeps a single writer. The `files` table is the
per-file manifest: path, size, mtime, sha256 and the chunker signature (chunker version, settings, embedder).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from filelock import FileLock, Timeout

from rag_app import __version__
from rag_app.index.errors import (
    EmbedderMismatchError,
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
)
from rag_app.index.lexical import TOKENIZER_VERSION, LexicalIndex, tokenize
from rag_app.index.manifest import FORMAT_VERSION, MANIFEST_NAME, write_atomically, write_manifest
from rag_app.index.vectors import build_vector_index
from rag_app.types import Chunk

STORE_NAME = "store.sqlite3"
VECTORS_NAME = "vectors.faiss"
LEXICAL_NAME = "lexical"
LOCK_NAME = ".lock"

_SCHEMA = """
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
_CHUNK_COLUMNS = "id, path, text, page, heading, start_line, end_line, start_char, end_char, content_hash"
_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class FileRecord:
    """What the store remembers of an ingested file, to tell unchanged from changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    kind: str
    chunks: int
    chunker: str = ""


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to store: its text, its place, its content hash and its BM25 tokens (space-joined)."""

    text: str
    content_hash: str
    tokens: str
    page: int | None = None
    heading: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    start_char: int | None = None
    end_char: int | None = None


def _lexical_version(chunker_signature: str | None) -> str | None:
    """The BM25 tokenizer version a file's stored tokens were made with (see ingest.pipeline.chunker_signature)."""
    try:
        return json.loads(chunker_signature or "{}").get("lexical")
    except ValueError:
        return None


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    return Chunk(
        id=row[0], path=row[1], text=row[2], page=row[3], heading=row[4], start_line=row[5],
        end_line=row[6], start_char=row[7], end_char=row[8], content_hash=row[9],
    )


class IndexStore:
    """An index folder opened for reading, or for writing with the lock held (`IndexStore.open_for_write`)."""

    def __init__(self, directory: Path, connection: sqlite3.Connection, lock: FileLock | None) -> None:
        self.directory = directory
        self._db = connection
        self._lock = lock
        self._db_lock = threading.RLock()
        self._vectors: faiss.Index | None = None
        self._lexical: LexicalIndex | None = None
        self._loaded_generation = -1

    # ---- opening -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path | str, embedder_name: str | None = None) -> IndexStore:
        """Open an existing index for reading; refuse a missing, damaged or other-embedder index."""
        directory = Path(directory).expanduser().resolve()
        if not (directory / STORE_NAME).exists():
            raise IndexNotFoundError(
                f"no index at {directory}: build one with `rag-ingest PATH --index {directory}`"
            )
        _check_header(directory / STORE_NAME)
        store = cls(directory, _connect(directory / STORE_NAME, readonly=True), None)
        store._check_readable()
        store.check_embedder(embedder_name)
        return store

    @classmethod
    def open_for_write(
        cls, directory: Path | str, embedder_name: str, dimension: int, max_tokens: int
    ) -> IndexStore:
        """Take the writer's lock and open (or create) the index; a second writer gets IndexBusyError."""
        directory = Path(directory).expanduser().resolve()
        if directory.exists() and not directory.is_dir():
            raise IndexCorruptError(f"{directory} is a file, not an index folder: choose another --index")
        existing = directory.exists() and any(directory.iterdir())
        if existing and not (directory / STORE_NAME).exists() and not (directory / LOCK_NAME).exists():
            raise IndexCorruptError(
                f"{directory} is not empty and holds no rag_app index; it was left untouched: "
                "choose an empty or new folder for --index"
            )
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise _busy(directory) from None
        try:
            fresh = not (directory / STORE_NAME).exists()
            if not fresh:
                _check_header(directory / STORE_NAME)
            store = cls(directory, _connect(directory / STORE_NAME, readonly=False), lock)
            if fresh:
                store._initialise(embedder_name, dimension, max_tokens)
            else:
                store._check_readable()
            _remove_stale_temporaries(directory)
            return store
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def check_writable(directory: Path | str) -> None:
        """Fail fast, before any model loads, if `open_for_write` would refuse: a busy or damaged index."""
        directory = Path(directory).expanduser().resolve()
        if directory.exists() and not directory.is_dir():
            raise IndexCorruptError(f"{directory} is a file, not an index folder: choose another --index")
        if (directory / STORE_NAME).exists():
            _check_header(directory / STORE_NAME)
        if (directory / LOCK_NAME).exists():
            lock = FileLock(str(directory / LOCK_NAME))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise _busy(directory) from None
            lock.release()

    def _initialise(self, embedder_name: str, dimension: int, max_tokens: int) -> None:
        with self._db_lock:
            self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            self._set_meta(db, {
                "format_version": FORMAT_VERSION, "embedder": embedder_name, "dimension": dimension,
                "embedder_max_tokens": max_tokens, "chunking": None, "chunker_version": None,
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

    def check_embedder(self, embedder_name: str | None) -> None:
        """Refuse to search with an embedder other than the one the vectors were made with."""
        built_with = self.meta().get("embedder")
        if embedder_name is not None and embedder_name != built_with:
            raise EmbedderMismatchError(
                f"index at {self.directory} was built with embedder {built_with!r} but {embedder_name!r} was "
                f"asked for: use --embedder {built_with} (or RAG_APP_EMBEDDER={built_with}), or re-ingest "
                f"into a new --index with {embedder_name!r}"
            )

    def close(self) -> None:
        with self._db_lock:
            self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta ----------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        with self._db_lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    @staticmethod
    def _set_meta(db: sqlite3.Connection, values: dict[str, Any]) -> None:
        db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(key, json.dumps(value)) for key, value in values.items()],
        )

    def generation(self) -> int:
        with self._db_lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def write_manifest(self) -> None:
        manifest = self.meta()
        manifest["files"] = self.count_files()
        manifest["chunks"] = self.count_chunks()
        write_manifest(self.directory, manifest)

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

    def update_settings(self, values: dict[str, Any]) -> None:
        with self.transaction() as db:
            self._set_meta(db, values)

    def reset_embeddings(self, embedder_name: str, dimension: int, max_tokens: int) -> None:
        """Forget every vector (a new embedder); chunks stay, and are re-chunked or re-embedded by the caller."""
        with self.transaction() as db:
            db.execute("DELETE FROM vectors")
            self._set_meta(db, {"embedder": embedder_name, "dimension": dimension,
                                "embedder_max_tokens": max_tokens})
            self._bump_generation(db)

    def chunks_without_vectors(self) -> dict[str, str]:
        """Content hash -> text of stored chunks that have no vector (after an embedder change)."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT content_hash, text FROM chunks WHERE content_hash NOT IN (SELECT content_hash FROM vectors)"
            ).fetchall()
        return dict(rows)

    def add_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        with self.transaction() as db:
            self._insert_vectors(db, vectors)
            self._bump_generation(db)

    @staticmethod
    def _insert_vectors(db: sqlite3.Connection, vectors: dict[str, np.ndarray]) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO vectors(content_hash, vector) VALUES(?, ?)",
            [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in vectors.items()],
        )

    def known_vectors(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these content hashes (identical chunks are embedded once)."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        with self._db_lock:
            for start in range(0, len(wanted), 500):
                batch = wanted[start:start + 500]
                marks = ",".join("?" * len(batch))
                for content_hash, blob in self._db.execute(
                    f"SELECT content_hash, vector FROM vectors WHERE content_hash IN ({marks})", batch
                ):
                    found[content_hash] = np.frombuffer(blob, dtype=np.float32)
        return found

    def replace_files(
        self,
        records: Sequence[FileRecord],
        chunks_by_path: dict[str, list[NewChunk]],
        vectors: dict[str, np.ndarray],
        removed_paths: Sequence[str] = (),
    ) -> None:
        """In one transaction: drop the old chunks of these files (and removed ones), store the new."""
        with self.transaction() as db:
            for path in [*removed_paths, *(record.path for record in records)]:
                db.execute("DELETE FROM chunks WHERE path = ?", (path,))
                db.execute("DELETE FROM files WHERE path = ?", (path,))
            self._insert_vectors(db, vectors)
            for record in records:
                db.execute(
                    "INSERT INTO files(path, size, mtime_ns, sha256, kind, chunks, chunker, ingested_at) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.path, record.size, record.mtime_ns, record.sha256, record.kind,
                     record.chunks, record.chunker, time.time()),
                )
                db.executemany(
                    "INSERT INTO chunks(path, ordinal, text, page, heading, start_line, end_line, start_char, "
                    "end_char, content_hash, tokens) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (record.path, ordinal, chunk.text, chunk.page, chunk.heading, chunk.start_line,
                         chunk.end_line, chunk.start_char, chunk.end_char, chunk.content_hash, chunk.tokens)
                        for ordinal, chunk in enumerate(chunks_by_path.get(record.path, []))
                    ],
                )
            self._bump_generation(db)

    def touch_files(self, records: Sequence[FileRecord]) -> None:
        """Record a new mtime for files whose content did not change."""
        if not records:
            return
        with self.transaction() as db:
            db.executemany(
                "UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?",
                [(record.mtime_ns, record.size, record.path) for record in records],
            )

    def _bump_generation(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        generation = int(json.loads(row[0])) + 1 if row else 1
        self._set_meta(db, {"generation": generation, "updated_at": time.time(),
                            "project_version": __version__})

    def finish_write(self) -> None:
        """After the last commit: drop unused vectors, write the FAISS copy and the manifest (if out of date)."""
        generation = self.generation()
        if self.meta().get("faiss_generation") == generation and (self.directory / VECTORS_NAME).exists():
            return
        with self.transaction() as db:
            db.execute("DELETE FROM vectors WHERE content_hash NOT IN (SELECT content_hash FROM chunks)")
        vectors = self._build_vectors()
        data = faiss.serialize_index(vectors)
        write_atomically(self.directory / VECTORS_NAME, np.asarray(data).tobytes())
        self._save_lexical(self._build_lexical())
        self.update_settings({"faiss_generation": generation, "lexical_generation": generation})
        self.write_manifest()

    # ---- reading -------------------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, sha256, kind, chunks, chunker FROM files"
            ).fetchall()
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
            for start in range(0, len(ids), 500):
                batch = [int(value) for value in ids[start:start + 500]]
                marks = ",".join("?" * len(batch))
                for row in self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch):
                    found[row[0]] = _row_to_chunk(row)
        return found

    def neighbours(self, chunk_id: int, radius: int = 1) -> list[Chunk]:
        """The chunk and up to `radius` chunks either side of it in the same file, in order."""
        with self._db_lock:
            row = self._db.execute("SELECT path, ordinal FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
            if row is None:
                return []
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? AND ordinal BETWEEN ? AND ? ORDER BY ordinal",
                (row[0], row[1] - radius, row[1] + radius),
            ).fetchall()
        return [_row_to_chunk(item) for item in rows]

    def ordinals(self, ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """Each chunk's (path, position in its file), for merging neighbours."""
        result: dict[int, tuple[str, int]] = {}
        with self._db_lock:
            for start in range(0, len(ids), 500):
                batch = [int(value) for value in ids[start:start + 500]]
                marks = ",".join("?" * len(batch))
                for chunk_id, path, ordinal in self._db.execute(
                    f"SELECT id, path, ordinal FROM chunks WHERE id IN ({marks})", batch
                ):
                    result[chunk_id] = (path, ordinal)
        return result

    def _build_vectors(self) -> faiss.Index:
        meta = self.meta()
        dimension = int(meta["dimension"])
        with self._db_lock:
            rows = self._db.execute(
                "SELECT chunks.id, vectors.vector FROM chunks JOIN vectors USING (content_hash)"
            ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dimension)
        return build_vector_index(matrix, ids, dimension, meta.get("vector_index", "flat"))

    def _load_vectors(self, generation: int) -> faiss.Index:
        path = self.directory / VECTORS_NAME
        if self.meta().get("faiss_generation") == generation and path.exists():
            try:
                return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
            except RuntimeError:
                pass  # an unreadable copy is rebuilt from SQLite below
        return self._build_vectors()

    def _build_lexical(self) -> LexicalIndex:
        """BM25 from the stored tokens; chunks tokenised by another tokenizer version are tokenised afresh."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT chunks.id, chunks.tokens, chunks.text, files.chunker FROM chunks "
                "LEFT JOIN files USING (path) ORDER BY chunks.id"
            ).fetchall()
        token_lists = [tokens.split() if _lexical_version(chunker) == TOKENIZER_VERSION else tokenize(text)
                       for _, tokens, text, chunker in rows]
        return LexicalIndex.build([row[0] for row in rows], token_lists)

    def _save_lexical(self, lexical: LexicalIndex) -> None:
        """Replace the saved BM25 folder: write a fresh one, then swap it in by renames."""
        staging = Path(tempfile.mkdtemp(prefix=".lexical-", dir=self.directory))
        target = self.directory / LEXICAL_NAME
        retired = self.directory / f".{LEXICAL_NAME}-retired"
        try:
            lexical.save(staging)
            shutil.rmtree(retired, ignore_errors=True)
            if target.exists():
                target.rename(retired)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)

    def _load_lexical(self, generation: int) -> LexicalIndex:
        """The saved BM25 when it matches this generation, else one built from SQLite."""
        if self.meta().get("lexical_generation") == generation and (self.directory / LEXICAL_NAME).is_dir():
            try:
                return LexicalIndex.load(self.directory / LEXICAL_NAME)
            except (OSError, ValueError, KeyError):
                pass  # an unreadable copy is rebuilt from SQLite below
        return self._build_lexical()

    def refresh(self) -> None:
        """Reload FAISS and BM25 if the store changed since they were loaded (cheap when it did not)."""
        generation = self.generation()
        if generation != self._loaded_generation:
            self._vectors = self._load_vectors(generation)
            self._lexical = self._load_lexical(generation)
            self._loaded_generation = generation

    def dense_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        self.refresh()
        assert self._vectors is not None
        if self._vectors.ntotal == 0:
            return []
        scores, ids = self._vectors.search(np.asarray(query_vector, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """How many chunks hold each (already tokenized) term."""
        self.refresh()
        assert self._lexical is not None
        return {term: self._lexical.document_frequency(term) for term in terms}

    def lexical_search(self, query: str, k: int) -> list[tuple[int, float]]:
        self.refresh()
        assert self._lexical is not None
        return self._lexical.search(query, k)

    def stats(self) -> dict[str, Any]:
        meta = self.meta()
        return {
            "path": str(self.directory), "files": self.count_files(), "chunks": self.count_chunks(),
            "embedder": meta.get("embedder"), "dimension": meta.get("dimension"),
            "updated_at": meta.get("updated_at"), "generation": meta.get("generation"),
        }


def _busy(directory: Path) -> IndexBusyError:
    return IndexBusyError(
        f"another ingest is writing to {directory}; wait for it to finish and run this one again"
    )


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
    for name in (VECTORS_NAME, MANIFEST_NAME):
        for leftover in directory.glob(f".{name}.*"):
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
