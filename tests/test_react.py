"""Parsing the model's ReAct replies: text actions, native tool calls, thoughts, and malformed output."""

from __future__ import annotations

import pytest

from rag_app.models.chat import supports_native_tools
from rag_app.react import FINAL, READ_TOOL, SEARCH_TOOL, Action, parse_action


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Action: search_documents[fountain schedule]", Action(SEARCH_TOOL, "fountain schedule")),
        ("Thought: I need the time.\nAction: search_documents[\"Zorblax\"]",
         Action(SEARCH_TOOL, "Zorblax", "I need the time.")),
        ("action : READ_SOURCE(2)", Action(READ_TOOL, "2")),
        ("Action: read_source[#3]", Action(READ_TOOL, "3")),
        ('<tool_call>\n{"name": "read_source", "arguments": {"id": 2}}\n</tool_call>', Action(READ_TOOL, "2")),
        ('Let me look.<tool_call>{"name": "search_documents", "arguments": "{\\"query\\": \\"bread\\"}"}</tool_call>',
         Action(SEARCH_TOOL, "bread", "Let me look.")),
        ("Thought: the passages answer it.\nFinal Answer", Action(FINAL, "", "the passages answer it.")),
    ],
)
def test_well_formed_replies_name_the_action(reply, expected):
    assert parse_action(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "The fountain is lovely and the weather is fine.",
        "Action: read_source[two]",
        "Action: search_documents[]",
        "Action: open_browser[http://example.com]",
        '<tool_call>{"name": "read_source", "arguments": {"id": "x"}}</tool_call>',
        '<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>',
        "<tool_call>{not json}</tool_call>",
        '<tool_call>["search_documents"]</tool_call>',
    ],
)
def test_malformed_replies_give_no_action(reply):
    assert parse_action(reply) is None


def test_native_tools_only_when_the_template_renders_them():
    assert supports_native_tools("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}")
    assert not supports_native_tools("{% for message in messages %}{{ message['content'] }}{% endfor %}")
    assert not supports_native_tools(None)
