"""From a folder with a made-up fact to a cited answer: Python API, streaming and the index contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rag_app.index import EmbedderMismatchError, Index, IndexNotFoundError
from rag_app.types import Answer
from tests.facts import FACT_QUESTION


def test_answer_comes_from_the_file_with_the_fact(agent, fact_corpus):
    answer = agent.ask(FACT_QUESTION)
    assert answer.sources, "the fact must be retrieved"
    assert Path(answer.sources[0].path) == (fact_corpus / "fountain.txt").resolve()
    assert "Tuesday" in answer.sources[0].text
    assert answer.text.strip()
    assert answer.steps[0].tool == "search_documents"
    assert answer.steps[0].tool_input == FACT_QUESTION
    assert any("Tuesday" in sentence for sentence in answer.evidence)


def test_every_citation_points_to_a_retrieved_passage(agent):
    answer = agent.ask(FACT_QUESTION)
    import re

    numbers = {int(n) for group in re.findall(r"\[([\d,\s]+)\]", answer.text) for n in group.split(",") if n.strip()}
    assert numbers <= {source.number for source in answer.sources}
    assert answer.cited == bool(numbers)


def test_stream_yields_steps_then_tokens_and_holds_the_answer(agent):
    response = agent.stream(FACT_QUESTION)
    events = list(response)
    kinds = [event.kind for event in events]
    assert kinds[0] == "step" and kinds[-1] == "token"
    streamed = "".join(event.text for event in events if event.kind == "token")
    assert streamed.strip()
    assert response.answer.sources


def test_a_response_finishes_itself_when_nobody_iterates(agent):
    answer = agent.stream(FACT_QUESTION).answer
    assert answer.sources and answer.text.strip()


def test_history_is_accepted_and_reported(agent):
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! Ask me anything."}]
    answer = agent.ask(FACT_QUESTION, history=history)
    assert answer.dropped_turns == 0
    assert 0 < answer.prompt_tokens <= answer.context_window


def test_opening_with_another_embedder_is_refused_with_advice(fact_index):
    with pytest.raises(EmbedderMismatchError) as raised:
        Index.open(fact_index, "some-other-embedder")
    message = str(raised.value)
    assert "all-MiniLM-L6-v2" in message and "--embedder" in message


def test_a_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexNotFoundError, match="rag-ingest"):
        Index.open(tmp_path / "nothing-here")


def test_manifest_records_embedder_dimension_chunking_and_version(fact_index):
    import json

    manifest = json.loads((fact_index / "manifest.json").read_text())
    assert manifest["embedder"] == "all-MiniLM-L6-v2"
    assert manifest["dimension"] == 384
    assert manifest["chunking"]["max_tokens"] <= 256
    assert manifest["chunker_version"]
    assert manifest["project_version"]


def test_the_public_api_loads_an_index_with_the_embedded_defaults(fact_index, fact_corpus):
    from rag_app import Answer, RagAgent

    agent = RagAgent.load(fact_index, device="cpu")
    answer = agent.ask(FACT_QUESTION, max_new_tokens=16, max_steps=0)
    assert isinstance(answer, Answer)
    assert agent.llm.name == "SmolLM2-135M-Instruct" and agent.index.embedder.name == "all-MiniLM-L6-v2"
    assert Path(answer.sources[0].path) == (fact_corpus / "fountain.txt").resolve()


def ask_extractively(tmp_path_factory, embedder, llm, write: Callable[[Path], object], question: str) -> Answer:
    """Ingest a new folder that `write` fills, and ask `question` of it with extractive answers."""
    from ingest.pipeline import ingest
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings
    from rag_app.models.actions import MEASURED, ActionRecords

    folder = tmp_path_factory.mktemp("documents")
    write(folder)
    location = tmp_path_factory.mktemp("documents_index") / "index"
    assert ingest([folder], location, embedder).ok
    with Index.open(location, embedder) as index:
        agent = RagAgent(index, llm, AgentSettings(answer_mode="extractive", max_steps=0),
                         ActionRecords(measured=MEASURED))
        return agent.ask(question)


def test_a_pdf_paragraph_wrapped_over_lines_is_answered_with_its_whole_sentence(tmp_path_factory, embedder, llm):
    """A PDF's text comes line by line as the page lays it out; the answer shows the sentence the lines make,
    on one line, cited to the PDF's page, not the fragment on the line that holds the question's words."""
    from tests.fixtures_files import write_pdf

    answer = ask_extractively(tmp_path_factory, embedder, llm, lambda folder: write_pdf(folder / "handbook.pdf", [[
        "Travel policy", "",
        "If you travel abroad for more than three days and want your costs to be paid back",
        "in full, submit the expense form to the finance office within ten working days.",
        "Receipts must be kept for a year.",
    ]]), "How do I get my costs paid back after travelling abroad?")
    assert not answer.abstained
    assert "want your costs to be paid back in full, submit the expense form to the finance office" in answer.text
    assert answer.sources[0].path.endswith("handbook.pdf") and answer.sources[0].chunk.page == 1


ROUTER_PAGE = (
    "<!doctype html><html><head><title>Nimbus Router X2</title></head><body>\n"
    "<header><a href='/'>Nimbus Networks</a> <a href='/shop'>Shop</a> <a href='/support'>Support</a></header>\n"
    "<main><h1>Nimbus Router X2</h1>\n"
    "<p>The Nimbus Router X2 is a tri-band Wi-Fi 7 router for homes up to 250 square metres.</p>\n"
    "<h2>Resetting the router</h2>\n"
    "<p>To restore factory settings, hold the reset button on the back for 15 seconds until the light blinks "
    "orange. All settings, including the Wi-Fi password, are erased.</p></main>\n"
    "<footer>Copyright 2026 Nimbus Networks. Reset your cookie settings here.</footer>\n</body></html>\n"
)


def test_a_saved_web_page_is_answered_from_its_content_not_its_footer(tmp_path_factory, embedder, llm):
    """A product page saved from a browser: the answer quotes the page's instructions, and neither the answer nor
    its sources carry the site's menu or footer."""
    answer = ask_extractively(tmp_path_factory, embedder, llm,
                              lambda folder: (folder / "router.html").write_text(ROUTER_PAGE, encoding="utf-8"),
                              "How do I reset the Nimbus router?")
    assert not answer.abstained
    assert "hold the reset button on the back for 15 seconds" in answer.text
    assert answer.sources[0].path.endswith("router.html")
    for chrome in ("Copyright", "cookie", "Shop"):
        assert chrome not in answer.text and all(chrome not in source.text for source in answer.sources)


ON_CALL = {"team": "billing",
           "rotation": [{"week": "2026-W10", "primary": "Tom Becker", "secondary": "Lin Wei"},
                        {"week": "2026-W11", "primary": "Priya Nair", "secondary": "Tom Becker"}],
           "escalation_phone": "+49 30 5550 1234"}


@pytest.mark.parametrize("indent", [None, 2], ids=["minified", "pretty"])
def test_a_json_export_is_answered_with_the_record_that_holds_the_fact(tmp_path_factory, embedder, llm, indent):
    """A JSON file (an API export): the answer quotes the one record asked about, not the whole file (minified)
    nor one line of a record (pretty-printed)."""
    import json

    answer = ask_extractively(
        tmp_path_factory, embedder, llm,
        lambda folder: (folder / "oncall.json").write_text(json.dumps(ON_CALL, indent=indent), encoding="utf-8"),
        "Who is the primary on-call in week 2026-W11?")
    assert not answer.abstained
    assert "primary: Priya Nair" in answer.text
    assert "2026-W10" not in answer.text and "escalation_phone" not in answer.text
    assert answer.sources[0].path.endswith("oncall.json")


def write_meeting_notes(folder: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Project Falcon kickoff meeting", 1)
    document.add_paragraph("The project will migrate the billing system from Oracle to PostgreSQL by September.")
    table = document.add_table(rows=3, cols=3)
    for row, cells in enumerate([["Milestone", "Owner", "Due"], ["Schema frozen", "Priya Nair", "30 April"],
                                 ["Dry-run migration", "Tom Becker", "15 July"]]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    document.save(str(folder / "falcon-kickoff.docx"))


def test_a_table_row_in_meeting_notes_is_answered_with_its_column_names(tmp_path_factory, embedder, llm):
    """A DOCX table's row answers with the names of its columns, so the reader sees which cell is the date."""
    answer = ask_extractively(tmp_path_factory, embedder, llm, write_meeting_notes,
                              "When is the dry-run migration due?")
    assert not answer.abstained
    assert "Milestone: Dry-run migration | Owner: Tom Becker | Due: 15 July" in answer.text
    assert "30 April" not in answer.text


def test_a_pdfs_running_header_is_neither_answer_nor_passage(tmp_path_factory, embedder, llm):
    """A handbook whose every page carries the same header and a page number: the answer and the passages shown
    under it hold the page's content, not its furniture."""
    from tests.fixtures_files import write_pdf

    bodies = ["Our core working hours are 10:00 to 16:00 on weekdays.",
              "Every full-time employee receives 28 days of paid holiday per calendar year.",
              "A doctor's note is required from the fourth consecutive day of absence."]
    pages = [["Acme Employee Handbook 2026 - Confidential - do not distribute", body, f"Page {number} of 3"]
             for number, body in enumerate(bodies, 1)]
    answer = ask_extractively(tmp_path_factory, embedder, llm, lambda folder: write_pdf(folder / "handbook.pdf", pages),
                              "How many days of paid holiday do Acme employees get?")
    assert not answer.abstained and "28 days of paid holiday" in answer.text
    assert answer.sources[0].chunk.page == 2
    assert all("Confidential" not in source.text and "Page " not in source.text for source in answer.sources)


def test_a_chinese_pdfs_chapter_heading_is_not_read_into_its_first_sentence(tmp_path_factory, embedder, llm):
    """A PDF has no heading marks: a short line above a sentence is a heading, so the answer is the sentence alone
    (it read "第二章 休假全职员工每年享有二十八天带薪年假")."""
    from tests.fixtures_files import write_pdf

    pages = [["员工手册（2026 年版）", "第一章 工作时间", "公司的核心工作时间为每个工作日上午十点至下午四点。"],
             ["员工手册（2026 年版）", "第二章 休假", "全职员工每年享有二十八天带薪年假。",
              "未休完的年假最多可以顺延五天到次年第一季度。"],
             ["员工手册（2026 年版）", "第三章 病假", "连续病假超过三天的，须提供医生证明。"]]
    answer = ask_extractively(tmp_path_factory, embedder, llm, lambda folder: write_pdf(folder / "手册.pdf", pages),
                              "员工每年有多少天带薪年假？")
    assert not answer.abstained and answer.sources[0].chunk.page == 2
    assert "全职员工每年享有二十八天带薪年假" in answer.text and "第二章" not in answer.text
