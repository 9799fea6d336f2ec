"""The load test, small (bench/bench_load.py at 5 sessions, 30 s, 50 files): real gradio_client sessions ask the
real app (app.py in its own process, so its memory is its own) while it ingests uploads; no errors, no answer from a
half-written state, fact answers right throughout, each session's own history, memory growth under 10%."""

from __future__ import annotations

from bench.bench_load import run_load, start_app, write_base, write_new_files
from ingest.pipeline import ingest


def test_five_sessions_ask_while_fifty_files_are_ingested(tmp_path, embedder):
    index = tmp_path / "indexes" / "team"
    assert ingest([write_base(tmp_path / "base")], index, embedder).ok
    files = write_new_files(tmp_path / "new", 50)
    # Batches of 8 chunks: the ingest of 50 one-chunk files commits 7 times, so readers have half-written states
    # to (not) see.
    process, url = start_app(index, batch_chunks=8)
    try:
        result = run_load(url, process.pid, index, files, sessions=5, seconds=30)
    finally:
        process.terminate()
        process.wait(timeout=60)
    print("\n" + result.table())
    assert result.latencies and result.fact_answers
    assert not result.problems(), result.problems()
