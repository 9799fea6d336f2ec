"""Follow-up questions: detection, the deterministic condense, and retrieval of the right passage on a real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_app.followup import condense_deterministic, last_assistant_message, looks_like_followup
from tests.facts import ingest_files

GPT2_HISTORY = [
    {"role": "user", "content": "GPT-2 的词汇表有多少个 token？"},
    {"role": "assistant", "content": "GPT-2 的词汇表共有 50,257 个 token [1]。"},
]
GPT2_FOLLOWUP = "那它的上下文窗口有多大？"
# Original passages: two about GPT-2, and neighbours that also talk about context windows and vocabularies.
FILES = {
    "gpt2-vocabulary.txt": "GPT-2 的分词与词汇表\n\nGPT-2 使用字节级的字节对编码（BPE）分词，"
    "词汇表共有 50,257 个 token，因此可以表示任意字符串。",
    "gpt2-context.txt": "GPT-2 的上下文长度\n\nGPT-2 一次最多处理 1024 个 token，这就是它的上下文窗口；"
    "更长的文本必须截断或分段。",
    "llama-context.txt": "Llama 2 的上下文长度\n\nLlama 2 的上下文窗口为 4096 个 token，比第一代 Llama 扩大了一倍。",
    "bert-vocabulary.txt": "BERT 的词汇表\n\nBERT 使用 WordPiece 分词，英文模型的词汇表大约有 30,000 个 token。",
    "tea.txt": "龙井茶\n\n龙井茶是产自杭州西湖一带的绿茶，冲泡时宜用 80 度左右的水。",
    "rivers.txt": "长江\n\n长江全长约 6300 公里，是中国最长的河流，最后在上海注入东海。",
}


@pytest.mark.parametrize("question", [
    "那它的上下文窗口有多大？", "它们一天要吃掉多少？", "这门语言的第一个版本是哪年发布的？", "为什么？",
    "Who discovered it, and when?", "And when did they start building it?", "What about Rust?",
])
def test_followups_are_recognised(question: str) -> None:
    assert looks_like_followup(question)


@pytest.mark.parametrize("question", [
    "泡龙井茶应该用多少度的水？", "跑步后应该喝白开水还是运动饮料？", "其他行星有没有卫星？", "中国最长的河是哪一条？",
    "Who wrote Moby-Dick?", "Which moon in the solar system is the largest?",
])
def test_standalone_questions_are_left_alone(question: str) -> None:
    assert not looks_like_followup(question)
    assert condense_deterministic(question, GPT2_HISTORY) == question


def test_condense_puts_the_previous_turn_first_and_the_followup_twice() -> None:
    condensed = condense_deterministic(GPT2_FOLLOWUP, GPT2_HISTORY)
    previous_turn = "GPT-2 的词汇表有多少个 token？ GPT-2 的词汇表共有 50,257 个 token。"
    assert condensed == f"{previous_turn} {GPT2_FOLLOWUP} {GPT2_FOLLOWUP}"
    assert condense_deterministic(GPT2_FOLLOWUP, []) == GPT2_FOLLOWUP


def test_long_answers_are_cut() -> None:
    history = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "x" * 5000 + " [2, 3]"}]
    assert last_assistant_message(history, max_chars=50) == "x" * 50
    assert last_assistant_message([{"role": "user", "content": "Q?"}]) == ""


@pytest.fixture(scope="module")
def gpt2_index(tmp_path_factory, embedder) -> Path:
    return ingest_files(tmp_path_factory, "followup_docs", FILES, embedder)


def test_condensed_followup_retrieves_the_gpt2_context_passage(gpt2_index: Path, embedder) -> None:
    from rag_app.config import SearchOptions
    from rag_app.index import Index
    from rag_app.retrieval import Retriever

    retriever = Retriever(Index.open(gpt2_index, embedder))
    options = SearchOptions(k=3, merge_neighbours=False)
    sources = retriever.search(condense_deterministic(GPT2_FOLLOWUP, GPT2_HISTORY), options)
    assert Path(sources[0].path).name == "gpt2-context.txt"
    raw = [Path(source.path).name for source in retriever.search(GPT2_FOLLOWUP, options)]
    assert "gpt2-context.txt" in raw and "llama-context.txt" in raw  # without history, both windows tie


def test_agent_answers_the_followup_from_the_gpt2_passage(gpt2_index: Path, embedder, llm) -> None:
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings, GenerationSettings
    from rag_app.index import Index

    settings = AgentSettings(max_steps=0, generation=GenerationSettings(max_new_tokens=16))
    agent = RagAgent(Index.open(gpt2_index, embedder), llm, settings)
    answer = agent.ask(GPT2_FOLLOWUP, history=GPT2_HISTORY)
    assert not answer.abstained
    assert Path(answer.sources[0].path).name == "gpt2-context.txt"
    assert "上下文窗口" in answer.query and "GPT-2" in answer.query
