"""The LangChain adapters used the way a user would: in LCEL chains, streaming, against the engine's output."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda

from rag_app.integrations import RagChatModel, RagEmbeddings, RagRetriever, format_docs, make_tools
from rag_app.integrations.chat_model import to_chat_messages, tool_call_chunks
from rag_app.models.llm import LocalLLM
from tests.facts import FACT, FACT_QUESTION


@pytest.fixture(scope="module")
def chat(llm: LocalLLM) -> RagChatModel:
    return RagChatModel(llm=llm, max_tokens=8)


@pytest.fixture(scope="module")
def retriever(fact_index: Path) -> Iterator[RagRetriever]:
    opened = RagRetriever.from_index(fact_index, device="cpu", k=2)
    yield opened
    opened.retriever.index.close()


def test_retriever_in_an_lcel_chain(retriever: RagRetriever) -> None:
    context = (retriever | RunnableLambda(format_docs)).invoke(FACT_QUESTION)
    assert context.startswith("[1] ") and FACT in context
    top = retriever.invoke(FACT_QUESTION, k=1, mode="lexical")[0]
    assert top.metadata["path"].endswith("fountain.txt") and top.metadata["start_line"] is not None
    assert {"page", "end_line", "score", "relevance", "chunk_id"} <= top.metadata.keys()


def test_retriever_rejects_an_unknown_search_option(retriever: RagRetriever) -> None:
    with pytest.raises(TypeError):
        retriever.invoke(FACT_QUESTION, colour="red")


def test_chat_model_streams_pieces_then_usage(chat: RagChatModel, llm: LocalLLM) -> None:
    chunks = list(chat.stream("Hello"))
    assert len(chunks) > 2 and all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    full = sum(chunks[1:], chunks[0])
    assert full.content == chat.invoke("Hello").content
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] == llm.tokens.count_chat([{"role": "user", "content": "Hello"}])
    assert full.usage_metadata["output_tokens"] == 8
    assert full.response_metadata["finish_reason"] == "length"


def test_chat_model_in_a_chain_with_the_retriever(chat: RagChatModel, retriever: RagRetriever) -> None:
    chain = (retriever | RunnableLambda(format_docs)
             | RunnableLambda(lambda context: [SystemMessage(context), HumanMessage(FACT_QUESTION)]) | chat)
    reply = chain.invoke(FACT_QUESTION)
    assert isinstance(reply, AIMessage) and reply.text


def test_messages_become_role_dicts() -> None:
    call = {"name": "search_documents", "args": {"query": "x"}, "id": "1", "type": "tool_call"}
    converted = to_chat_messages([SystemMessage("s"), HumanMessage("h"), AIMessage("", tool_calls=[call]),
                                  ToolMessage("t", tool_call_id="1")])
    assert [message["role"] for message in converted] == ["system", "user", "assistant", "tool"]
    assert converted[2]["tool_calls"][0]["function"] == {"name": "search_documents", "arguments": {"query": "x"}}


def test_tool_calls_are_parsed_from_the_reply() -> None:
    text, calls = tool_call_chunks('Let me look.\n<tool_call>\n{"name": "read_source", "arguments": {"number": 3}}'
                                   "\n</tool_call>")
    assert text == "Let me look."
    message = AIMessageChunk(content=text, tool_call_chunks=calls)
    assert message.tool_calls[0]["name"] == "read_source" and message.tool_calls[0]["args"] == {"number": 3}


def test_bind_tools_needs_a_template_that_takes_tools(chat: RagChatModel, llm: LocalLLM, agent) -> None:
    tools = make_tools(agent)
    with pytest.raises(NotImplementedError, match="does not take tools"):
        chat.bind_tools(tools)
    tokenizer = copy.copy(llm.tokenizer)
    tokenizer.chat_template = "{% if tools %}{{ tools | tojson }}{% endif %}" + llm.tokenizer.chat_template
    capable = RagChatModel(llm=LocalLLM(llm.model, tokenizer, llm.name, llm.device), max_tokens=8)
    bound = capable.bind_tools(tools)
    assert [spec["function"]["name"] for spec in bound.kwargs["tools"]] == ["search_documents", "read_source"]


def test_embeddings_match_the_engine(embedder) -> None:
    embeddings = RagEmbeddings(embedder=embedder)
    texts = ["The fountain sprays purple water.", "Knead the dough."]
    assert np.allclose(embeddings.embed_documents(texts), embedder.embed_documents(texts), atol=1e-6)
    assert np.allclose(embeddings.embed_query(texts[0]), embedder.embed_query(texts[0]), atol=1e-6)


def test_tools_search_then_read_by_passage_number(agent) -> None:
    search, read = make_tools(agent)
    found = search.invoke({"type": "tool_call", "id": "1", "name": search.name, "args": {"query": "Zorblax"}})
    assert "fountain.txt" in found.content and found.artifact[0].metadata["path"].endswith("fountain.txt")
    number = found.artifact[0].metadata["number"]
    assert found.content.startswith(f"[{number}] ") and FACT in found.content
    around = read.invoke({"number": number})
    assert around.startswith(f"[{number}] ") and FACT in around
    assert read.invoke({"number": 99}).startswith("there is no passage [99]")
    assert [tool.name for tool in make_tools(agent.retriever)] == [search.name, read.name]


def test_tools_honour_the_agents_abstain_threshold(agent) -> None:
    question = "What is the boiling point of tungsten?"
    assert not agent.retriever.is_relevant(agent.search(question)), "an off-topic question for this corpus"
    search, _ = make_tools(agent)
    found = search.invoke({"type": "tool_call", "id": "1", "name": search.name, "args": {"query": question}})
    assert found.artifact == [] and "left out" in found.content and "Zorblax" not in found.content
    lenient = make_tools(agent, agent.settings.search.with_overrides(min_relevance=0.0))[0]
    found = lenient.invoke({"type": "tool_call", "id": "2", "name": lenient.name, "args": {"query": question}})
    assert found.artifact and "left out" not in found.content
