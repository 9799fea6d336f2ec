"""Sentence-level attribution with the real tokenizer and embedder: citations kept, moved, removed, or marked."""

from __future__ import annotations

import pytest

from rag_app.attribution import Attributor, render
from rag_app.language import split_sentences
from rag_app.types import AnswerSentence, Chunk, Hit

PORT = "The app listens on port 7860 by default. Change it with the --port flag when you start the app."
BREAD = "Knead the dough for ten minutes. Let it rise for two hours in a warm place, then bake at 220 C."
ZH = "默认端口是7860。启动时可以用 --port 参数修改端口。索引保存在 indexes 文件夹里。"
MEANING = 0.58  # all-MiniLM-L6-v2's English relevance cosine (rag_app.calibration)


def passages(*texts: str) -> list[Hit]:
    return [Hit(Chunk(text, f"doc{number}.md", id=number), 1.0, number=number)
            for number, text in enumerate(texts, start=1)]


@pytest.fixture(scope="module")
def attributor(embedder) -> Attributor:
    return Attributor(passages(PORT, BREAD, ZH), embedder, MEANING)


def test_a_supported_citation_is_kept(attributor):
    sentence = attributor.attribute("The default port is 7860 [1].")
    assert (sentence.text, sentence.citations, sentence.supported) == ("The default port is 7860.", (1,), True)
    assert sentence.evidence == "The app listens on port 7860 by default."


def test_a_citation_to_the_wrong_passage_moves_to_the_right_one(attributor):
    sentence = attributor.attribute("Knead the dough for ten minutes before it rises [1].")
    assert sentence.citations == (2,) and sentence.supported


def test_a_citation_to_no_passage_goes_and_an_uncited_supported_sentence_gets_one(attributor):
    assert attributor.attribute("Bake the bread at 220 C [9].").citations == (2,)
    assert attributor.attribute("Bake the bread at 220 C.").citations == (2,)


def test_a_sentence_no_passage_supports_is_marked(attributor):
    sentence = attributor.attribute("The museum opens late on Thursdays [1].")
    assert not sentence.supported and sentence.citations == () and sentence.checked


def test_a_wrong_number_is_not_supported_even_when_the_words_match(attributor):
    sentence = attributor.attribute("The app listens on port 8080 by default [1].")
    assert not sentence.supported and sentence.citations == ()


def test_chinese_sentences_are_attributed_by_character_pairs(attributor):
    sentence = attributor.attribute("默认端口是7860[1]。")
    assert sentence.supported and sentence.citations == (3,)
    assert not attributor.attribute("比特币是一种加密货币。").supported


def test_sentences_that_state_nothing_are_not_checked(attributor):
    sentence = attributor.attribute("Yes.")
    assert sentence.supported and not sentence.checked and sentence.citations == ()


def test_only_what_a_sentence_adds_to_the_question_is_checked(embedder):
    question = "Which week of the year is off-limits for taking leave?"
    text = "Leave is off-limits during the last full week of March, the annual close week."
    attributor = Attributor(passages(text), embedder, MEANING, question)
    assert attributor.attribute("The last full week of March is off-limits for taking leave [1].").supported
    invented = attributor.attribute("The week of January 1st is off-limits for taking leave [1].")
    assert not invented.supported and invented.citations == ()
    assert not attributor.attribute("Which week is off-limits for taking leave?").checked


def test_render_puts_citations_before_the_full_stop_and_joins_chinese_without_spaces():
    english = [AnswerSentence("The port is 7860.", (1,), True), AnswerSentence("It can change.", (1, 2), True)]
    assert render(english) == "The port is 7860 [1]. It can change [1, 2]."
    chinese = [AnswerSentence("默认端口是7860。", (3,), True), AnswerSentence("可以修改。", (), False)]
    assert render(chinese) == "默认端口是7860 [3]。可以修改。"
    assert split_sentences(render(english)) == ["The port is 7860 [1].", "It can change [1, 2]."]
