"""The UI's pure parts: escaping, sources, meter, history replay, export, login parsing and folder checks."""

from __future__ import annotations

import json
import os
import re

import pytest

from rag_app.types import Answer, AnswerSentence, Chunk, Hit, Step, relevance_label
from rag_app.ui.export import conversation_turns, to_json, to_markdown
from rag_app.ui.render import (
    UNCITED_NOTE,
    agent_history,
    escape,
    highlight,
    meter,
    render_answer,
    render_sources,
    render_step,
    unescape,
)
from rag_app.ui.security import AllowedRoots, FolderNotAllowedError, parse_auth

HOSTILE = [
    "<script>alert('x')</script>",
    "![tracker](http://evil.example/x.png) and [click](javascript:alert(1))",
    "a * b_c `code` # not a heading | pipe ~ tilde $x^2$ {braces} \\ back",
    "two trailing spaces  \nthen a line\n\nand & ampersands &amp; entities",
    "中文：喷泉在星期二喷水。",
]


def _source(text: str, evidence: list[str], number: int = 1) -> Hit:
    chunk = Chunk(id=7, path="/docs/notes.txt", text=text, start_line=3, end_line=5)
    return Hit(chunk=chunk, score=0.0321, number=number, relevance=0.8, evidence=tuple(evidence))


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_is_inert_and_exactly_reversible(text):
    escaped = escape(text)
    assert "<script" not in escaped and "](" not in escaped
    assert unescape(escaped) == text


def test_highlight_bolds_the_supporting_sentence_only():
    source = _source("Intro line. The fountain sprays on Tuesday. Outro.", ["The fountain sprays on Tuesday."])
    assert highlight(source) == "Intro line. **The fountain sprays on Tuesday.** Outro."


def test_highlight_bolds_a_sentence_that_runs_over_a_wrapped_line():
    """Evidence keeps the passage's own line break (rag_app.language.split_sentences), so it is found and marked."""
    from rag_app.language import split_sentences

    text = "If you have several GPUs and want Ollama to use\na subset, set CUDA_VISIBLE_DEVICES.\nNext line."
    source = _source(text, [split_sentences(text)[0]])
    assert highlight(source).startswith("**If you have several GPUs and want Ollama to use  \na subset, set ")
    assert highlight(source).endswith(".**  \nNext line.")


def test_sources_block_is_collapsible_numbered_and_escaped():
    answer = Answer(text="On Tuesday [1].", sources=[_source("<script>x()</script> Tuesday.", ["Tuesday."])],
                    cited=True)
    block = render_sources(answer, "turn-1")
    assert block["metadata"]["title"].startswith("📚 Sources (1)")
    assert block["metadata"]["id"] == "turn-1"
    assert "**[1] /docs/notes.txt, lines 3-5** · score 0.032" in block["content"]
    assert "&lt;script&gt;" in block["content"] and "<script" not in block["content"]
    assert "**Tuesday.**" in block["content"]


def test_a_refusal_shows_its_closest_passages_escaped_and_uncited():
    near = Hit(Chunk(text="<img src=x onerror=alert(1)> The fountain sprays on Tuesday.", path="/docs/notes.txt",
                     start_line=3, end_line=5), score=0.032, relevance=0.4999,  # shown 0.49: it did not pass
               evidence=("The fountain sprays on Tuesday.",))
    answer = Answer(text="Not found in your documents.", abstained=True, closest=[near])
    block = render_sources(answer, "t")
    assert block["metadata"]["title"] == "📚 Sources (none · 1 closest)"
    assert block["content"].startswith("No passage was relevant enough to answer from. The closest ones")
    assert "**/docs/notes.txt, lines 3-5** · relevance 0.49" in block["content"] and "[0]" not in block["content"]
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in block["content"] and "<img" not in block["content"]
    assert block["content"].endswith("set Settings › Relevance threshold to 0.49 and ask again.")
    turns = conversation_turns([{"role": "user", "content": "When?"}, render_answer(answer), block],
                               {"t": answer.to_dict()})
    assert "**The fountain sprays on Tuesday.**" in block["content"], "the sentence nearest to answering, in bold"
    assert '- /docs/notes.txt, lines 3-5 (relevance 0.49): "The fountain sprays on Tuesday."' in to_markdown(
        turns, "default")
    assert render_sources(Answer(text="Not found.", abstained=True), "u")["metadata"]["title"] == "📚 Sources (none)"
    assert [relevance_label(value) for value in (0.29, 0.57, 0.4999, 0.5)] == ["0.29", "0.57", "0.49", "0.50"]


def test_the_sources_the_answer_cites_come_first_in_the_order_it_cites_them():
    sources = [_source(f"Passage {number}.", [], number=number) for number in (1, 2, 3, 4)]
    answer = Answer(text="It is [4]. And [2].", sources=sources, cited=True,
                    sentences=[AnswerSentence("It is.", (4,), True), AnswerSentence("And.", (2,), True)])
    content = render_sources(answer, "t")["content"]
    assert [int(number) for number in re.findall(r"\*\*\[(\d)\]", content)] == [4, 2, 1, 3]
    assert render_sources(Answer(text="No.", sources=sources), "u")["content"].index("[1]") == 2, "none cited"


def test_a_source_says_which_of_its_lines_the_answer_quotes():
    """A reader checks a citation at the line its evidence starts on, not somewhere in lines 3-5."""
    source = _source("Intro line.\nThe fountain sprays\non Tuesday.\nOutro.", [])
    sentence = AnswerSentence("It sprays on Tuesday [1].", (1,), supported=True,
                              evidence="The fountain sprays\non Tuesday.")
    answer = Answer(text=sentence.text, sources=[source], sentences=[sentence], cited=True)
    assert "**[1] /docs/notes.txt, lines 3-5** · quoted: line 4 · score 0.032" in render_sources(answer, "t")["content"]
    assert answer.to_dict()["sentences"][0]["line"] == 4
    turns = conversation_turns([{"role": "user", "content": "When?"}, render_answer(answer),
                                render_sources(answer, "t")], {"t": answer.to_dict()})
    assert "1. /docs/notes.txt, lines 3-5 · quoted: line 4 (score 0.032)" in to_markdown(turns, "default")


def test_uncited_answer_is_flagged_and_the_flag_is_not_replayed():
    answer = Answer(text="Probably Tuesday.", sources=[_source("Tuesday.", [])], cited=False)
    message = render_answer(answer)
    assert UNCITED_NOTE in message["content"]
    history = [{"role": "user", "content": "When?"}, message, render_sources(answer, "t"),
               render_step(Step("action", "[1] notes", tool="search", tool_input="when"))]
    assert agent_history(history) == [{"role": "user", "content": "When?"},
                                      {"role": "assistant", "content": "Probably Tuesday."}]


def test_history_replays_raw_text_from_gradio_content_lists():
    history = [{"role": "user", "content": [{"type": "text", "text": "a*b <i>?"}]},
               {"role": "assistant", "content": [{"type": "text", "text": escape("x_y <b>\nz")}]}]
    assert agent_history(history) == [{"role": "user", "content": "a*b <i>?"},
                                      {"role": "assistant", "content": "x_y <b>\nz"}]


def test_meter_says_what_was_used_and_what_was_dropped():
    assert meter(Answer(text="", prompt_tokens=1024, context_window=2048, dropped_turns=2)) == (
        "Context: 1024 / 2048 tokens (50%) · 2 earlier turn(s) no longer fit and were left out")
    assert "whole conversation fits" in meter(Answer(text="", prompt_tokens=10, context_window=2048))
    assert "nothing relevant" in meter(Answer(text="", abstained=True, context_window=2048))
    # An extractive answer sends no prompt; one that fell back after the model was asked did.
    assert meter(Answer(text="", mode="extractive", prompt_tokens=700, context_window=2048)) == (
        "Context: no prompt was needed (answered in the passages' own words) · window 2048 tokens")
    assert "700 / 2048" in meter(Answer(text="", mode="extractive", generated="It is", prompt_tokens=700,
                                        context_window=2048))


def test_export_keeps_questions_answers_and_sources():
    answer = Answer(text="On Tuesday [1].", sources=[_source("It sprays on Tuesday.", ["It sprays on Tuesday."])],
                    cited=True, prompt_tokens=300, context_window=2048)
    history = [{"role": "user", "content": "When <b>?"},
               render_step(Step("action", "found [1]", tool="search", tool_input="when")),
               render_answer(answer), render_sources(answer, "t1")]
    turns = conversation_turns(history, {"t1": answer.to_dict()})
    assert [turn["question"] for turn in turns] == ["When <b>?"]
    assert turns[0]["answer"] == "On Tuesday [1]."
    markdown = to_markdown(turns, "default")
    assert "## 1. When <b>?" in markdown and "/docs/notes.txt, lines 3-5 (score 0.032)" in markdown
    data = json.loads(to_json(turns, "default"))
    assert data["turns"][0]["details"]["sources"][0]["text"] == "It sprays on Tuesday."
    assert data["turns"][0]["steps"][0]["title"].startswith("🔎 search")


def test_parse_auth_accepts_pairs_and_names_the_bad_one():
    assert parse_auth(["ann:pw1", "bob:p:w,  cy:x", ""]) == [("ann", "pw1"), ("bob", "p:w"), ("cy", "x")]
    with pytest.raises(ValueError, match="'dan' is not in the form user:password"):
        parse_auth(["dan"])


def test_allowed_roots_refuse_escapes(tmp_path):
    root, outside = tmp_path / "shared", tmp_path / "private"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "docs" / "a.txt").write_text("fine")
    roots = AllowedRoots([root])
    assert roots.check(str(root / "docs")) == (root / "docs").resolve()
    with pytest.raises(FolderNotAllowedError, match="outside the allowed roots"):
        roots.check(str(root / "docs" / ".." / ".." / "private"))
    os.symlink(outside, root / "door")
    with pytest.raises(FolderNotAllowedError, match="outside the allowed roots"):
        roots.check(str(root / "door"))
    os.symlink(outside / "secret.txt", root / "docs" / "link.txt")
    with pytest.raises(FolderNotAllowedError, match="1 link"):
        roots.check(str(root / "docs"))
    with pytest.raises(FolderNotAllowedError, match="not an existing folder"):
        roots.check(str(root / "missing"))
    with pytest.raises(FolderNotAllowedError, match="--allowed-root"):
        AllowedRoots([]).check(str(root))
