"""The agent: search first, let the model look further (ReAct), answer within the window, verify citations."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rag_app.citations import evidence_sentences, verify_citations
from rag_app.config import DEFAULT_EMBEDDER, GenerationSettings, Settings
from rag_app.followup import condense_deterministic, condense_with_llm
from rag_app.index.store import IndexStore
from rag_app.models.embedder import Embedder
from rag_app.models.llm import LocalLLM
from rag_app.models.registry import shared_embedder, shared_llm
from rag_app.prompt import MARKER, BuiltPrompt, Passage, PromptBuilder
from rag_app.react import (
    FINAL,
    NATIVE_PROTOCOL,
    SEARCH_TOOL,
    TEXT_PROTOCOL,
    TOOL_SPECS,
    parse_action,
    supports_native_tools,
)
from rag_app.retrieval import Retriever, SearchMode, SearchOptions
from rag_app.types import Answer, Source, Step

History = Sequence[dict[str, Any]]
ANSWER_SYSTEM = (
    "You are a careful assistant. Answer the question using only the numbered passages from the user's "
    "documents. Cite the passages you use by their number in square brackets, like [1]. If the passages do "
    "not contain the answer, say that it is not in the documents."
)
NOT_FOUND = "Not found in your documents."
NOT_FOUND_ZH = "在您的文档中没有找到相关内容。"
_CJK = re.compile(r"[\u4e00-\u9fff]")
DECIDE_TOKENS = 48
PASSAGE_FRAMING_TOKENS = 16
OBSERVATION_TOKENS = 96
READ_TOKENS = 256
QUESTION_SHARE = 0.25
CLIP = " …"


@dataclass(frozen=True)
class AgentSettings:
    """How the agent searches, thinks and generates; any field can be overridden per question."""

    k: int = 5
    mode: SearchMode = "hybrid"
    max_steps: int = 1
    condense: Literal["deterministic", "llm"] = "deterministic"
    min_relevance: float = SearchOptions.min_relevance
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k={self.k}: retrieve at least one passage")
        if self.max_steps < 0:
            raise ValueError(f"max_steps={self.max_steps}: use 0 to skip the ReAct decisions, or a positive cap")


@dataclass(frozen=True)
class AgentEvent:
    """One item of `RagAgent.stream`: a step taken, a piece of answer text, or the finished answer."""

    kind: Literal["step", "token", "answer"]
    text: str = ""
    step: Step | None = None
    answer: Answer | None = None


_GENERATION_FIELDS = {"max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop", "seed"}


class RagAgent:
    """Answers questions from one index with a local LLM, citing the passages it retrieved."""

    def __init__(self, store: IndexStore, embedder: Embedder, llm: LocalLLM,
                 settings: AgentSettings | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.retriever = Retriever(store, embedder)
        self.settings = settings or AgentSettings()
        self.native_tools = supports_native_tools(getattr(llm.tokenizer, "chat_template", None))

    @classmethod
    def load(
        cls,
        index: str | Path = "indexes/default",
        *,
        embedder: str | None = None,
        llm: str | None = None,
        device: str | None = None,
        context_window: int | None = None,
        settings: AgentSettings | None = None,
    ) -> RagAgent:
        """Open an index with the embedded defaults unless told otherwise (arguments, then RAG_APP_* variables)."""
        config = Settings.from_env(embedder=embedder, llm=llm, device=device, context_window=context_window)
        store = IndexStore.open(index, embedder_name=config.embedder)
        embedder_name = config.embedder or store.meta().get("embedder") or DEFAULT_EMBEDDER
        return cls(
            store,
            shared_embedder(embedder_name, config.device),
            shared_llm(config.llm, config.device, config.context_window),
            settings,
        )

    # ---- the public faces ----------------------------------------------------------------------------------

    def ask(self, question: str, history: History | None = None, **overrides: Any) -> Answer:
        """Answer a question (with the conversation so far); overrides are AgentSettings or sampling fields."""
        answer: Answer | None = None
        for event in self.stream(question, history, **overrides):
            if event.kind == "answer":
                answer = event.answer
        assert answer is not None
        return answer

    def stream(self, question: str, history: History | None = None, **overrides: Any) -> Iterator[AgentEvent]:
        """Yield steps as they are taken and answer text as it is generated, then the finished Answer."""
        if not question or not question.strip():
            raise ValueError("the question is empty: ask something about your documents")
        settings = self._settings(overrides)
        history = list(history or [])
        steps: list[Step] = []
        query = self.condense(question, history, settings)
        sources = self._search(query, settings, steps)
        yield AgentEvent("step", step=steps[-1])
        if not self.retriever.is_relevant(sources, self._search_options(settings)):
            yield from self._abstain(question, query, steps)
            return
        for step in self._react(query, sources, settings, steps):
            yield AgentEvent("step", step=step)
        generation = self._answer_generation(settings)
        built = self.answer_prompt(question, sources, history, generation)
        pieces: list[str] = []
        for piece in self.llm.stream(built.messages, generation):
            pieces.append(piece)
            yield AgentEvent("token", text=piece)
        yield AgentEvent("answer", answer=self._finish(query, "".join(pieces), built, sources, steps))

    def search(self, query: str, **overrides: Any) -> list[Source]:
        """Retrieval alone, with the same options as the agent uses."""
        return self.retriever.search(query, self._search_options(self._settings(overrides)))

    def condense(self, question: str, history: History, settings: AgentSettings | None = None) -> str:
        """The question made standalone for retrieval (deterministic by default; the LLM when asked)."""
        settings = settings or self.settings
        if settings.condense == "llm":
            return condense_with_llm(question, history, self.llm)
        return condense_deterministic(question, history)

    # ---- steps ---------------------------------------------------------------------------------------------

    def _settings(self, overrides: dict[str, Any]) -> AgentSettings:
        generation = self.settings.generation.with_overrides(
            **{key: value for key, value in overrides.items() if key in _GENERATION_FIELDS}
        )
        agent_fields = {key: value for key, value in overrides.items()
                        if key not in _GENERATION_FIELDS and value is not None}
        unknown = set(agent_fields) - set(AgentSettings.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; see AgentSettings and GenerationSettings")
        return replace(self.settings, generation=generation, **agent_fields)

    @staticmethod
    def _search_options(settings: AgentSettings) -> SearchOptions:
        return SearchOptions(k=settings.k, mode=settings.mode, path_glob=settings.path_glob,
                             file_types=tuple(settings.file_types), min_relevance=settings.min_relevance)

    def _search(self, query: str, settings: AgentSettings, steps: list[Step]) -> list[Source]:
        sources = self.retriever.search(query, self._search_options(settings))
        steps.append(Step("action", _observation(sources), tool=SEARCH_TOOL, tool_input=query))
        return sources

    def _react(self, query: str, sources: list[Source], settings: AgentSettings,
               steps: list[Step]) -> Iterator[Step]:
        """Let the model search again or read around a passage, at most `max_steps` decisions."""
        taken: set[tuple[str, str]] = set()
        for _ in range(settings.max_steps):
            reply = self._decide(query, sources, settings)
            action = parse_action(reply)
            if action is None:
                yield self._note(steps, "the model gave no valid action; answering from the passages found",
                                 reply.strip()[:200])
                return
            if action.thought:
                steps.append(Step("thought", action.thought))
                yield steps[-1]
            if action.tool == FINAL:
                return
            if (action.tool, action.argument.lower()) in taken:
                yield self._note(steps, "the model repeated an action; answering from the passages found")
                return
            taken.add((action.tool, action.argument.lower()))
            if action.tool == SEARCH_TOOL:
                observation = self._search_more(action.argument, sources, settings)
            else:
                observation = self._read(int(action.argument), sources)
            steps.append(Step("action", observation, tool=action.tool, tool_input=action.argument))
            yield steps[-1]
        if settings.max_steps:
            yield self._note(steps, f"reached the cap of {settings.max_steps} step(s); answering from the "
                                    "passages found")

    @staticmethod
    def _note(steps: list[Step], content: str, reply: str | None = None) -> Step:
        steps.append(Step("note", content, tool_input=reply))
        return steps[-1]

    def _decide(self, query: str, sources: list[Source], settings: AgentSettings) -> str:
        """One short generation that names the next action; passages are clipped to share the window."""
        system = NATIVE_PROTOCOL if self.native_tools else TEXT_PROTOCOL
        tools = TOOL_SPECS if self.native_tools else None
        query = clip_middle(self.llm.tokenizer, query, int(self.llm.context_window * QUESTION_SHARE))[0]
        bare = [{"role": "system", "content": system}, {"role": "user", "content": query}]
        tools_cost = len(self.llm.encode_messages(bare, tools)) - len(self.llm.encode_messages(bare)) if tools else 0
        builder = PromptBuilder(self.llm.tokenizer, self.llm.context_window, DECIDE_TOKENS + tools_cost)
        room = builder.budget - self.llm.count_tokens(bare)
        share = min(OBSERVATION_TOKENS, room // max(1, len(sources)) - PASSAGE_FRAMING_TOKENS)
        passages = [
            replace(passage, text=clip_tokens(self.llm.tokenizer, passage.text, share))
            for passage in (_passage(source) for source in sources)
        ] if share > 0 else []
        built = builder.build(system, passages, [], query)
        generation = GenerationSettings(max_new_tokens=DECIDE_TOKENS, stop=("Observation:",),
                                        seed=settings.generation.seed)
        return self.llm.generate(built.messages, generation, tools=tools)

    def _search_more(self, query: str, sources: list[Source], settings: AgentSettings) -> str:
        """Search again; relevant passages not yet gathered join the list under the next numbers."""
        found = self.retriever.search(query, self._search_options(settings))
        numbers = {source.chunk.id: source.number for source in sources}
        for source in found:
            if source.chunk.id not in numbers and source.relevance >= settings.min_relevance:
                sources.append(replace(source, number=len(sources) + 1))
                numbers[source.chunk.id] = len(sources)
        return _observation([replace(source, number=numbers.get(source.chunk.id, 0)) for source in found])

    def _read(self, number: int, sources: list[Source]) -> str:
        """Widen passage `number` with its neighbours in the file; the wider text replaces it."""
        for position, source in enumerate(sources):
            if source.number == number:
                around = self.store.neighbours(source.chunk.id)
                if around:
                    text = "\n".join(chunk.text for chunk in around)
                    chunk = replace(source.chunk, text=text, start_line=around[0].start_line,
                                    end_line=around[-1].end_line)
                    sources[position] = replace(source, chunk=chunk)
                    return f"[{number}] {chunk.location}\n{clip_tokens(self.llm.tokenizer, text, READ_TOKENS)}"
        return f"there is no passage [{number}]; the passages are numbered 1 to {len(sources)}"

    def _answer_generation(self, settings: AgentSettings) -> GenerationSettings:
        """The sampling settings, with max_new_tokens capped at half the window so the prompt has room."""
        cap = max(1, self.llm.context_window // 2)
        if settings.generation.max_new_tokens <= cap:
            return settings.generation
        return replace(settings.generation, max_new_tokens=cap)

    def answer_prompt(self, question: str, sources: Sequence[Source], history: History,
                      generation: GenerationSettings) -> BuiltPrompt:
        """The answer prompt: system, as much history as fits, the passages and the question (clipped to a
        quarter of the budget so passages keep room)."""
        builder = PromptBuilder(self.llm.tokenizer, self.llm.context_window, generation.max_new_tokens)
        passages = [_passage(source) for source in sources]
        question, cut = clip_middle(self.llm.tokenizer, question, int(builder.budget * QUESTION_SHARE))
        built = builder.build(ANSWER_SYSTEM, passages, history, question)
        built.question_truncated = built.question_truncated or cut
        return built

    def _finish(self, query: str, raw: str, built: BuiltPrompt, sources: list[Source],
                steps: list[Step]) -> Answer:
        shown = {passage.number for passage in built.passages}
        used = [source for source in sources if source.number in shown]
        text, cited = verify_citations(raw, sorted(shown))
        return Answer(
            text=text, sources=used, steps=steps, dropped_turns=built.dropped_turns,
            prompt_tokens=built.tokens, context_window=self.llm.context_window,
            evidence=evidence_sentences(query, used, self.embedder), cited=bool(cited), query=query,
            question_truncated=built.question_truncated,
        )

    def _abstain(self, question: str, query: str, steps: list[Step]) -> Iterator[AgentEvent]:
        text = NOT_FOUND_ZH if _CJK.search(question) else NOT_FOUND
        yield AgentEvent("token", text=text)
        yield AgentEvent("answer", answer=Answer(text=text, steps=steps, abstained=True, query=query,
                                                 context_window=self.llm.context_window))


def clip_tokens(tokenizer: Any, text: str, limit: int) -> str:
    """`text` cut to its first `limit` tokens (marked with " …" when cut)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = encoded["offset_mapping"]
    if len(spans) <= max(limit, 1):
        return text
    return text[: spans[max(limit, 1) - 1][1]].rstrip() + CLIP


def clip_middle(tokenizer: Any, text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to about `limit` tokens, keeping its start and end around the marker; and whether it was cut."""
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(spans) <= limit:
        return text, False
    head, tail = max(limit // 2, 1), max(limit - limit // 2, 1)
    return text[: spans[head - 1][1]] + MARKER + text[spans[len(spans) - tail][0]:], True


def _passage(source: Source) -> Passage:
    label = source.chunk.location.replace(source.path, Path(source.path).name, 1)
    return Passage(number=source.number, text=source.text, label=label)


def _observation(sources: Sequence[Source]) -> str:
    """One line per passage found; number 0 marks one left out as below the relevance threshold."""
    if not sources:
        return "no passages found"
    return "\n".join(
        f"[{source.number}] {source.chunk.location} (relevance {source.relevance:.2f})" if source.number
        else f"(left out, relevance {source.relevance:.2f}) {source.chunk.location}"
        for source in sources
    )
