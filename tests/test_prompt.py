"""The token-exact prompt budget, checked against the real SmolLM2 tokens and chat template."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from rag_app.config import GenerationSettings
from rag_app.models.llm import resolve_model_location
from rag_app.models.tokens import HFTokenCounter, TokenCounter
from rag_app.prompt import (
    CLIP,
    MARKER,
    BuiltPrompt,
    PromptBuilder,
    PromptTooSmallError,
    group_turns,
    user_content,
)
from rag_app.types import Chunk, Hit

SYSTEM = "You are a helpful assistant. Answer from the passages and cite them like [1]."
PIECES = [
    "the",
    " retrieval",
    " model",
    " answers",
    ".",
    ",",
    " ",
    "  ",
    "\n",
    "\n\n",
    "?",
    "42",
    "Q:",
    "你好",
    "世界",
    "检索",
    "增强",
    "。",
    "🎉",
    "🚀",
    "👩‍💻",
    "ü",
    "é",
]
CHARS = "abcdefghij XYZ.,!?\n0123456789你好世界检索增强生成。😀🎉🚀ñüé"


@pytest.fixture(scope="session")
def tokens() -> HFTokenCounter:
    return HFTokenCounter(AutoTokenizer.from_pretrained(resolve_model_location("SmolLM2-135M-Instruct")))


def passage(number: int, text: str, label: str) -> Hit:
    """A retrieved passage whose chunk's label is `label` (a path, then "p. N" or "lines A-B")."""
    path, *parts = label.split(", ")
    place: dict[str, int] = {}
    for part in parts:
        if part.startswith("p. "):
            place["page"] = int(part[3:])
        else:
            first, last = part.removeprefix("lines ").split("-")
            place.update(start_line=int(first), end_line=int(last))
    return Hit(Chunk(text, path, **place), 0.0, number=number)


def user_turn(text: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]


def floor_tokens(tokens: HFTokenCounter, system: str = SYSTEM) -> int:
    """The smallest prompt: the system message and an empty question."""
    return tokens.count_chat([{"role": "system", "content": system}, {"role": "user", "content": ""}])


def builder_for_budget(tokens: HFTokenCounter, budget: int, max_new_tokens: int = 64, **kwargs: Any) -> PromptBuilder:
    return PromptBuilder(tokens, budget + max_new_tokens, max_new_tokens, **kwargs)


def check_invariants(
    tokens: HFTokenCounter,
    built: BuiltPrompt,
    system: str,
    passages: list[Hit],
    history: list[dict],
    question: str,
) -> None:
    """What every built prompt must satisfy, whatever was dropped."""
    messages = built.messages
    assert tokens.count_chat(messages) == built.tokens <= built.budget
    assert messages[0] == {"role": "system", "content": system}
    assert messages[-1]["role"] == "user"
    assert [hit.number for hit in built.passages] == [hit.number for hit in passages[: len(built.passages)]]
    for shown, offered in zip(built.passages, passages, strict=False):
        assert shown == offered or (len(built.passages) == 1 and shown.text.endswith(CLIP)
                                    and offered.text.startswith(shown.text.removesuffix(CLIP).rstrip()))
    assert built.dropped_passages == len(passages) - len(built.passages)
    prefix = user_content(built.passages, "")
    assert messages[-1]["content"].startswith(prefix)
    shown = messages[-1]["content"][len(prefix) :]
    if not built.question_truncated:
        assert shown == question
    elif shown:
        head, marker, tail = shown.partition(MARKER)
        assert marker and question.startswith(head) and question.endswith(tail)
    turns = group_turns(history)
    replayed = turns[built.dropped_turns :]
    assert messages[1:-1] == [message for turn in replayed for message in turn]


long_texts = st.tuples(st.text(alphabet=CHARS, min_size=1, max_size=100), st.integers(1, 30)).map(
    lambda unit: (unit[0] * unit[1])[:3000]
)
texts = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=60).map("".join),
    st.text(alphabet=CHARS, max_size=200),
    st.just(""),
)
turns_strategy = st.lists(
    st.tuples(texts, st.lists(texts, min_size=0, max_size=2)).map(
        lambda turn: (
            [{"role": "user", "content": turn[0]}] + [{"role": "assistant", "content": reply} for reply in turn[1]]
        )
    ),
    max_size=30,
)
passages_strategy = st.lists(
    st.tuples(
        st.one_of(texts, long_texts),
        st.sampled_from(["guide.md, lines 3-9", "手册.pdf, p. 2", "notes.txt"]),
    ),
    max_size=10,
).map(lambda items: [passage(n, text, label) for n, (text, label) in enumerate(items, start=1)])


def windows_from(minimum: int) -> st.SearchStrategy[int]:
    """Context windows at the minimum, just above it (the question gets cut), or anything up to 4096."""
    return st.one_of(
        st.just(minimum),
        st.integers(minimum + 5, minimum + 80),
        st.integers(minimum + 81, max(minimum + 81, 4096)),
    )


questions = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=200).map("".join),
    long_texts,
)


PROMPT_CASES = {
    "data": st.data(),
    "turns": turns_strategy,
    "passages": passages_strategy,
    "question": questions,
    "system": st.sampled_from([SYSTEM, "", "你是一个乐于助人的助手。🎉"]),
    "max_new_tokens": st.integers(min_value=1, max_value=512),
    "share": st.sampled_from([0.0, 0.3, 0.6, 1.0]),
}
QUICK_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def check_prompt_fits(tokens: TokenCounter, data: st.DataObject, turns: list[list[dict[str, str]]],
                      passages: list[Hit], question: str, system: str, max_new_tokens: int, share: float) -> None:
    """Build a prompt for a drawn window and check every invariant (the count is exact and within budget)."""
    minimum = floor_tokens(tokens, system) + max_new_tokens
    window = data.draw(windows_from(minimum), label="window")
    history = [message for turn in turns for message in turn]
    built = PromptBuilder(tokens, window, max_new_tokens, share).build(system, passages, history, question)
    check_invariants(tokens, built, system, passages, history, question)
    assert built.budget == window - max_new_tokens


@settings(max_examples=400, deadline=None, suppress_health_check=QUICK_CHECKS)
@given(**PROMPT_CASES)
def test_every_prompt_fits_exactly(tokens: HFTokenCounter, **case: Any) -> None:
    check_prompt_fits(tokens, **case)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=QUICK_CHECKS)
@given(**PROMPT_CASES)
def test_every_prompt_fits_exactly_with_a_served_model(served_llm: Any, **case: Any) -> None:
    """The same property with the served model's counter (its tokenizer, found from the model the server names)."""
    check_prompt_fits(served_llm.tokens, **case)


@pytest.mark.slow
def test_the_served_count_is_the_servers_prompt_tokens(served_llm: Any) -> None:
    """Token-exact against the server itself: a built prompt's count is the prompt_tokens the server reports."""
    history = [m for n in range(3) for m in user_turn(f"Question {n}? 你好", f"Answer {n}. 🎉")]
    passages = [passage(n, "Passage text about fountains. " * 5, f"doc{n}.md, lines 1-4") for n in range(1, 4)]
    built = PromptBuilder(served_llm.tokens, served_llm.context_window, 2).build(SYSTEM, passages, history, "Why?")
    completion = served_llm.stream(built.messages, GenerationSettings(max_new_tokens=2))
    "".join(completion)
    assert completion.prompt_tokens == built.tokens


def test_chat_token_ids_match_the_template(tokens: HFTokenCounter) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "你好 🎉"}]
    text = tokens.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokens.chat_ids(messages) == tokens.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_oldest_turns_are_dropped_first(tokens: HFTokenCounter) -> None:
    question = "What did we decide?"
    history = [m for letter in "abcdefghij" for m in user_turn(f"Point {letter}?", f"Agreed on {letter}.")]
    head = [{"role": "system", "content": SYSTEM}]
    base = tokens.count_chat([*head, {"role": "user", "content": question}])
    costs = {
        tokens.count_chat([*head, *history[i : i + 2], {"role": "user", "content": question}]) - base
        for i in range(0, len(history), 2)
    }
    assert len(costs) == 1
    turn_cost = costs.pop()
    built = builder_for_budget(tokens, base + 3 * turn_cost + turn_cost // 2).build(SYSTEM, [], history, question)
    assert built.dropped_turns == 7
    assert built.messages[1:-1] == history[-6:]
    assert built.tokens == base + 3 * turn_cost


def test_least_relevant_passages_are_dropped_first(tokens: HFTokenCounter) -> None:
    question = "How do I install it?"
    passages = [
        passage(1, "Run make install in the project folder.", "guide.md, lines 3-9"),
        passage(2, "Install notes. " * 200, "notes.md, lines 1-400"),
        passage(3, "Use Python 3.11.", "readme.md, lines 1-2"),
    ]
    head = {"role": "system", "content": SYSTEM}
    fits = tokens.count_chat([head, {"role": "user", "content": user_content(passages[::2], question)}])
    built = builder_for_budget(tokens, fits).build(SYSTEM, passages, [], question)
    assert built.passages == passages[:1]
    assert built.dropped_passages == 2
    assert built.messages[-1]["content"] == user_content(passages[:1], question)


def test_a_most_relevant_passage_too_long_for_the_room_goes_in_cut_not_dropped(tokens: HFTokenCounter) -> None:
    question = "松平康忠什么时候被任命为知行？"
    long_passage = passage(1, "松平康忠是日本战国时代的武将。" * 200, "zh.md, lines 1-40")
    built = PromptBuilder(tokens, 8192, 512, passage_tokens=300).build(SYSTEM, [long_passage], [], question)
    assert len(built.passages) == 1 and built.dropped_passages == 0
    shown = built.passages[0]
    assert shown.number == 1 and shown.text.endswith(CLIP) and shown.text.startswith("松平康忠是日本战国时代的武将。")
    assert shown.text in built.messages[-1]["content"]
    assert 250 <= tokens.count_chat(built.messages) - tokens.count_chat(  # estimated per piece: a token or two over
        [built.messages[0], {"role": "user", "content": question}]) <= 304


def test_passages_keep_to_their_share_and_the_rest_goes_to_history(tokens: HFTokenCounter) -> None:
    question = "Summarise the passages."
    passages = [passage(n, f"Fact number {n} is about retrieval. " * 10, f"doc{n}.md") for n in range(1, 11)]
    history = [m for n in range(40) for m in user_turn(f"Question {n} about the docs?", f"Answer {n}. " * 5)]
    builder = builder_for_budget(tokens, 1500, passage_share=0.6)
    built = builder.build(SYSTEM, passages, history, question)
    head = {"role": "system", "content": SYSTEM}
    base = tokens.count_chat([head, {"role": "user", "content": question}])
    with_passages = tokens.count_chat([head, {"role": "user", "content": user_content(built.passages, question)}])
    assert 0 < len(built.passages) < len(passages)
    assert with_passages - base <= 0.6 * (built.budget - base)
    assert 0 < built.dropped_turns < 40
    newest_dropped = history[2 * built.dropped_turns - 2 : 2 * built.dropped_turns]
    grown = [built.messages[0], *newest_dropped, *built.messages[1:]]
    assert tokens.count_chat(grown) > built.budget
    alone = builder.build(SYSTEM, passages, [], question)
    assert len(alone.passages) > len(built.passages)


def test_long_question_is_cut_in_the_middle(tokens: HFTokenCounter) -> None:
    question = "START of the question. " + "filler words 填充 🎉 " * 400 + "the END?"
    builder = builder_for_budget(tokens, floor_tokens(tokens) + 40)
    built = builder.build(SYSTEM, [passage(1, "Some passage.", "a.md")], user_turn("hi", "hello"), question)
    shown = built.messages[-1]["content"]
    head, marker, tail = shown.partition(MARKER)
    assert built.question_truncated and marker
    assert head.startswith("START") and question.startswith(head)
    assert tail.endswith("END?") and question.endswith(tail)
    assert built.messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": shown}]
    assert built.tokens == tokens.count_chat(built.messages) <= built.budget
    assert built.budget - built.tokens <= 3
    assert (built.dropped_turns, built.dropped_passages) == (1, 1)


def test_too_small_a_window_raises(tokens: HFTokenCounter) -> None:
    with pytest.raises(PromptTooSmallError, match="raise the context window or lower max_new_tokens"):
        PromptBuilder(tokens, 64, 60).build(SYSTEM, [], [], "Hi?")
    with pytest.raises(PromptTooSmallError):
        PromptBuilder(tokens, 512, 600).build("", [], [], "")
    built = builder_for_budget(tokens, floor_tokens(tokens)).build(SYSTEM, [], [], "A question")
    assert built.question_truncated and built.tokens == built.budget


def test_history_is_coerced_and_other_roles_skipped(tokens: HFTokenCounter) -> None:
    history = [
        {"role": "system", "content": "old system prompt"},
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "file", "file": {}}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": 42},
    ]
    built = builder_for_budget(tokens, 1000).build(SYSTEM, [], history, "Next?")
    assert built.messages[1:-1] == [
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": "part one"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "42"},
    ]
    assert built.dropped_turns == 0


def test_fifty_turns_build_fast(tokens: HFTokenCounter) -> None:
    history = [
        m
        for n in range(50)
        for m in user_turn(f"Question {n}: how does retrieval 检索 work here? 🎉", f"Answer {n}: like this. " * 8)
    ]
    passages = [passage(n, "A retrieved passage about the topic. " * 12, f"doc{n}.md") for n in range(1, 6)]
    builder = PromptBuilder(tokens, 8192, 512)
    builder.build(SYSTEM, passages, history, "And now?")
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        built = builder.build(SYSTEM, passages, history, "And now?")
        timings.append(time.perf_counter() - start)
    assert built.dropped_turns == 0 and len(built.passages) == 5
    assert statistics.median(timings) < 0.1


def test_exact_check_corrects_underestimates(tokens: HFTokenCounter) -> None:
    history = [m for n in range(20) for m in user_turn(f"Question {n}?", f"Answer {n}. " * 10)]
    passages = [passage(n, "Passage text. " * 30, f"doc{n}.md") for n in range(1, 6)]
    builder = builder_for_budget(tokens, 400, passage_share=1.0)
    builder._lengths = lambda texts: [0] * len(texts)
    built = builder.build(SYSTEM, passages, history, "Why?")
    check_invariants(tokens, built, SYSTEM, passages, history, "Why?")
    assert built.dropped_turns == 20 and built.dropped_passages > 0


def test_passages_stop_at_what_the_model_can_use(tokens: HFTokenCounter) -> None:
    question = "Summarise the passages."
    passages = [passage(n, f"Fact number {n} is about retrieval. " * 10, f"doc{n}.md") for n in range(1, 11)]
    roomy = PromptBuilder(tokens, 8192, 64).build(SYSTEM, passages, [], question)
    capped = PromptBuilder(tokens, 8192, 64, passage_tokens=200).build(SYSTEM, passages, [], question)
    assert len(roomy.passages) == 10 and 0 < len(capped.passages) < 10
    bare = tokens.count_chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])
    assert capped.tokens - bare <= 200 + 10, "passages (and their framing) beyond the cap"
