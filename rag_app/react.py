"""The ReAct protocol: the tools the model may call, the prompt that offers them, and parsing its reply.

Models whose chat template takes tools get them natively and reply with a JSON tool call; others get the
classic text protocol (Thought / Action / Observation). Anything that parses as neither ends the loop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

SEARCH_TOOL = "search_documents"
READ_TOOL = "read_source"
FINAL = "final_answer"

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


@dataclass(frozen=True)
class Action:
    """What the model asked for: a tool and its argument, or the final answer (tool == FINAL), with the
    thought it wrote before it, if any."""

    tool: str
    argument: str = ""
    thought: str = ""


def supports_native_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders a `tools` list (then the model gets native tool calls)."""
    return bool(chat_template) and "tools" in chat_template


def parse_action(reply: str) -> Action | None:
    """The model's next step, or None when the reply is malformed (the agent then answers from what it has)."""
    action = _parse(reply)
    if action is None:
        return None
    return replace(action, thought=_thought(reply))


def _parse(reply: str) -> Action | None:
    for payload in _TOOL_CALL.findall(reply):
        action = _from_json(payload)
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


def _from_json(payload: str) -> Action | None:
    try:
        call = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict):
        return None
    arguments = call.get("arguments") or call.get("parameters") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    name = call.get("name")
    if name == SEARCH_TOOL and isinstance(arguments, dict) and str(arguments.get("query", "")).strip():
        return Action(SEARCH_TOOL, str(arguments["query"]).strip())
    if name == READ_TOOL and isinstance(arguments, dict) and str(arguments.get("id", "")).strip().isdigit():
        return Action(READ_TOOL, str(arguments["id"]).strip())
    return None
