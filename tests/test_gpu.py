"""The device path of LocalLLM (dtype, placement, streaming) on a tiny randomly initialised Llama.

Real weights cannot reach the GPU machine, so the model is built from a config with the SmolLM2 tokenizer.
The CPU run always happens; the CUDA run is marked `gpu` and skips cleanly without a CUDA device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from rag_app.config import GenerationSettings
from rag_app.models.llm import LocalLLM, resolve_model_location

TINY_WINDOW = 512
MESSAGES = [{"role": "user", "content": "Where is the fountain?"}]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")],
    ),
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama with the SmolLM2 vocabulary, saved like any transformers folder."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_location("SmolLM2-135M-Instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_WINDOW,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=DEVICES)
def tiny_llm(request, tiny_model_dir) -> LocalLLM:
    return LocalLLM.load(str(tiny_model_dir), device=request.param)


def test_dtype_and_placement_follow_the_device(tiny_llm):
    expected = torch.bfloat16 if tiny_llm.device.startswith("cuda") else torch.float32
    parameters = list(tiny_llm.model.parameters())
    assert {parameter.dtype for parameter in parameters} == {expected}
    assert {parameter.device.type for parameter in parameters} == {tiny_llm.device.split(":")[0]}


def test_window_comes_from_the_config_and_can_be_overridden(tiny_llm, tiny_model_dir):
    assert tiny_llm.context_window == tiny_llm.configured_window == TINY_WINDOW
    smaller = LocalLLM.load(str(tiny_model_dir), device=tiny_llm.device, context_window=128)
    assert (smaller.context_window, smaller.configured_window) == (128, TINY_WINDOW)


def test_streaming_yields_pieces_that_add_up_to_the_generated_text(tiny_llm):
    settings = GenerationSettings(max_new_tokens=24, repetition_penalty=1.0)
    pieces = list(tiny_llm.stream(MESSAGES, settings))
    assert len(pieces) > 1
    assert "".join(pieces) == tiny_llm.generate(MESSAGES, settings)


def test_generation_stops_at_the_token_limit(tiny_llm):
    prompt = tiny_llm.tokens.chat_ids(MESSAGES)
    kwargs = tiny_llm.generate_kwargs(prompt, GenerationSettings(max_new_tokens=7))
    with torch.inference_mode():
        output = tiny_llm.model.generate(**kwargs)
    assert output.device.type == tiny_llm.device.split(":")[0]
    assert output.shape[1] - len(prompt) <= 7


def test_a_seed_reproduces_sampled_text_on_the_device(tiny_llm):
    sampled = GenerationSettings(max_new_tokens=16, temperature=1.0, seed=7)
    assert tiny_llm.generate(MESSAGES, sampled) == tiny_llm.generate(MESSAGES, sampled)


def test_closing_a_stream_early_stops_the_generation(tiny_llm):
    calls = []
    hook = tiny_llm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        stream = tiny_llm.stream(MESSAGES, GenerationSettings(max_new_tokens=400, repetition_penalty=1.0))
        assert next(iter(stream))
        stream.close()
    finally:
        hook.remove()
    assert not tiny_llm._lock.locked()
    assert len(calls) < 100, "the generation ran on after its consumer went away"
