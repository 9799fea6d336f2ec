"""MiniLM queries and small batches on ONNX Runtime: the same vectors as torch's, its export in the shared model
cache."""

from __future__ import annotations

import numpy as np

from rag_app.models import model_cache
from rag_app.models.embedder import ONNX_TEXTS
from rag_app.models.onnx_query import ONNX_NAME, weights_file
from rag_app.models.threads import one_torch_thread

QUERIES = (
    "Which river ends in the Black Sea?",
    "长江流经哪些城市？",
    " ".join(["lighthouse keeper's logbook"] * 120),  # past the 256-token window: both sides must cut it alike
)


def test_queries_run_on_onnx_with_torchs_vectors(embedder, monkeypatch):
    assert embedder._onnx is not None, "the bundled MiniLM's queries should run on ONNX Runtime"
    calls: list[list[str]] = []
    original = embedder.embed_documents
    monkeypatch.setattr(embedder, "embed_documents", lambda texts: calls.append(texts) or original(texts))
    vectors = np.stack([embedder.embed_query(text) for text in QUERIES])
    assert calls == [], "a query went through torch"
    monkeypatch.undo()
    with one_torch_thread():
        expected = embedder.model.encode(list(QUERIES), normalize_embeddings=True, convert_to_numpy=True)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.sum(vectors * expected, axis=1).min() > 0.9999


def test_the_export_is_a_cache_entry_keyed_by_the_weights_it_came_from(embedder):
    weights = weights_file(embedder.model)
    folder = model_cache.cached_folder(weights, marker=ONNX_NAME)
    assert (folder / ONNX_NAME).is_file() and folder.name.startswith("all-MiniLM-L6-v2-")
    entry = next(entry for entry in model_cache.entries() if entry.folder == folder)
    # The cache is shared: another checkout holding the same weights may be listed too.
    assert str(weights.resolve()) in entry.sources and entry.size_bytes > 50 * 2**20


def test_other_pipelines_keep_their_queries_on_torch(embedder):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling

    first_token = SentenceTransformer(modules=[embedder.model[0], Pooling(embedder.dimension, "cls"), Normalize()])
    assert weights_file(first_token) is None
    assert weights_file(SentenceTransformer(modules=[embedder.model[0], embedder.model[1]])) is None


def test_an_export_that_disagrees_with_torch_or_fails_leaves_the_queries_on_torch(embedder, tmp_path, monkeypatch):
    from rag_app.models import onnx_query

    monkeypatch.setattr(onnx_query, "AGREEMENT", 1.01)  # no export can agree this well: it must not be used
    assert onnx_query.OnnxQueryEncoder.for_model(embedder.model, embedder.name) is None
    monkeypatch.undo()

    def broken(model, target):  # type: ignore[no-untyped-def]
        raise RuntimeError("unsupported operator")

    monkeypatch.setenv("RAG_APP_HOME", str(tmp_path / "home"))  # an empty cache, so the export is attempted
    monkeypatch.setattr(onnx_query, "export", broken)
    assert embedder._onnx_encoder() is None


def test_a_few_texts_run_on_onnx_and_a_batch_on_torch_with_the_same_vectors(embedder, monkeypatch):
    """The sentence test embeds two statements per search: they take the query path, an ingest's batch does not."""
    texts = ["The Danube ends in the Black Sea.", "Knead the dough for ten minutes, then let it rise until doubled.",
             *QUERIES]
    torch_calls: list[int] = []
    encode = embedder.model.encode

    def recording(batch: list[str], **options):  # type: ignore[no-untyped-def]
        torch_calls.append(len(batch))
        return encode(batch, **options)

    monkeypatch.setattr(embedder.model, "encode", recording)
    few = embedder.embed_documents(texts[:ONNX_TEXTS])
    assert torch_calls == [], "a small batch went through torch"
    many = embedder.embed_documents(texts * ONNX_TEXTS)
    assert torch_calls == [len(texts) * ONNX_TEXTS]
    assert few.dtype == np.float32 and np.sum(few * many[:len(few)], axis=1).min() > 0.9999
