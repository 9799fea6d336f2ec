"""The ReAct loop: the tools the model may call, the prompt that offers them, parsing its reply, and the loop.

Models whose chat template takes tools get them natively and reply with a JSON tool call; others get the
classic text protocol (Thought / Action / Observation). Anything that parses as neither ends the loop with a note.
The same `ToolBox` serves the agent and the LangChain tools (rag_app.integrations.tools).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rag_app.config import GenerationSettings, SearchOptions
from rag_app.models.actions import ActionRecords
from rag_app.models.chat import ChatLLM
from rag_app.prompt import QUESTION_SHARE, PromptBuilder, clip_middle, clip_tokens
from rag_app.retrieval import Retriever
from rag_app.types import Hit, Step

SEARCH_TOOL = "search_documents"
READ_TOOL = "read_source"
FINAL = "final_answer"
DECIDE_TOKENS = 48
PASSAGE_FRAMING_TOKENS = 16
OBSERVATION_TOKENS = 96
READ_TOKENS = 256

TOOL_SPECS = [
    {
        "type": "function",
        "function": {
            "name": SEARCH_TOOL,
            "description": "Search the user's documents and return the most relevant numbered passages.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "what to search for"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": READ_TOOL,
            "description": "Read a numbered passage together with the text around it in its file.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "integer", "description": "the passage number, e.g. 2"}},
                "required": ["id"],
            },
        },
    },
]

TEXT_PROTOCOL = (
    "You answer questions about the user's documents. You have gathered the numbered passages below. "
    "Decide the next step. Write one short Thought line, then exactly one of these lines:\n"
    f"Action: {SEARCH_TOOL}[a new search query]   - if the passages do not answer the question\n"
    f"Action: {READ_TOOL}[passage number]   - to read more around a passage\n"
    "Final Answer   - if the passages answer the question"
)
NATIVE_PROTOCOL = (
    "You answer questions about the user's documents using the tools. You have gathered the numbered passages "
    "below. Call a tool if you need more, or reply 'Final Answer' if the passages answer the question."
)

_TEXT_ACTION = re.compile(
    rf"Action\s*:\s*({SEARCH_TOOL}|{READ_TOOL})\s*[\[(]\s*(.+?)\s*[\])]\s*$", re.IGNORECASE | re.MULTILINE
)
_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_FINAL = re.compile(r"final\s*answer", re.IGNORECASE)


# ---- parsing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A native tool call: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Action:
    """What the model asked for: a tool and its argument, or the final answer (tool == FINAL), with the
    thought it wrote before it, if any."""

    tool: str
    argument: str = ""
    thought: str = ""


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split a reply into its plain text and its `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
    blocks (every backend reports native calls in this one form); malformed blocks are dropped."""
    calls: list[ToolCall] = []
    for payload in _TOOL_CALL.findall(text):
        try:
            call = json.loads(payload)
            arguments = call.get("arguments", call.get("parameters")) or {}
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(call.get("name"), str) and isinstance(arguments, dict):
            calls.append(ToolCall(call["name"], arguments))
    return _TOOL_CALL.sub("", text).strip(), calls


def parse_action(reply: str) -> Action | None:
    """The model's next step, or None when the reply is malformed (the agent then answers from what it has)."""
    action = _parse(reply)
    if action is None:
        return None
    return replace(action, thought=_thought(reply))


def _parse(reply: str) -> Action | None:
    for call in parse_tool_calls(reply)[1]:
        action = _from_call(call)
        if action:
            return action
    match = _TEXT_ACTION.search(reply)
    if match:
        tool = match.group(1).lower()
        argument = match.group(2).strip().strip("\"'").lstrip("#")
        if not argument or (tool == READ_TOOL and not argument.isdigit()):
            return None
        return Action(tool, argument)
    if _FINAL.search(reply):
        return Action(FINAL)
    return None


def _thought(reply: str) -> str:
    """The text the model wrote before its action, without a leading "Thought:"."""
    before = re.split(r"<tool_call>|^\s*Action\s*:|final\s*answer", reply, maxsplit=1, flags=re.I | re.M)[0]
    return re.sub(r"^\s*Thought\s*:\s*", "", before.strip(), flags=re.I).strip()


def _from_call(call: ToolCall) -> Action | None:
    if call.name == SEARCH_TOOL and str(call.arguments.get("query", "")).strip():
        return Action(SEARCH_TOOL, str(call.arguments["query"]).strip())
    if call.name == READ_TOOL and str(call.arguments.get("id", "")).strip().isdigit():
        return Action(READ_TOOL, str(call.arguments["id"]).strip())
    return None


# ---- the tools ---------------------------------------------------------------------------------------------


class ToolBox:
    """`search_documents(query)` and `read_source(number)` over one retriever. Passages are numbered in the
    order they are gathered; only passages that clear the relevance threshold join. `passage_text` puts each
    passage's text in the search observation; `clip` shortens what `read_source` returns."""

    def __init__(self, retriever: Retriever, options: SearchOptions, hits: Sequence[Hit] = (),
                 passage_text: bool = False, clip: Callable[[str], str] | None = None) -> None:
        self.retriever = retriever
        self.options = options
        self.hits = list(hits)
        self.passage_text = passage_text
        self.clip = clip
        self.found: list[Hit] = []

    def search_documents(self, query: str) -> str:
        """Search; relevant passages not gathered yet join under the next numbers. One line per passage found."""
        numbers = {hit.chunk.id: hit.number for hit in self.hits}
        self.found = []
        for hit in self.retriever.search(query, self.options):
            if hit.chunk.id not in numbers and hit.relevance >= self.options.min_relevance:
                self.hits.append(replace(hit, number=len(self.hits) + 1))
                numbers[hit.chunk.id] = len(self.hits)
            self.found.append(replace(hit, number=numbers.get(hit.chunk.id, 0)))
        return observation(self.found, self.passage_text)

    def read_source(self, number: int, radius: int = 1) -> str:
        """Passage `number` widened with up to `radius` chunks either side of it on its page (the wider text
        replaces the passage; a page boundary ends it, so that it keeps one place)."""
        for position, hit in enumerate(self.hits):
            if hit.number == number:
                around = [chunk for chunk in self.retriever.index.neighbours(hit.chunk, radius)
                          if chunk.page == hit.chunk.page]
                if around:
                    chunk = replace(hit.chunk, text="\n".join(chunk.text for chunk in around),
                                    start_line=around[0].start_line, end_line=around[-1].end_line)
                    self.hits[position] = replace(hit, chunk=chunk)
                chunk = self.hits[position].chunk
                return f"[{number}] {chunk.label()}\n{self.clip(chunk.text) if self.clip else chunk.text}"
        return f"there is no passage [{number}]; the passages are numbered 1 to {len(self.hits)}"


def observation(hits: Sequence[Hit], passage_text: bool = False) -> str:
    """One line per passage found (with its text when asked); number 0 marks one left out as below the
    relevance threshold."""
    if not hits:
        return "no passages found"
    lines = []
    for hit in hits:
        if not hit.number:
            lines.append(f"(left out, relevance {hit.relevance:.2f}) {hit.chunk.label()}")
            continue
        line = f"[{hit.number}] {hit.chunk.label()} (relevance {hit.relevance:.2f})"
        lines.append(f"{line}\n{hit.text}" if passage_text else line)
    return ("\n\n" if passage_text else "\n").join(lines)


# ---- the loop ----------------------------------------------------------------------------------------------


def decide(llm: ChatLLM, query: str, hits: Sequence[Hit], seed: int | None) -> str:
    """One short generation that names the next action; passages are clipped to share the window."""
    system = NATIVE_PROTOCOL if llm.native_tools else TEXT_PROTOCOL
    tools = TOOL_SPECS if llm.native_tools else None
    query = clip_middle(llm.tokens, query, int(llm.context_window * QUESTION_SHARE))[0]
    bare = [{"role": "system", "content": system}, {"role": "user", "content": query}]
    tools_cost = llm.tokens.count_chat(bare, tools) - llm.tokens.count_chat(bare) if tools else 0
    builder = PromptBuilder(llm.tokens, llm.context_window, DECIDE_TOKENS + tools_cost)
    room = builder.budget - llm.tokens.count_chat(bare)
    share = min(OBSERVATION_TOKENS, room // max(1, len(hits)) - PASSAGE_FRAMING_TOKENS)
    passages = [replace(hit, chunk=replace(hit.chunk, text=clip_tokens(llm.tokens, hit.text, share)))
                for hit in hits] if share > 0 else []
    built = builder.build(system, passages, [], query)
    generation = GenerationSettings(max_new_tokens=DECIDE_TOKENS, stop=("Observation:",), seed=seed)
    return llm.generate(built.messages, generation, tools=tools)


def run(llm: ChatLLM, tools: ToolBox, query: str, max_steps: int, seed: int | None,
        steps: list[Step], records: ActionRecords) -> Iterator[Step]:
    """Let the model search again or read around a passage, at most `max_steps` decisions; each step taken is
    appended to `steps` and yielded, and each decision counted in `records` (a model that cannot act is not
    asked at all)."""
    record = records.get(llm.name)
    if max_steps and not record.can_act:
        yield _note(steps, f"answering from the first search: {llm.name} gave a valid action in {record.valid} of "
                           f"{record.decisions} decision steps, so it is not asked for one")
        return
    taken: set[tuple[str, str]] = set()
    for _ in range(max_steps):
        reply = decide(llm, query, tools.hits, seed)
        action = parse_action(reply)
        records.add(llm.name, action is not None)
        if action is None:
            yield _note(steps, "the model gave no valid action; answering from the passages found",
                        reply.strip()[:200])
            return
        if action.thought:
            steps.append(Step("thought", action.thought))
            yield steps[-1]
        if action.tool == FINAL:
            return
        if (action.tool, action.argument.lower()) in taken:
            yield _note(steps, "the model repeated an action; answering from the passages found")
            return
        taken.add((action.tool, action.argument.lower()))
        if action.tool == SEARCH_TOOL:
            seen = tools.search_documents(action.argument)
        else:
            seen = tools.read_source(int(action.argument))
        steps.append(Step("action", seen, tool=action.tool, tool_input=action.argument))
        yield steps[-1]
    if max_steps:
        yield _note(steps, f"reached the cap of {max_steps} step(s); answering from the passages found")


def _note(steps: list[Step], content: str, reply: str | None = None) -> Step:
    steps.append(Step("note", content, tool_input=reply))
    return steps[-1]
