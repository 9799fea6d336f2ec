"""A writer killed with SIGKILL mid-ingest leaves a loadable, consistent index; a second writer is refused."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag_app.index import Index, IndexBusyError
from rag_app.index.sqlite_store import STORE_NAME
from tests.test_ingest_incremental import assert_consistent, chunk_rows

FILES = 120
BIN = Path(sys.executable).parent
INGEST_IN_CHILD = """
import sys
from ingest.pipeline import ingest
from rag_app.config import IngestOptions
ingest([sys.argv[1]], sys.argv[2], "all-MiniLM-L6-v2", IngestOptions(batch_chunks=4), device="cpu")
"""


def generation(index: Path) -> int:
    """The store's committed generation, read without taking part in any write (0 before it exists)."""
    if not (index / STORE_NAME).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{index / STORE_NAME}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(json.loads(row[0])) if row else 0


@pytest.fixture
def many_files(tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(FILES):
        (folder / f"note-{n:03d}.txt").write_text(f"Note {n}: locker {n * 7} holds box {n}.", encoding="utf-8")
    return folder


def test_sigkill_mid_ingest_leaves_a_consistent_index_and_the_rerun_finishes(tmp_path, many_files, embedder):
    index = tmp_path / "index"
    child = subprocess.Popen([sys.executable, "-c", INGEST_IN_CHILD, str(many_files), str(index)],
                             cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while generation(index) < 3:  # some batches are committed: kill it in the middle
            assert child.poll() is None, "the ingest ended before it could be killed"
            assert time.monotonic() < deadline, "the ingest committed nothing in time"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    store = assert_consistent(index)
    committed = store.count_files()
    assert 0 < committed < FILES, "the kill did not land mid-ingest"
    assert store.count_chunks() == committed
    [(chunk_id, _)] = store.copies.view().dense(embedder.embed_query("Note 1: locker 7 holds box 1."), 1)
    assert store.chunks([chunk_id])[chunk_id].text in {text for _, _, text in chunk_rows(index)}

    report = ingest([many_files], index, embedder)
    assert len(report.unchanged) == committed and len(report.added) == FILES - committed
    assert report.chunks_embedded == FILES - committed and report.ok
    store = assert_consistent(index)
    assert store.count_files() == store.count_chunks() == FILES
    assert sorted(text for _, _, text in chunk_rows(index)) == sorted(
        path.read_text(encoding="utf-8") for path in many_files.iterdir()
    )


def test_a_second_writer_is_refused_and_nothing_is_corrupted(tmp_path, many_files, embedder):
    index = tmp_path / "index"
    first = sorted(many_files.iterdir())[:3]
    ingest(first, index, embedder)
    before = chunk_rows(index)

    holder = Index.create(index, embedder)
    try:
        with pytest.raises(IndexBusyError, match="another ingest is writing"):
            ingest([many_files], index, embedder)
        result = subprocess.run([str(BIN / "rag-ingest"), str(many_files), "--index", str(index)],
                                capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2
        assert "another ingest is writing to" in result.stderr and "run this one again" in result.stderr
        assert Index.open(index, embedder).stats()["files"] == 3  # readers are not blocked by the writer
    finally:
        holder.close()
    assert chunk_rows(index) == before
    assert_consistent(index)
