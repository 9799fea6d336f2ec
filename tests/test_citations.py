"""Citation checking against the retrieved passages, and the evidence sentences shown with every answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_app.citations import cited_numbers, document_title, evidence_sentences, rank_statements, statement
from rag_app.language import split_sentences
from rag_app.types import Chunk, Hit

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def extract(question: str, text: str, path: str = "guide.md"):
    """The extractive answer's sentences to a question over one passage (no embedder)."""
    from rag_app.answering import extractive_sentences

    return extractive_sentences(question, [Hit(Chunk(text, path, id=1), 1.0, number=1)], None, 1.01)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [("The port is 7860 [1].", (1,)), ("It is [2][1] and [2, 2].", (2, 1)), ("端口是 7860 [1，2]。", (1, 2)),
     ("端口是 7860【2】", (2,)), ("No citation at all.", ())],
)
def test_cited_numbers_reads_every_bracket_style(text, numbers):
    assert cited_numbers(text) == numbers


def test_sentences_split_for_english_and_chinese():
    assert split_sentences("One. Two! 三。四？\nFive") == ["One.", "Two!", "三。", "四？", "Five"]
    assert split_sentences("Steps: 1. Open it. 2. Close it.") == ["Steps:", "1. Open it.", "2. Close it."]
    assert split_sentences("The answer is 42. Done.") == ["The answer is 42.", "Done."]


@pytest.mark.parametrize(
    "sentence",
    ["# Asking Questions", "What is the default port?", 'Try asking "What is the default port?" now.',
     "端口被占用了怎么办？", "```", "Hi."],
)
def test_headings_questions_and_fragments_are_not_statements(sentence):
    assert statement(sentence) is None


def test_list_markers_are_dropped_from_statements():
    assert statement("- `--port` sets the port.") == "`--port` sets the port."


def sources_from(*paths: Path) -> list[Hit]:
    return [Hit(Chunk(path.read_text(encoding="utf-8"), str(path), id=number), 1.0, number=number)
            for number, path in enumerate(paths, start=1)]


def hit(text: str, path: str) -> Hit:
    return Hit(Chunk(text, path, id=1), 1.0, number=1)


def test_evidence_prefers_the_statement_with_the_fact_over_quoted_questions():
    sources = sources_from(SAMPLES / "en" / "getting-started.md", SAMPLES / "en" / "asking-questions.md")
    sources, evidence = evidence_sentences("What is the default port?", sources)
    assert evidence[0] == "The default port is 7860."
    assert not any("?" in sentence or sentence.startswith("#") for sentence in evidence)
    assert sources[1].evidence[0] == "The default port is 7860."


def test_evidence_skips_table_headers_and_finds_the_variable(embedder):
    sources = sources_from(SAMPLES / "en" / "models-and-devices.md")
    _, evidence = evidence_sentences("Which environment variable sets where the model cache lives?", sources,
                                     embedder)
    assert any("RAG_APP_HOME" in sentence for sentence in evidence)
    assert not any(sentence.startswith("| Setting") for sentence in evidence)


def test_chinese_evidence_carries_the_port():
    sources = sources_from(SAMPLES / "zh" / "快速开始.md")
    _, evidence = evidence_sentences("默认端口是多少？", sources)
    assert evidence and all("7860" in sentence for sentence in evidence[:2])
    assert not any(sentence.endswith("？") for sentence in evidence)


def test_the_embedder_finds_evidence_that_shares_no_word_with_the_question(embedder):
    text = "Karl Benz built the first automobile in 1885. Bananas are yellow."
    sources = [hit(text, "cars.txt")]
    question = "When was the car invented?"
    assert evidence_sentences(question, sources)[1] == []
    meaning = 0.40  # below this pair's cosine under all-MiniLM-L6-v2
    assert evidence_sentences(question, sources, embedder, meaning)[1] == [
        "Karl Benz built the first automobile in 1885."]


def test_a_sentence_that_only_repeats_the_question_is_not_evidence():
    sources = [hit("The default port. The default port is 7860.", "a.md")]
    assert evidence_sentences("default port", sources)[1] == ["The default port is 7860."]


KETTLE = ("Aurelle K200 Electric Kettle: User Manual\n\nThank you for choosing Aurelle. Fill it through the lid and "
          "switch it on at the base. It holds 1.2 litres, enough for six cups.\n")


def test_a_document_title_ranks_after_the_sentence_that_answers(embedder):
    question = "How much water does the Aurelle K200 kettle hold?"
    sources = [Hit(Chunk(KETTLE, "kettle.txt", ordinal=0, id=1), 1.0, number=1)]
    ranked = rank_statements(question, sources, embedder, 0.6)
    assert ranked[0].text == "It holds 1.2 litres, enough for six cups."
    assert ranked[-1].text == "Aurelle K200 Electric Kettle: User Manual"


def test_a_first_line_is_a_title_only_at_the_start_of_a_file_and_when_more_follows():
    assert document_title(Hit(Chunk(KETTLE, "kettle.txt", ordinal=0), 1.0)) == KETTLE.partition("\n")[0]
    assert document_title(Hit(Chunk(KETTLE, "kettle.txt", ordinal=3), 1.0)) is None
    assert document_title(Hit(Chunk("It holds 1.2 litres\n", "kettle.txt"), 1.0)) is None
    assert document_title(Hit(Chunk("It holds 1.2 litres.\nIt boils fast.", "kettle.txt"), 1.0)) is None


PASSIFLORA = ("大果西番莲\n\n大果西番莲是西番莲属的植物中果实最大的一种。大果西番莲原产于南美洲的热带地区。"
              "其叶柄有四到六个腺体。大果西番莲有时候会在温室中种植。\n")


def test_a_sentence_that_answers_without_repeating_the_titles_name_is_chosen():
    sources = [Hit(Chunk(PASSIFLORA, "大果西番莲.txt", ordinal=0, id=1), 1.0, number=1)]
    ranked = rank_statements("大果西番莲的叶柄有什么特点？", sources)
    assert ranked[0].text == "其叶柄有四到六个腺体。"


def test_the_search_order_counts_when_two_passages_answer_nearly_alike():
    """The first passage's sentence lacks one of six question terms; the second passage's has them all. The
    search ranked the first passage higher, and that outweighs one common term (RANK_WEIGHT)."""
    question = "When does the maritime harbour museum in Bergen open on Sundays?"
    first = Hit(Chunk("On Sundays the harbour museum in Bergen opens at noon.", "guide.txt", id=1), 1.0, number=1)
    second = Hit(Chunk("The maritime harbour museum in Bergen opens at ten on Sundays. Maritime trade built the town.",
                       "forum.txt", id=2), 0.9, number=2)
    ranked = rank_statements(question, [first, second])
    assert ranked[0].text == "On Sundays the harbour museum in Bergen opens at noon."
    assert rank_statements(question, [first, second], rank_weight=0.0)[0].position == 1, "the case needs the order"


DEVICES = ("The default is auto: if an NVIDIA GPU with CUDA is available, rag_app uses it with bf16 precision; "
           "otherwise it runs on the CPU with fp32 precision. A GPU makes ingesting faster.")


@pytest.mark.parametrize(("question", "text"), [
    ("Which precision does the CPU use?", DEVICES),
    ("没有显卡时用什么精度？", "如果有显卡，就用 bf16 精度；否则在 CPU 上用 fp32 精度。显卡让导入更快。"),
])
def test_a_clause_that_answers_is_shown_with_the_sentence_it_continues(question, text):
    """The clause after ";" ranks first, but "otherwise it runs on the CPU" means nothing alone: the answer and the
    evidence show its whole sentence."""
    from rag_app.answering import extractive_sentences

    sources = [Hit(Chunk(text, "devices.md", id=1), 1.0, number=1)]
    ranked = rank_statements(question, sources)
    whole = split_sentences(text, clauses=False)[0]
    assert ranked[0].text != whole and ranked[0].sentence == whole
    assert [sentence.text for sentence in extractive_sentences(question, sources, None, 1.01)] == [whole]
    assert evidence_sentences(question, sources)[1][0] == whole


def test_chinese_question_terms_for_ranking_keep_the_pairs_inside_words():
    """"认端" straddles 默认|端口: as the rarest pair it made a sentence repeating the phrase the best answer."""
    from rag_app.citations import answer_terms

    assert answer_terms("默认端口是多少？") == {"默认", "端口"}
    assert answer_terms("What is the default port?") == {"default", "port"}
    assert answer_terms("水") == {"水"}


OPTIONS = ("## Web interface options\n\n`python app.py` accepts these options:\n\n- `--host` sets the address.\n"
           "- `--port` sets the port\n- `--auth` asks for a password\n\nThe defaults suit one computer.\n")
START = "## 安装与启动\n\n最简单的启动方式是：\n\n```\nmake run\n```\n\n这条命令会安装依赖并启动网页界面。\n"


@pytest.mark.parametrize(("question", "text", "introduction", "introduced"), [
    ("Which options does app.py accept?", OPTIONS, "`python app.py` accepts these options:",
     "`--host` sets the address. `--port` sets the port; `--auth` asks for a password"),
    ("最简单的启动方式是什么？", START, "最简单的启动方式是：", "`make run`"),
])
def test_a_sentence_that_introduces_a_list_or_code_is_answered_with_it(question, text, introduction, introduced):
    """"`python app.py` accepts these options:" answers nothing by itself: the answer carries what it introduces,
    and its evidence stays the sentence as the passage has it."""
    from rag_app.answering import extractive_sentences

    sources = [Hit(Chunk(text, "guide.md", id=1), 1.0, number=1)]
    answer = extractive_sentences(question, sources, None, 1.01)[0]
    assert (answer.text, answer.evidence) == (f"{introduction} {introduced}", introduction)


SETTINGS_TABLE = ("You can choose models with environment variables or with command-line flags.\n\n"
                  "| Setting | Environment variable | Flag |\n|---|---|---|\n"
                  "| Embedder | `RAG_APP_EMBEDDER` | `--embedder` |\n| Language model | `RAG_APP_LLM` | `--llm` |\n\n"
                  "For example, set it before starting the app.\n")


def test_a_table_row_is_a_statement_with_its_column_names():
    """The row alone ("| Language model | `RAG_APP_LLM` | `--llm` |") does not say which column is the variable, so
    the sentence about environment variables in general won; read with its column names, the row answers."""
    from rag_app.answering import extractive_sentences

    sources = [Hit(Chunk(SETTINGS_TABLE, "models.md", id=1), 1.0, number=1)]
    answer = extractive_sentences("Which environment variable picks the language model?", sources, None, 1.01)
    assert [sentence.text for sentence in answer] == [
        "Setting: Language model, Environment variable: `RAG_APP_LLM`, Flag: `--llm`"]


WRAPPED = ("### GPU Selection\n\nIf you have multiple NVIDIA GPUs in your system and want to limit Ollama to use\n"
           "a subset, you can set `CUDA_VISIBLE_DEVICES` to a comma separated list of GPUs.\n"
           "Numeric IDs may be used, however ordering may vary.\n")
WRAPPED_ZH = "服务默认只监听本机地址，只有运行它的那台\n电脑可以访问。换一个端口即可。\n"


def test_a_hard_wrapped_line_does_not_end_its_sentence():
    """Markdown and PDF text wraps lines mid-sentence; a wrap is no sentence end, and the answer shows the whole
    sentence on one line while its evidence stays the passage's own text (so the UI can find and mark it)."""
    from rag_app.language import unwrapped

    assert split_sentences(WRAPPED)[1].endswith("comma separated list of GPUs.")
    assert split_sentences(WRAPPED_ZH) == ["服务默认只监听本机地址，只有运行它的那台\n电脑可以访问。",
                                           "换一个端口即可。"]
    assert unwrapped(split_sentences(WRAPPED_ZH)[0]) == "服务默认只监听本机地址，只有运行它的那台电脑可以访问。"
    answer = extract("How do I limit Ollama to some of my NVIDIA GPUs?", WRAPPED, "gpu.md")[0]
    assert "CUDA_VISIBLE_DEVICES" in answer.text and "\n" not in answer.text
    assert answer.evidence in WRAPPED and "\n" in answer.evidence


@pytest.mark.parametrize("text", [
    "Steps to follow\n- open the file\n- save it", "name: Alice\nrole: admin",
    "```\nsudo tee /etc/x\nsudo apt update\n```",
    "| a | b |\n| c | d |", "## Setup\nrun it twice",
])
def test_a_line_break_before_a_block_of_its_own_still_ends_a_line(text):
    """List items, "key: value" records (a CSV row's), code and table lines and headings are not wrapped prose."""
    assert len(split_sentences(text)) == len([line for line in text.splitlines() if line.strip()])


SECOND_WRITER = ("## One writer at a time\n\nOnly one ingest can write to an index at a time. If an ingest is "
                 "already running on an index, a second ingest on the same index is refused. Wait for the first one "
                 "to finish and try again.\n\n## Mixed-language folders\n\nA single index can hold both.\n")
OLDER = ("## Installing older versions on Linux\n\nIf you want to install an older version on Linux, tell the "
         "install script which version to install.\n\n```shell\ncurl -fsSL https://example.com/install.sh | "
         "VERSION=0.5.7 sh\n```\n")


@pytest.mark.parametrize(("question", "text", "then"), [
    ("What should I do if a second ingest is refused?", SECOND_WRITER, "Wait for the first one to finish"),
    ("How do I install an older version on Linux?", OLDER, "VERSION=0.5.7"),
    ("第二个导入任务被拒绝了怎么办？", "## 为什么第二个导入任务被拒绝了？\n\n如果已经有一个导入任务正在写入该索引，"
     "第二个导入任务会被拒绝。请等第一个任务结束后再试。\n", "请等第一个任务结束后再试"),
])
def test_a_statement_that_restates_the_question_comes_with_what_follows_it(question, text, then):
    """The sentence that shares the question's words only sets out its situation; what to do is the next one (a
    line of code counts), from the same passage and section, with the same citation."""
    answer = extract(question, text)
    assert then in answer[1].text and answer[1].citations == (1,)
    assert "single index" not in " ".join(sentence.text for sentence in answer)


UPGRADE = ("# FAQ\n\n## How do I upgrade Ollama?\n\nOllama downloads each update by itself and asks you to restart. "
           "Upgrade notes are published with every release. Ollama keeps the models you pulled.\n")
OTHER_COMPUTERS = ("# 常见问题\n\n## 为什么其他电脑打不开聊天界面？\n\n服务默认只监听 127.0.0.1，只有运行它的那台电脑"
                   "可以访问。使用 `--host 0.0.0.0` 可以接受局域网连接，同时请用 `--auth user:password` 设置聊天界面"
                   "的密码。\n")


@pytest.mark.parametrize(("question", "text", "answer"), [
    ("How can I upgrade Ollama?", UPGRADE, "downloads each update by itself"),
    ("为什么别的电脑打不开聊天界面？", OTHER_COMPUTERS, "127.0.0.1"),
])
def test_the_first_statement_under_a_heading_that_asks_the_question_answers_it(question, text, answer):
    """An FAQ's heading is the question; the statement right under it answers it, ahead of a later one that
    repeats the question's words ("Upgrade notes are published with every release")."""
    assert answer in extract(question, text, "faq.md")[0].text


def test_a_comment_in_a_code_block_is_not_a_heading():
    """Only Markdown headings ask a question; "# install the package" in a shell block is a comment."""
    from rag_app.index.lexical import question_terms
    from rag_app.retrieval import heading_asks, headings

    text = "## Setup\n\n```shell\n# install the package\npip install rag-app\n```\n"
    assert headings(text) == ["## Setup"]
    assert not heading_asks(text, question_terms("How do I install the package?"))
    assert heading_asks(text.replace("## Setup", "## How to install the package"),
                        question_terms("How do I install the package?"))
