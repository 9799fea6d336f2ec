"""Abstention: over a cooking corpus, off-topic questions are judged not relevant and cooking questions are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.evaluation import abstention
from rag_app.retrieval import Retriever, SearchOptions
from tests.facts import ingest_files, record_embeddings

COOKING = {
    "bread.md": "# Bread\n\nKnead the dough for ten minutes, let it rise until doubled, then bake at 220 C for "
                "thirty minutes until the crust is deep brown.\n",
    "pasta.md": "# Pasta\n\nBoil pasta in plenty of well-salted water. Adding oil to the water only makes the "
                "sauce slide off the noodles.\n",
    "steak.md": "# Steak\n\nSear the steak in a very hot pan, then let it rest for five to ten minutes so the "
                "juices settle before slicing.\n",
    "eggs.md": "# Eggs\n\nOlder eggs are easier to peel after boiling because the pH of the white rises as "
               "they age.\n",
    "rice.txt": "米饭的做法：淘米之后先把米浸泡三十分钟，米和水的比例大约是一比一点二，大火煮开后转小火焖十五分钟。\n",
}
UNANSWERABLE = [
    "What is the boiling point of tungsten?",
    "Who wrote Moby-Dick?",
    "How many moons does Neptune have?",
    "比特币的总量上限是多少？",
]
ANSWERABLE = [
    "How long should a steak rest after cooking?",
    "Why shouldn't I add oil to pasta water?",
    "How long do I knead bread dough?",
    "米饭 米和水的比例",
]


@pytest.fixture(scope="module")
def cooking(tmp_path_factory, embedder) -> Retriever:
    from rag_app.index import Index

    index = Index.open(ingest_files(tmp_path_factory, "cooking", COOKING, embedder), embedder)
    yield Retriever(index)
    index.close()


def test_the_tungsten_question_abstains(cooking: Retriever) -> None:
    sources = cooking.search("What is the boiling point of tungsten?")
    assert sources, "search still returns its best guesses"
    assert not cooking.is_relevant(sources)


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_off_topic_questions_are_not_relevant(cooking: Retriever, question: str) -> None:
    assert not cooking.is_relevant(cooking.search(question))


@pytest.mark.parametrize("question", ANSWERABLE)
def test_cooking_questions_are_relevant(cooking: Retriever, question: str) -> None:
    sources = cooking.search(question)
    assert cooking.is_relevant(sources), [(source.path, source.relevance) for source in sources]


def test_the_threshold_is_the_options_own(cooking: Retriever) -> None:
    sources = cooking.search("How long should a steak rest after cooking?")
    best = max(source.relevance for source in sources)
    assert cooking.is_relevant(sources, SearchOptions(min_relevance=best))
    assert not cooking.is_relevant(sources, SearchOptions(min_relevance=best + 0.01))


def test_abstention_rates_over_a_question_file(cooking: Retriever, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    lines = [{"text": text, "answerable": False} for text in UNANSWERABLE]
    lines += [{"text": text, "answerable": True} for text in ANSWERABLE]
    questions.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8")
    rates = abstention(cooking, questions, SearchOptions())
    assert rates == {"abstain_false_answer_rate": 0.0, "abstain_false_abstain_rate": 0.0,
                     "abstain_unanswerable": 4, "abstain_answerable": 4}


def test_a_near_miss_on_the_topic_is_refused_by_its_sentences(cooking: Retriever, monkeypatch) -> None:
    """The eggs passage is on the topic of this question (its rare terms), but no sentence says anything like a
    price: the sentence test refuses it. Without the test, the lowered topical thresholds would answer it."""
    from rag_app import calibration

    question = "How much does a dozen older eggs cost?"
    sources = cooking.search(question)
    assert sources[0].path.endswith("eggs.md") and not cooking.is_relevant(sources)
    fitted = calibration.CALIBRATION[("all-MiniLM-L6-v2", False)]
    assert fitted.sentence > 0
    monkeypatch.setitem(calibration.CALIBRATION, ("all-MiniLM-L6-v2", False),
                        calibration.RelevanceCalibration(fitted.cosine, fitted.coverage, sentence=0.0))
    assert cooking.is_relevant(cooking.search(question)), "the topical test alone lets the near miss through"


def test_an_answer_in_other_words_passes_the_lowered_topical_thresholds(cooking: Retriever) -> None:
    """Neither the passage's cosine nor its term coverage reached the thresholds fitted without a sentence test
    (0.58, 0.725); with one, the lower coverage threshold and a close sentence ("well-salted water") answer."""
    sources = cooking.search("How much salt goes in pasta water?")
    assert sources[0].path.endswith("pasta.md") and cooking.is_relevant(sources)


LIGHTHOUSE = {
    "beam.md": "# Varnholm lighthouse\n\nThe Varnholm lighthouse beam shines green across the bay every night.\n",
    "keeper.md": "# Varnholm keepers\n\nEvery night the Varnholm lighthouse keeper polishes the lens of the beam.\n",
    "tower.md": "# Varnholm history\n\nThe Varnholm lighthouse beam was first lit in 1850 by masons from Bergen.\n",
    "bread.md": COOKING["bread.md"],
    "pasta.md": COOKING["pasta.md"],
}


def test_the_sentence_test_stops_at_the_first_passage_that_passes(tmp_path_factory, embedder, monkeypatch) -> None:
    """Every passage is on the topic of the question; the first tested passes, so only its sentence is embedded
    (each sentence costs ~15-20 ms of a search), and the others keep their topical relevance."""
    from rag_app.index import Index

    with Index.open(ingest_files(tmp_path_factory, "lighthouse", LIGHTHOUSE, embedder), embedder) as index:
        retriever = Retriever(index)
        embedded = record_embeddings(monkeypatch, index.embedder)
        sources = retriever.search("What colour is the Varnholm lighthouse beam at night?")
    assert sources[0].path.endswith("beam.md") and retriever.is_relevant(sources)
    topical = [source.path for source in sources if source.relevance >= 0.5]
    assert len(topical) == 3, [(source.path, source.relevance) for source in sources]
    assert embedded == ["The Varnholm lighthouse beam shines green across the bay every night."]


def test_a_passage_is_tested_on_its_statements_closest_in_terms_first(cooking: Retriever, monkeypatch) -> None:
    """Statements are embedded one at a time, those sharing the most question terms first, until one reaches the
    threshold; where none does, every one is embedded and the result is the best of all of them."""
    from rag_app.retrieval import best_sentence_cosines, sentence_cosine

    text = ("Gulls nest on the rocks below. Fog rolls in each autumn. The Varnholm lighthouse beam shines green "
            "across the bay every night. Tourists arrive by ferry in summer.")
    query = cooking.index.query("What colour is the Varnholm lighthouse beam at night?")
    embedder = cooking.index.embedder
    embedded = record_embeddings(monkeypatch, embedder)
    assert sentence_cosine(text, query, embedder, threshold=0.5) >= 0.5
    assert embedded == ["The Varnholm lighthouse beam shines green across the bay every night."]
    embedded.clear()
    unreachable = sentence_cosine(text, query, embedder, threshold=1.01)
    assert len(embedded) == 4 and unreachable == pytest.approx(best_sentence_cosines([text], query.vector, embedder)[0])


@pytest.mark.parametrize("threshold", [0.5, 0.82, 0.88])
def test_the_sentence_cosine_that_passes_is_the_one_the_users_threshold_needs(threshold: float) -> None:
    """The staged sentence test stops at the cosine that reaches the user's min_relevance, not the fitted 0.5."""
    from rag_app.calibration import RelevanceCalibration, relevance, unscaled

    calibration = RelevanceCalibration(cosine=0.0, coverage=0.0, sentence=threshold)
    for min_relevance in (0.2, 0.5, 0.7, 0.95):
        needed = unscaled(min_relevance, threshold)
        assert relevance(1.0, 1.0, calibration, needed) == pytest.approx(min_relevance)
        assert relevance(1.0, 1.0, calibration, needed - 0.01) < min_relevance


@pytest.mark.parametrize("floor", [0.0, 0.99])
def test_a_close_statement_makes_its_passage_relevant_by_itself_above_the_floor(cooking: Retriever, monkeypatch,
                                                                                floor: float) -> None:
    """With topical thresholds no passage reaches, a statement as close as the statement threshold still answers:
    passages are tested closest first and the test stops at the first that passes; below the floor nothing is
    embedded and the question is refused."""
    from rag_app import calibration

    monkeypatch.setitem(calibration.CALIBRATION, ("all-MiniLM-L6-v2", False), calibration.RelevanceCalibration(
        cosine=0.99, coverage=1.0, sentence=0.5, statement=0.5, statement_floor=floor))
    retriever = Retriever(cooking.index)  # its own remembered sentences: what it embeds is recorded
    embedded = record_embeddings(monkeypatch, cooking.index.embedder)
    sources = retriever.search("How much salt goes in pasta water?")
    assert sources[0].path.endswith("pasta.md")
    if floor == 0.0:
        assert cooking.is_relevant(sources) and sources[0].relevance >= 0.5
        assert embedded and all(text in COOKING["pasta.md"] for text in embedded), embedded
    else:
        assert not cooking.is_relevant(sources) and embedded == []


VM_FAQ = {
    "vm-faq.md": "# Virtual machine FAQ\n\n## Why is networking slow in WSL2?\n\nThis can affect installing as well "
                 "as downloading. In Control Panel, open the properties of the vEthernet adapter and disable Large "
                 "Send Offload for IPv4 and IPv6.\n\n## How do I change the paper size?\n\nOpen Settings, choose "
                 "Paper and pick A4 or Letter.\n",
    "printer-care.md": "# Printer care\n\nWipe the print head with a lint-free cloth once a month and keep the "
                       "lid closed so that dust stays out.\n",
}
QUESTION = "Why is networking slow in WSL2?"


def test_a_passage_under_a_heading_that_asks_the_question_is_relevant(tmp_path_factory, embedder,
                                                                        monkeypatch) -> None:
    """An FAQ's answer rarely restates its question, so no sentence of it is close to the question in meaning;
    the heading that asks it says the section answers it. It passes the sentence test with nothing embedded."""
    from rag_app.index import Index
    from rag_app.retrieval import sentence_cosine

    index = Index.open(ingest_files(tmp_path_factory, "faq", VM_FAQ, embedder), embedder)
    retriever = Retriever(index)
    sources = retriever.search(QUESTION)
    assert retriever.is_relevant(sources) and sources[0].path.endswith("vm-faq.md")
    embedded = record_embeddings(monkeypatch, embedder)
    assert sentence_cosine(sources[0].text, index.query(QUESTION), embedder, 0.5) == 1.0
    assert embedded == []
    assert not retriever.is_relevant(retriever.search("Why is the fax machine jammed?"))
    index.close()
