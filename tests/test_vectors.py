"""FAISS index kinds: each finds a planted neighbour under its chunk id, survives serialization, keeps recall."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from rag_app.index.vectors import (
    HNSW_EF_SEARCH,
    IVF_NPROBE,
    VECTOR_INDEX_KINDS,
    build_vector_index,
    ivf_list_count,
    make_vector_index,
    train_if_needed,
)

DIMENSION = 64
PLANTED_ID = 987_654_321


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    """3,000 unit vectors around 40 centres: the cluster structure real embeddings have."""
    rng = np.random.default_rng(3)
    centres = unit(rng.standard_normal((40, DIMENSION)))
    members = centres[rng.integers(40, size=3000)]
    return unit(members + rng.standard_normal(members.shape).astype(np.float32) * 0.08)


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    """One vector far from every cluster, stored under PLANTED_ID."""
    return unit(np.random.default_rng(5).standard_normal((1, DIMENSION)))


@pytest.fixture(scope="module")
def chunk_ids(clustered: np.ndarray) -> np.ndarray:
    """Sparse, unordered ids, as chunk row ids become after deletions."""
    return np.random.default_rng(4).permutation(len(clustered) * 5)[: len(clustered)].astype(np.int64) + 1000


@pytest.fixture(scope="module")
def indexes(clustered, chunk_ids, planted) -> dict[str, faiss.Index]:
    """One index of each kind over the clustered vectors plus the planted one (HNSW builds take seconds)."""
    vectors, ids = np.vstack([clustered, planted]), np.append(chunk_ids, PLANTED_ID)
    return {kind: build_vector_index(vectors, ids, DIMENSION, kind) for kind in VECTOR_INDEX_KINDS}


@pytest.mark.parametrize("kind", VECTOR_INDEX_KINDS)
def test_each_kind_finds_a_planted_neighbour_under_its_chunk_id(kind, indexes, chunk_ids, planted):
    query = unit(planted + np.random.default_rng(6).standard_normal(planted.shape).astype(np.float32) * 0.02)
    scores, found = indexes[kind].search(query, 3)
    assert found[0][0] == PLANTED_ID
    assert scores[0][0] == pytest.approx(float(query[0] @ planted[0]), abs=1e-4)  # inner product = cosine
    assert set(found[0][1:]) <= set(chunk_ids.tolist())


@pytest.mark.parametrize("kind", VECTOR_INDEX_KINDS)
def test_serialized_index_keeps_kind_ids_and_search_settings(kind, indexes, clustered):
    index = indexes[kind]
    copy = faiss.deserialize_index(faiss.serialize_index(index))
    inner = faiss.downcast_index(copy.index)
    expected = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}[kind]
    assert isinstance(inner, expected)
    if kind == "hnsw":
        assert inner.hnsw.efSearch == HNSW_EF_SEARCH
    if kind == "ivf":
        assert inner.nprobe == IVF_NPROBE
    assert np.array_equal(copy.search(clustered[:20], 5)[1], index.search(clustered[:20], 5)[1])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_kinds_that_support_removal_forget_removed_ids(kind, clustered, chunk_ids):
    index = build_vector_index(clustered, chunk_ids, DIMENSION, kind)
    removed = index.remove_ids(np.array(chunk_ids[:10], dtype=np.int64))
    assert removed == 10
    assert index.ntotal == len(chunk_ids) - 10
    assert not set(index.search(clustered[:10], 1)[1][:, 0]) & set(chunk_ids[:10].tolist())


def test_hnsw_cannot_remove_so_the_store_must_rebuild(clustered, chunk_ids):
    index = build_vector_index(clustered[:200], chunk_ids[:200], DIMENSION, "hnsw")
    with pytest.raises(RuntimeError):
        index.remove_ids(np.array(chunk_ids[:1], dtype=np.int64))
    rebuilt = build_vector_index(clustered[1:200], chunk_ids[1:200], DIMENSION, "hnsw")
    assert chunk_ids[0] not in rebuilt.search(clustered[:1], 5)[1][0]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_at_10_against_exact_is_at_least_095(kind, indexes, clustered):
    rng = np.random.default_rng(7)
    queries = unit(clustered[rng.choice(len(clustered), 200, replace=False)]
                   + rng.standard_normal((200, DIMENSION)).astype(np.float32) * 0.05)
    truth = indexes["flat"].search(queries, 10)[1]
    found = indexes[kind].search(queries, 10)[1]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_unknown_kind_is_refused_with_the_valid_kinds():
    with pytest.raises(ValueError, match=r"'annoy'.*flat, hnsw, ivf"):
        make_vector_index(DIMENSION, "annoy")


def test_ivf_without_expected_size_says_what_to_pass():
    with pytest.raises(ValueError, match="expected_size"):
        make_vector_index(DIMENSION, "ivf")


def test_ivf_is_untrained_until_trained_and_lists_follow_size(clustered):
    index = make_vector_index(DIMENSION, "ivf", expected_size=len(clustered))
    assert not index.is_trained
    assert faiss.extract_index_ivf(index).nlist == ivf_list_count(len(clustered)) == 76
    train_if_needed(index, clustered)
    assert index.is_trained
    flat = make_vector_index(DIMENSION, "flat")
    train_if_needed(flat, clustered[:1])  # nothing to train: no error, no change
    assert flat.is_trained and flat.ntotal == 0


def test_small_or_empty_ivf_falls_back_to_exact(clustered, chunk_ids):
    empty = build_vector_index(clustered[:0], chunk_ids[:0], DIMENSION, "ivf")
    assert empty.ntotal == 0
    tiny = build_vector_index(clustered[:10], chunk_ids[:10], DIMENSION, "ivf")
    assert isinstance(faiss.downcast_index(tiny.index), faiss.IndexFlatIP)
    assert tiny.search(clustered[3:4], 1)[1][0][0] == chunk_ids[3]


def test_ingest_records_and_uses_the_vector_index_kind(tmp_path, fact_corpus, embedder):
    from ingest.pipeline import ingest
    from rag_app.config import IngestOptions
    from rag_app.index.local import LocalBackend

    index = tmp_path / "index"
    ingest([fact_corpus], index, embedder)
    report = ingest([fact_corpus], index, embedder, IngestOptions(vector_index="hnsw"))
    assert any("hnsw" in note for note in report.notes) and report.chunks_embedded == 0
    store = LocalBackend.open(index)
    assert store.meta()["vector_index"] == "hnsw"
    view = store.copies.view()
    assert "HNSW" in type(faiss.downcast_index(view.vectors.index)).__name__
    [(chunk_id, _)] = view.dense(embedder.embed_query("Zorblax fountain purple water"), 1)
    assert store.chunks([chunk_id])[chunk_id].path.endswith("fountain.txt")


def test_auto_is_exact_below_its_threshold_and_ivf_from_it(monkeypatch, clustered, chunk_ids):
    from rag_app.index import vectors

    monkeypatch.setattr(vectors, "AUTO_IVF_FROM", 2000)
    small = build_vector_index(clustered[:1999], chunk_ids[:1999], DIMENSION, "auto")
    large = build_vector_index(clustered, chunk_ids, DIMENSION, "auto")
    assert isinstance(faiss.downcast_index(small.index), faiss.IndexFlatIP)
    assert isinstance(faiss.downcast_index(large.index), faiss.IndexIVFFlat)
    assert large.search(clustered[7:8], 1)[1][0][0] == chunk_ids[7]


def test_a_local_index_without_a_chosen_kind_searches_ivf_once_it_is_large(monkeypatch, tmp_path, clustered,
                                                                           chunk_ids):
    """The default kind is `auto`: the FAISS copy a reader searches turns approximate past the threshold."""
    from rag_app.index import FileChunks, FileRecord, IndexFacts, vectors
    from rag_app.index.local import LocalBackend
    from rag_app.types import Chunk, content_hash

    monkeypatch.setattr(vectors, "AUTO_IVF_FROM", 1000)
    store = LocalBackend.open_for_write(tmp_path / "index", IndexFacts("synthetic", DIMENSION, 128))
    files, stored = [], {}
    for number, vector in enumerate(clustered[:1200]):
        path = f"doc{number:05d}.txt"
        chunk = Chunk(f"passage {number}", path, 0)
        stored[chunk.content_hash] = vector
        files.append(FileChunks(FileRecord(path, 10, 0, content_hash(path), "text", 1), [chunk], [[f"p{number}"]]))
    store.replace_files(files, stored)
    store.finish_write()
    store.close()

    reader = LocalBackend.open(tmp_path / "index")
    view = reader.copies.view()
    assert reader.meta().get("vector_index", "auto") == "auto"
    assert isinstance(faiss.downcast_index(view.vectors.index), faiss.IndexIVFFlat)
    [(chunk_id, _)] = view.dense(clustered[42], 1)
    assert reader.chunks([chunk_id])[chunk_id].text == "passage 42"
    reader.close()
