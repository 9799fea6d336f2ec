"""From the passages to the answer the user sees, in three modes.

- `generative`: the model's words as it writes them; afterwards each sentence is attributed to the passage that
  supports it (rag_app.attribution) and what nothing supports is marked.
- `extractive`: the passages' own sentences that best answer the question, cited; the model is not asked.
- `auto` (the default): the model's words, shown sentence by sentence once each is checked. The first sentence no
  passage supports ends the generation: if nothing was shown yet the answer falls back to the extractive one, and
  says so; otherwise the checked sentences stand and the rest is cut, and the answer says so. A weak model (the
  bundled 135M one) thereby costs one sentence of generation before the passages speak for themselves; once a
  model's checked answers have failed often enough (rag_app.models.actions), `auto` stops asking it and answers
  extractively at once, with a notice that says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from rag_app.attribution import Attributor, render, separator
from rag_app.citations import answer_terms, following, introduced, rank_statements, readable
from rag_app.config import AnswerMode, GenerationSettings
from rag_app.index.lexical import tokenize
from rag_app.language import complete_sentences, is_cjk, unwrapped
from rag_app.models.chat import ChatLLM
from rag_app.models.embedder import Embedder
from rag_app.types import AnswerSentence, Hit

# Extractive answers: the best statement, and the runner-up when it scores at least this share of the best
# (a second sentence often carries the rest of an answer that spans two).
SECOND_SENTENCE_SHARE = 0.8
EXTRACTIVE_SENTENCES = 2
RESTATED_SHARE = 0.75
_CONDITION = re.compile(r"(?:if|when|whenever|in case)\b|(?:如果|假如|要是|若|当)", re.IGNORECASE)
_WHAT_TO_DO = re.compile(r"\bwhat (?:should|can|do) (?:i|we|you) do\b|\bwhat if\b|\bhow (?:do|can|should) (?:i|we|you) "
                         r"(?:fix|solve|resolve|avoid|prevent|stop)\b|\bwhat (?:should|can) (?:i|we|you) try\b|"
                         r"怎么办|如何解决|怎么解决|怎样解决|该怎么做", re.IGNORECASE)
FALLBACK_NOTICE = {
    False: "The model's answer could not be checked against the passages, so these are the passages' own words.",
    True: "模型的回答无法与检索到的段落核对，因此这里给出段落原文。",
}
CUT_NOTICE = {
    False: "The rest of the model's answer was left out: no passage supports it.",
    True: "模型回答的其余部分没有段落支持，已略去。",
}
SKIPPED_NOTICE = {
    False: "This model's answers have rarely been supported by the passages ({valid} of {tries} checked), so it was "
           "not asked: these are the passages' own words (answer mode generative asks it anyway).",
    True: "该模型的回答很少得到段落支持（核对 {tries} 次，{valid} 次通过），因此未调用模型，这里给出段落原文"
          "（生成模式仍会调用模型）。",
}
UNSUPPORTED_NOTICE = {
    False: "{count} sentence(s) of this answer are not supported by any passage: they are marked.",
    True: "本回答有 {count} 句没有段落支持，已标出。",
}


@dataclass
class Composed:
    """What an answer turned out to be: its sentences, who wrote them, why, and the model's own text."""

    sentences: list[AnswerSentence] = field(default_factory=list)
    mode: str = "generative"
    notice: str = ""
    generated: str = ""


def extractive_sentences(question: str, hits: Sequence[Hit], embedder: Embedder | None,
                         meaning_cosine: float) -> list[AnswerSentence]:
    """The passages' statements that best answer the question (one, or two when the second is nearly as good).
    A best statement that restates the question (`restates`) comes with the statement after it, what it leads to
    ("If an ingest is already running on an index, a second ingest on the same index is refused." -> "Wait for
    the first one to finish and try again.")."""
    # Where no statement shares a term with the question or comes that close in meaning (a user answering from a
    # refusal's closest passages: "Is my data sent anywhere?" over the guide's section on asking), the statements
    # closest in meaning are shown, lines of code as the last resort: an empty answer tells the user nothing.
    ranked = (rank_statements(question, hits, embedder, meaning_cosine)
              or rank_statements(question, hits, embedder, meaning_cosine=-1.0)
              or rank_statements(question, hits, embedder, meaning_cosine=-1.0, code_lines=True))
    chosen = [(found.sentence, found.position) for number, found in enumerate(ranked[:EXTRACTIVE_SENTENCES])
              if number == 0 or found.score >= SECOND_SENTENCE_SHARE * ranked[0].score]
    if ranked and restates(question, ranked[0].text):
        after = following(hits[ranked[0].position].text, ranked[0].sentence)
        chosen[1:1] = [(after, ranked[0].position)] if after else []
    shown = dict.fromkeys(chosen)  # two clauses of one sentence: once
    answer = [AnswerSentence(" ".join(filter(None, (readable(unwrapped(sentence)), introduced(hits[position].text,
                                                                                         sentence)))),
                             (hits[position].number,), supported=True, support=1.0, evidence=sentence)
              for sentence, position in shown]
    # A list item chosen beside the sentence that introduces its list ("It includes:") is shown once, in the list.
    return [one for one in answer if not any(len(other.text) > len(one.text) and unwrapped(one.evidence) in other.text
                                             for other in answer)]


def restates(question: str, text: str) -> bool:
    """Whether a statement sets out the question's situation rather than answers it: the question asks what to
    do about one ("What should I do if ...", "...怎么办？"), or the statement states a condition ("If your AMD GPU
    is not detected on Linux ...") holding most of the question's terms (RESTATED_SHARE). "The Zorblax fountain
    sings at 4 pm" holds every term of "When does the Zorblax fountain sing?" and answers it."""
    if _WHAT_TO_DO.search(question):
        return True
    terms = answer_terms(question)
    held = len(terms & set(tokenize(text))) / len(terms) if terms else 0.0
    return bool(_CONDITION.match(text.strip())) and held >= RESTATED_SHARE


class Composer:
    """Streams the answer's text in one mode and keeps what it composed in `result`."""

    def __init__(self, mode: AnswerMode, question: str, hits: Sequence[Hit], embedder: Embedder | None,
                 meaning_cosine: float, notice: str = "", min_relevance: float = 0.0,
                 retrieved: Sequence[Hit] = ()) -> None:
        self.mode = mode
        self.notice = notice  # an extractive answer's reason
        self.question = question
        self.hits = list(hits)  # what the model was shown, cut to its window
        # What `auto` answers may rest on: the shown passages relevant to this question. Another passage in the
        # prompt (the topic of an earlier turn) can support a sentence, but not answer this question.
        self.grounds = _relevant(self.hits, min_relevance)
        # Extractive answers ask no model, so its window does not bound them: they draw on every relevant
        # retrieved passage, whole (a long Chinese passage may not fit a small model's window at all).
        self.extract_from = _relevant(list(retrieved), min_relevance) or self.grounds
        self.embedder = embedder
        self.meaning_cosine = meaning_cosine
        self.chinese = is_cjk(question)
        self.result = Composed()

    def stream(self, llm: ChatLLM, messages: list[dict[str, Any]], generation: GenerationSettings) -> Iterator[str]:
        """The answer's text as it should be shown, piece by piece."""
        if self.mode == "extractive":
            yield from self._extractive(notice=self.notice)
        elif self.mode == "generative":
            yield from self._generative(llm, messages, generation)
        else:
            yield from self._checked(llm, messages, generation)

    def _extractive(self, notice: str, generated: str = "") -> Iterator[str]:
        sentences = extractive_sentences(self.question, self.extract_from, self.embedder, self.meaning_cosine)
        self.result = Composed(sentences, "extractive", notice, generated)
        yield from _pieces(sentences)

    def _generative(self, llm: ChatLLM, messages: list[dict[str, Any]],
                    generation: GenerationSettings) -> Iterator[str]:
        with closing(llm.stream(messages, generation)) as completion:
            yield from completion
        attributor = Attributor(self.hits, self.embedder, self.meaning_cosine, self.question)
        sentences = [attributor.attribute(sentence) for sentence in _sentences(completion.text)]
        unsupported = sum(not sentence.supported for sentence in sentences)
        notice = UNSUPPORTED_NOTICE[self.chinese].format(count=unsupported) if unsupported else ""
        self.result = Composed(sentences, "generative", notice, completion.text)

    def _checked(self, llm: ChatLLM, messages: list[dict[str, Any]], generation: GenerationSettings) -> Iterator[str]:
        attributor = Attributor(self.grounds, self.embedder, self.meaning_cosine, self.question)
        shown: list[AnswerSentence] = []
        pending = ""
        cut = False
        with closing(llm.stream(messages, generation)) as completion:
            for piece in completion:
                complete, pending = complete_sentences(pending + piece)
                for sentence in map(attributor.attribute, complete):
                    if not sentence.supported:
                        cut = True
                        break
                    yield from _pieces([sentence], after=shown)
                    shown.append(sentence)
                if cut:
                    break
        if not cut and pending.strip():
            sentence = attributor.attribute(pending)
            cut = not sentence.supported
            if not cut:
                yield from _pieces([sentence], after=shown)
                shown.append(sentence)
        if not any(sentence.checked for sentence in shown):
            yield from self._extractive(FALLBACK_NOTICE[self.chinese], completion.text)
            return
        self.result = Composed(shown, "generative", CUT_NOTICE[self.chinese] if cut else "", completion.text)


def _relevant(hits: list[Hit], min_relevance: float) -> list[Hit]:
    """The hits at or above the relevance threshold (all of them when none is)."""
    return [hit for hit in hits if hit.relevance >= min_relevance] or hits


def _sentences(text: str) -> list[str]:
    complete, rest = complete_sentences(text)
    return [*complete, *([rest.strip()] if rest.strip() else [])]


def _pieces(sentences: Sequence[AnswerSentence], after: Sequence[AnswerSentence] = ()) -> Iterator[str]:
    """Rendered sentences, each joined to what came before exactly as `render` joins them."""
    before = render(after)
    for sentence in sentences:
        text = separator(before) + render([sentence])
        before += text
        yield text
