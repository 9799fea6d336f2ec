"""Session-wide real models, a small real corpus with a made-up fact, and its real index."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from tests.facts import DISTRACTORS, FACT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAG_APP_HOME", str(Path(tempfile.gettempdir()) / "rag_app-test-home"))



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
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings, GenerationSettings

    settings = AgentSettings(max_steps=1, generation=GenerationSettings(max_new_tokens=40, seed=0))
    return RagAgent(fact_index_open, llm, settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
