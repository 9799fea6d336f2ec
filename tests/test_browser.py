"""A real browser (Debian's chromium, driven by playwright): ask, read the streamed answer and its sources,
upload a file and ask about it, watch ingest progress move, stop a long answer. Screenshots go to
test-artifacts/browser/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from gradio.utils import get_upload_folder
from playwright.sync_api import expect, sync_playwright

from rag_app.config import AgentSettings, GenerationSettings
from rag_app.ui.export import EXPORTS_FOLDER
from tests.facts import FACT_QUESTION
from tests.test_ui_handlers import make_catalog, serve

CHROMIUM = Path("/usr/bin/chromium")
COUNTS = re.compile(r"(\d+) / (\d+) chunks embedded")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
QUIET_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def page(fact_index, embedder, llm, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (installs Debian's chromium) and test again")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with serve(make_catalog(fact_index, tmp_path_factory.mktemp("ui_browser"))) as url, sync_playwright() as play:
        browser = play.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=QUIET_FLAGS,
            viewport={"width": 1400, "height": 1000})
        page = browser.new_page()
        page.goto(url)
        yield page
        browser.close()


def _ask(page, question: str, sources_seen: int) -> None:
    page.locator("#chat-input textarea").fill(question)
    page.locator("#chat-input textarea").press("Enter")
    expect(page.locator("#chatbot").get_by_text("📚 Sources")).to_have_count(sources_seen + 1, timeout=90_000)


def test_ask_see_answer_and_open_sources(page):
    _ask(page, FACT_QUESTION, 0)
    chatbot = page.locator("#chatbot")
    # The answer itself (not only its sources) says when, and cites the passage that says so.
    expect(chatbot.get_by_text(re.compile(r"Tuesday at 4 pm \[1\]")).first).to_be_visible()
    expect(chatbot.get_by_text("🔎 search_documents").first).to_be_visible()
    expect(page.locator("#context-meter")).to_contain_text("Context:")
    expect(chatbot.get_by_text("fountain.txt, lines").first).to_be_visible()
    expect(chatbot.get_by_text("quoted: line 3").first).to_be_visible()  # the fact's own line in fountain.txt
    expect(chatbot.locator("strong", has_text="Zorblax fountain in Quenville").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "answer-with-sources.png"))
    chatbot.get_by_text("📚 Sources").first.click()
    expect(chatbot.get_by_text("fountain.txt, lines").first).to_be_hidden()


def test_upload_ingest_and_ask_about_it(page, tmp_path):
    upload = tmp_path / "lighthouse.md"
    upload.write_text("# Keeper log\n\nThe Vexmoor lighthouse beam is green and turns every 9 seconds.\n"
                      "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">\n")
    page.locator("#upload-files input[type=file]").set_input_files(str(upload))
    expect(page.locator("#upload-files").get_by_text("lighthouse.md")).to_be_visible(timeout=30_000)
    page.locator("#ingest-uploads").click()
    expect(page.locator("#ingest-report")).to_contain_text("1 added", timeout=60_000)
    expect(page.locator("#index-stats")).to_contain_text("5 files")
    _ask(page, "What colour is the Vexmoor lighthouse beam?", 1)
    chatbot = page.locator("#chatbot")
    expect(chatbot.get_by_text("lighthouse.md, lines").first).to_be_visible()
    expect(chatbot.get_by_text(re.compile(r"beam is green[^.]*\[\d\]")).first).to_be_visible()
    expect(chatbot.get_by_text("<script>document.title='pwned'</script>", exact=False).first).to_be_visible()
    assert page.title() != "pwned", "document text ran as script"
    page.screenshot(path=str(ARTIFACTS / "upload-and-ask.png"))


def test_a_refusal_shows_the_closest_passages_in_the_questions_language(page):
    """In English, then in Chinese (drawn with the CJK font `make browser-deps` installs)."""
    fresh = page.context.new_page()
    fresh.goto(page.url)
    _ask(fresh, "Who wrote Moby-Dick?", 0)
    chatbot = fresh.locator("#chatbot")
    expect(chatbot.get_by_text("Not found in your documents.").first).to_be_visible()
    expect(chatbot.get_by_text(re.compile(r"📚 Sources \(none · [123] closest\)")).first).to_be_visible()
    expect(chatbot.get_by_text("No passage was relevant enough to answer from. The closest ones", exact=False)
           .first).to_be_visible()
    expect(chatbot.get_by_text(re.compile(r"\.txt, lines \d+-\d+ · relevance 0\.[0-4]\d")).first).to_be_visible()
    fresh.screenshot(path=str(ARTIFACTS / "refusal-with-closest.png"))
    _ask(fresh, "比特币是什么？", 1)
    expect(chatbot.get_by_text("比特币是什么？").first).to_be_visible()
    expect(chatbot.get_by_text("在您的文档中没有找到相关内容。").first).to_be_visible()
    expect(chatbot.get_by_text(re.compile(r"📚 Sources \(none · [123] closest\)"))).to_have_count(2)
    fresh.screenshot(path=str(ARTIFACTS / "chinese-refusal.png"))
    fresh.close()


HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> When does the Zorblax fountain spray?"


def test_a_hostile_query_in_a_step_title_is_inert(page):
    fresh = page.context.new_page()
    fresh.goto(page.url)
    _ask(fresh, HOSTILE, 0)
    chatbot = fresh.locator("#chatbot")
    expect(chatbot.get_by_text("🔎 search_documents(<img src=x onerror=", exact=False).first).to_be_visible()
    assert chatbot.locator("img[onerror]").count() == 0, "an event handler from the query reached the page"
    assert fresh.title() != "pwned", "the query ran as script"
    fresh.screenshot(path=str(ARTIFACTS / "hostile-step-title.png"))
    fresh.close()


def test_exports_are_removed_when_the_session_ends(page):
    root = Path(get_upload_folder()) / EXPORTS_FOLDER
    before = set(root.glob("*")) if root.exists() else set()
    fresh = page.context.new_page()
    fresh.goto(page.url)
    fresh.locator("#export-md").click()
    expect(fresh.locator("#export-file").get_by_text(re.compile(r"conversation-.*\.md"))).to_be_visible(timeout=30_000)
    [folder] = set(root.glob("*")) - before
    assert [file.suffix for file in folder.iterdir()] == [".md"]
    fresh.close()
    deadline = time.monotonic() + 60  # Gradio notices a closed tab at its next heartbeat (every 15 s)
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists(), "the session's export stayed on the server after its tab closed"


def test_stop_ends_a_long_answer_and_frees_the_model(page, llm, fact_index, tmp_path):
    """A long answer (1024 new tokens) is stopped with the Stop button: the text stops growing at once and the
    model is free. Its own server answers at that length in generative mode, as the page's settings say (`auto`
    answers the bundled model extractively, in an instant)."""
    settings = AgentSettings(max_steps=0, answer_mode="generative", generation=GenerationSettings(max_new_tokens=1024))
    with serve(make_catalog(fact_index, tmp_path, settings=settings), defaults=settings) as url:
        chat = page.context.new_page()
        chat.goto(url)
        _stop_a_long_answer(chat, llm)
        chat.close()


def _stop_a_long_answer(chat, llm) -> None:
    chat.locator("#chat-input textarea").fill("Write a very long essay, with many paragraphs, about the Zorblax "
                                              "fountain in Quenville and everything visitors can see there.")
    chat.locator("#chat-input textarea").press("Enter")
    stop = chat.locator("#chat-input [data-testid=stop-button]")
    expect(stop).to_be_visible(timeout=60_000)
    chatbot = chat.locator("#chatbot")
    expect(chatbot.get_by_text("search_documents").first).to_be_visible(timeout=60_000)
    before_answer = len(chatbot.inner_text())
    started = time.perf_counter()
    while len(chatbot.inner_text()) < before_answer + 40 and time.perf_counter() - started < 120:
        time.sleep(0.1)  # wait until the answer is really streaming
    stop.dispatch_event("click")  # Gradio re-renders the button as tokens stream: no waiting for it to hold still
    expect(stop).to_be_hidden(timeout=10_000)
    stopped_at = chatbot.inner_text()
    assert len(stopped_at) >= before_answer + 40, "the answer never started streaming"
    started = time.perf_counter()
    while llm.busy and time.perf_counter() - started < 10:
        time.sleep(0.05)
    assert not llm.busy, "the model was still generating 10 s after Stop"
    chat.wait_for_timeout(2000)
    assert chatbot.inner_text() == stopped_at, "the answer kept growing after Stop"
    chat.screenshot(path=str(ARTIFACTS / "stopped-answer.png"))


def test_ingest_progress_moves_in_the_page(page, tmp_path):
    """Uploading some 120 chunks (two sub-batches of 64): the page shows chunks embedded before the report."""
    upload = tmp_path / "harbour-log.txt"
    upload.write_text("\n\n".join(f"Harbour log entry {n}: the pilot boat {n % 9} guided the freighter "
                                  f"Aurora-{n} past buoy {n % 17} at {n % 24:02d}:15 in a {n % 5} knot wind."
                                  for n in range(1000)))
    page.locator("#upload-files input[type=file]").set_input_files(str(upload))
    expect(page.locator("#upload-files").get_by_text("harbour-log.txt")).to_be_visible(timeout=30_000)
    box = page.locator("#ingest-progress-box")
    page.locator("#ingest-uploads").click()
    expect(box).not_to_contain_text("done in", timeout=30_000)  # the previous upload's line is replaced
    seen: list[tuple[int, int]] = []
    started = time.perf_counter()
    while "done in" not in box.inner_text() and time.perf_counter() - started < 300:
        # all_inner_texts does not wait: the counts line may be replaced by the report between two reads
        match = COUNTS.search(" ".join(page.locator("#ingest-counts").all_inner_texts()))
        if match and (not seen or seen[-1] != (int(match[1]), int(match[2]))):
            seen.append((int(match[1]), int(match[2])))
        time.sleep(0.05)
    expect(page.locator("#ingest-report")).to_contain_text("1 added")
    assert any(0 < embedded < total for embedded, total in seen), f"no progress between start and end: {seen}"
