"""The UI handlers over real models and a real index: streaming, per-turn details, ingestion seen without restart."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rag_app.config import AgentSettings, GenerationSettings, IngestOptions, ModelSettings
from rag_app.types import relevance_label
from rag_app.ui.app import UIOptions, build_app, launch
from rag_app.ui.chat import chat_inputs, make_respond
from rag_app.ui.indexes import IndexCatalog, UnknownIndexError, run_ingest, save_uploads
from rag_app.ui.security import AllowedRoots
from tests.facts import FACT, FACT_QUESTION

FAST = AgentSettings(max_steps=0).with_overrides(max_new_tokens=12)


def make_catalog(fact_index: Path, tmp: Path, models: ModelSettings | None = None,
                 settings: AgentSettings | None = None) -> IndexCatalog:
    """A catalogue over a private copy of the shared fact index (ingesting must not change the session fixture);
    short answers unless `settings` say otherwise."""
    root = tmp / "indexes"
    shutil.copytree(fact_index, root / "facts", ignore=shutil.ignore_patterns("*.lock"))
    settings = settings or AgentSettings(max_steps=0, generation=GenerationSettings(max_new_tokens=12, seed=0))
    return IndexCatalog(root, root / "facts", models or ModelSettings(device="cpu"), settings)


@contextmanager
def serve(catalog: IndexCatalog, allowed_root: Path | None = None, port: int = 0, **options: Any) -> Iterator[str]:
    """The UI served in this process (the session's models are reused), closed afterwards; `options` override
    the UIOptions fields."""
    if not port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    options = UIOptions(**{"concurrency": 2, "defaults": FAST, "max_upload_mb": 1,
                           "allowed_roots": AllowedRoots([allowed_root] if allowed_root else []), **options})
    app = launch(build_app(catalog, options), host="127.0.0.1", port=port, share=False, auth=None,
                 max_upload_mb=1, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def catalog(fact_index, embedder, llm, tmp_path_factory) -> IndexCatalog:
    return make_catalog(fact_index, tmp_path_factory.mktemp("ui_handlers"))


def test_respond_streams_steps_tokens_then_answer_with_sources(catalog):
    respond = make_respond(catalog, FAST)
    updates = list(respond(FACT_QUESTION, [], *chat_inputs(FAST, max_new_tokens=12, max_steps=0)))
    first_messages = updates[0][0]
    assert first_messages[0]["metadata"]["title"].startswith("🔎")
    assert len(updates) >= 3, "tokens must stream before the final answer"
    messages, meter_text, details, answers = updates[-1]
    assert messages[-1]["metadata"]["title"].startswith("📚 Sources")
    assert "fountain.txt" in messages[-1]["content"]
    assert meter_text.startswith("Context: ") and "tokens" in meter_text
    assert details["sources"][0]["file"].endswith("fountain.txt") and details["history"] == []
    assert list(answers.values())[0]["sources"][0]["path"].endswith("fountain.txt")


def test_the_relevance_threshold_a_refusal_names_answers_from_its_closest_passage(catalog):
    """The UI's Relevance threshold setting: above the fact passage's relevance the question is refused with the
    passage among the closest; at the value the refusal names, it is answered from that passage."""
    respond = make_respond(catalog, FAST)
    *_, (messages, _, refused, _) = respond(FACT_QUESTION, [], *chat_inputs(FAST, min_relevance=0.99, max_steps=0))
    assert refused["abstained"] and refused["closest"][0]["file"].endswith("fountain.txt")
    assert f"**{FACT}**" in messages[-1]["content"], "the closest passage's answering sentence is in bold"

    threshold = float(relevance_label(refused["closest"][0]["relevance"]))
    *_, (_, _, answered, _) = respond(FACT_QUESTION, [], *chat_inputs(FAST, min_relevance=threshold, max_steps=0))
    assert not answered["abstained"] and "Tuesday" in answered["text"]


def test_respond_replays_only_the_history_it_is_given(catalog):
    history = [{"role": "user", "content": "My code word is quokka-77."},
               {"role": "assistant", "content": "Noted \\*"}]
    *_, (_, _, details, _) = make_respond(catalog, FAST)(FACT_QUESTION, history, *chat_inputs(FAST, max_new_tokens=8))
    assert details["history"] == [{"role": "user", "content": "My code word is quokka-77."},
                                  {"role": "assistant", "content": "Noted *"}]
    assert details["prompt_tokens"] > 0


def test_uploaded_file_is_searchable_by_the_open_agent(catalog, tmp_path):
    agent = catalog.agent(None)
    upload = tmp_path / "moon_base.txt"
    upload.write_text("The moon base Tycho-9 grows blue tomatoes in crater greenhouses.\n")
    saved = save_uploads([upload], catalog.path(None))
    events = list(run_ingest(saved, catalog.index(None), IngestOptions()))
    progress = [event for event, report in events if event is not None]
    report = events[-1][1]
    assert report is not None and report.ok and report.added == [str(saved[0].resolve())]
    assert progress and progress[-1].files_done == progress[-1].files_total == 1
    assert agent.search("Which moon base grows blue tomatoes?")[0].path.endswith("moon_base.txt")
    assert "5 files" in catalog.stats_markdown(None)


def test_catalog_knows_indexes_by_name_only(catalog):
    assert catalog.names() == ["facts"]
    with pytest.raises(UnknownIndexError, match="no index named '/etc'"):
        catalog.path("/etc")
