"""LocalLLM with the real SmolLM2-135M: window, greedy and sampled decoding, seeds, stop strings, streaming."""

from __future__ import annotations

import pytest

from rag_app.config import GenerationSettings
from rag_app.models.llm import LocalLLM

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY = GenerationSettings(max_new_tokens=10)


def sampled(seed: int | None, **fields) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=10, temperature=1.2, seed=seed, **fields)


@pytest.fixture(scope="module")
def greedy_text(llm) -> str:
    return llm.generate(MESSAGES, GREEDY)


def test_window_comes_from_the_model_config(llm):
    assert llm.context_window == llm.configured_window == llm.model.config.max_position_embeddings == 8192


def test_window_can_be_overridden_and_must_be_positive(llm):
    narrow = LocalLLM(llm.model, llm.tokenizer, llm.name, llm.device, context_window=1024)
    assert (narrow.context_window, narrow.configured_window) == (1024, 8192)
    with pytest.raises(ValueError, match="context_window must be a positive number"):
        LocalLLM(llm.model, llm.tokenizer, llm.name, llm.device, context_window=0)


def test_count_tokens_matches_the_encoded_prompt(llm):
    ids = llm.tokens.chat_ids(MESSAGES)
    assert llm.tokens.count_chat(MESSAGES) == len(ids)
    assert llm.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_greedy_decoding_is_deterministic(llm, greedy_text):
    assert greedy_text.strip()
    assert llm.generate(MESSAGES, GREEDY) == greedy_text


def test_the_same_seed_gives_the_same_sample_and_other_seeds_differ(llm, greedy_text):
    first = llm.generate(MESSAGES, sampled(1))
    assert llm.generate(MESSAGES, sampled(1)) == first
    others = {llm.generate(MESSAGES, sampled(seed)) for seed in (2, 3)}
    assert others - {first}, "different seeds should give different samples"
    assert {first, *others} - {greedy_text}, "sampling should leave the greedy path"


def test_top_k_and_top_p_filter_the_sampled_tokens(llm, greedy_text):
    # Keeping only the single most likely token makes sampling greedy, whatever the seed.
    assert llm.generate(MESSAGES, sampled(5, top_k=1)) == greedy_text
    assert llm.generate(MESSAGES, sampled(6, top_p=1e-6)) == greedy_text
    assert llm.generate(MESSAGES, sampled(7, top_k=40, top_p=0.9)).strip()


def test_sampling_without_top_k_really_turns_it_off(llm):
    # transformers replaces top_k=None by its default 50; top_k=0 must reach it as "off".
    kwargs = llm.generate_kwargs(llm.tokens.chat_ids(MESSAGES), sampled(1))
    assert kwargs["do_sample"] and kwargs["top_k"] == 0 and kwargs["top_p"] == 1.0
    greedy = llm.generate_kwargs(llm.tokens.chat_ids(MESSAGES), GREEDY)
    assert not greedy["do_sample"] and "temperature" not in greedy


def test_a_stop_string_ends_the_text_before_it(llm, greedy_text):
    words = greedy_text.split()
    assert len(words) >= 3
    stop = " " + words[2]
    expected = greedy_text[: greedy_text.index(stop)]
    assert llm.generate(MESSAGES, GenerationSettings(max_new_tokens=10, stop=(stop,))) == expected


def test_streaming_gives_the_generated_text_piece_by_piece(llm, greedy_text):
    completion = llm.stream(MESSAGES, GREEDY)
    pieces = list(completion)
    assert len(pieces) > 1
    assert "".join(pieces) == greedy_text == completion.text
    assert completion.finish_reason == "length" and completion.completion_tokens == GREEDY.max_new_tokens
    assert completion.prompt_tokens == llm.tokens.count_chat(MESSAGES)


def test_a_completion_that_stops_early_says_so(llm):
    completion = llm.stream(MESSAGES, GenerationSettings(max_new_tokens=200))
    text = "".join(completion)
    assert completion.finish_reason == "stop" and 0 < completion.completion_tokens < 200 and text


def test_leaving_a_completion_early_releases_the_model(llm):
    completion = llm.stream(MESSAGES, GenerationSettings(max_new_tokens=200))
    for _ in completion:
        break
    completion.close()
    assert not llm._lock.locked()
    assert llm.generate(MESSAGES, GREEDY)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"temperature": -0.5}, "temperature=-0.5"),
        ({"top_p": 0.0}, "top_p=0.0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"top_k": -1}, "top_k=-1"),
        ({"repetition_penalty": 0.0}, "repetition_penalty=0.0"),
    ],
)
def test_bad_sampling_settings_are_refused_with_the_rule(fields, named):
    with pytest.raises(ValueError, match="invalid generation setting") as raised:
        GenerationSettings(**fields)
    assert named in str(raised.value) and "must be" in str(raised.value)


def test_stop_accepts_one_string_or_a_list():
    assert GenerationSettings(stop="\n").stop == ("\n",)
    assert GenerationSettings(stop=["a", "", "b"]).stop == ("a", "b")
