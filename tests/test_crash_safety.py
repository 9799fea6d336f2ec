"""A writer killed with SIGKILL mid-ingest leaves a loadable, consistent index; a second writer waits (PostgreSQL)
or is refused (local). Every test runs on both backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag_app.index import Index, IndexBusyError
from rag_app.index.location import is_database_url
from tests.backends import assert_consistent, child_environment, chunk_rows, generation, nearest

FILES = 120
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INGEST_IN_CHILD = """
import sys
from ingest.pipeline import ingest
from rag_app.config import IngestOptions
ingest([sys.argv[1]], sys.argv[2], "all-MiniLM-L6-v2", IngestOptions(batch_chunks=4), device="cpu")
"""


@pytest.fixture
def many_files(tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(FILES):
        (folder / f"note-{n:03d}.txt").write_text(f"Note {n}: locker {n * 7} holds box {n}.", encoding="utf-8")
    return folder


def test_sigkill_mid_ingest_leaves_a_consistent_index_and_the_rerun_finishes(index_location, many_files, embedder):
    index = index_location
    child = subprocess.Popen([sys.executable, "-c", INGEST_IN_CHILD, str(many_files), str(index)],
                             cwd=ROOT, env=child_environment(), stderr=subprocess.DEVNULL)
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
    chunk, _ = nearest(store, embedder.embed_query("Note 1: locker 7 holds box 1."))
    assert chunk.text in {text for _, _, text in chunk_rows(index)}
    store.close()

    report = ingest([many_files], index, embedder)
    assert len(report.unchanged) == committed and len(report.added) == FILES - committed
    assert report.chunks_embedded == FILES - committed and report.ok
    store = assert_consistent(index)
    assert store.count_files() == store.count_chunks() == FILES
    assert sorted(text for _, _, text in chunk_rows(index)) == sorted(
        path.read_text(encoding="utf-8") for path in many_files.iterdir()
    )


def test_a_second_writer_waits_or_is_refused_and_nothing_is_corrupted(index_location, many_files, embedder):
    """Local: a second writer is refused. PostgreSQL: it waits for the first (advisory lock), then runs."""
    index = index_location
    first = sorted(many_files.iterdir())[:3]
    ingest(first, index, embedder)
    before = chunk_rows(index)

    holder = Index.create(index, embedder)
    try:
        if is_database_url(index):
            second = ThreadPoolExecutor(1).submit(ingest, [many_files], index, embedder)
            time.sleep(2)
            assert not second.done(), "the second writer did not wait for the first"
            assert chunk_rows(index) == before
        else:
            with pytest.raises(IndexBusyError, match="another ingest is writing"):
                ingest([many_files], index, embedder)
            result = subprocess.run([str(BIN / "rag-ingest"), str(many_files), "--index", str(index)],
                                    capture_output=True, text=True, timeout=120, env=child_environment())
            assert result.returncode == 2
            assert "another ingest is writing to" in result.stderr and "run this one again" in result.stderr
        assert Index.open(index, embedder).stats()["files"] == 3  # readers are not blocked by the writer
    finally:
        holder.close()
    if is_database_url(index):
        assert second.result(timeout=120).ok
        assert len(chunk_rows(index)) == FILES
    else:
        assert chunk_rows(index) == before
    assert_consistent(index)
