"""Ten real gradio_client sessions at once: each conversation holds its own made-up fact and none of the others'."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file

from tests.facts import FACT_QUESTION
from tests.test_ui_handlers import make_catalog, serve

CODE_WORDS = [f"{animal}-{number}" for animal, number in zip(
    ["quokka", "narwhal", "axolotl", "pangolin", "okapi", "tapir", "wombat", "capybara", "ibex", "marmot"],
    range(311, 321), strict=True)]


@pytest.fixture(scope="module")
def server(fact_index, embedder, llm, tmp_path_factory):
    with serve(make_catalog(fact_index, tmp_path_factory.mktemp("ui_concurrency"))) as url:
        yield url


def _session(url: str, word: str) -> tuple[str, dict, dict]:
    client = Client(url, verbose=False)
    client.predict(f"Please remember that my code word is {word}.", max_new_tokens=8, api_name="/chat")
    _, _, details = client.predict(FACT_QUESTION, max_new_tokens=8, api_name="/chat")
    with open(client.predict(api_name="/export_json"), encoding="utf-8") as exported:
        return word, details, json.load(exported)


def test_ten_sessions_keep_their_own_history(server):
    with ThreadPoolExecutor(max_workers=len(CODE_WORDS)) as pool:
        results = list(pool.map(lambda word: _session(server, word), CODE_WORDS))
    for word, details, exported in results:
        others = [other for other in CODE_WORDS if other != word]
        replayed = json.dumps(details["history"])
        assert word in replayed, "the second turn must replay the session's first turn"
        assert not [other for other in others if other in replayed], f"session {word} saw another's history"
        assert [turn["question"] for turn in exported["turns"]] == [
            f"Please remember that my code word is {word}.", FACT_QUESTION]
        assert not [other for other in others if other in json.dumps(exported)]
        assert exported["turns"][1]["details"]["sources"][0]["path"].endswith("fountain.txt")


def test_chat_needs_only_the_message_and_new_uploads_are_searchable(server, tmp_path):
    client = Client(server, verbose=False)
    upload = tmp_path / "lighthouse.md"
    upload.write_text("# Keeper log\n\nThe Vexmoor lighthouse beam is green and turns every 9 seconds.\n"
                      "<script>document.title='pwned'</script>\n")
    _, report_text, report, stats = client.predict([handle_file(str(upload))], api_name="/ingest_uploads")
    assert "Ingested" in report_text and report["counts"]["added"] == 1, report_text
    assert "5 files" in stats
    messages, meter_text, details = client.predict("What colour is the Vexmoor lighthouse beam?", api_name="/chat")
    sources = messages[-1]["content"]
    assert "lighthouse.md" in sources and details["sources"][0]["file"].endswith("lighthouse.md")
    assert "&lt;script&gt;" in sources and "<script" not in sources
    assert meter_text.startswith("Context: ")
