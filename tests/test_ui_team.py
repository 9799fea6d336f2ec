"""A team on one app, over HTTP (real Gradio server, gradio_client sessions, real models and FAISS): uploads of the
same name never collide, indexes are created, used and deleted by name, and documents are removed from an index."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.test_ui_handlers import make_catalog, serve

EXTRACTIVE = {"answer_mode": "extractive", "max_steps": 0}


@pytest.fixture(scope="module")
def team(fact_index, embedder, llm, tmp_path_factory):
    catalog = make_catalog(fact_index, tmp_path_factory.mktemp("ui_team"))
    with serve(catalog) as url:
        yield url, catalog


def _upload(client: Client, path: Path, index: str | None = None) -> dict:
    _, text, report, _ = client.predict([handle_file(str(path))], index, api_name="/ingest_uploads")
    assert "Ingested" in text, text
    return report


def _ask(client: Client, question: str, index: str | None = None) -> dict:
    *_, details = client.predict(question, index=index, api_name="/chat", **EXTRACTIVE)
    return details


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_two_users_upload_the_same_file_name_and_keep_both(team, tmp_path):
    url, catalog = team
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    _upload(alice, _write(tmp_path / "alice", "minutes.md", "# Minutes\n\nThe Ostrava kiln fires at 1240 degrees.\n"))
    _upload(bob, _write(tmp_path / "bob", "minutes.md", "# Minutes\n\nThe Brindle barge carries 80 tonnes of salt.\n"))
    stored = sorted((catalog.path(None) / "uploads").glob("*/minutes.md"))
    assert len(stored) == 2, "the second upload of minutes.md overwrote the first"
    for client, question, fact in [(alice, "At what temperature does the Ostrava kiln fire?", "1240 degrees"),
                                   (bob, "How much salt does the Brindle barge carry?", "80 tonnes")]:
        details = _ask(client, question)
        assert fact in details["text"], details["text"]
        assert Path(details["sources"][0]["file"]).name == "minutes.md"
        assert details["sources"][0]["location"].split(",")[0].endswith("/minutes.md")


def test_an_index_is_created_used_and_deleted_by_name(team, tmp_path):
    url, catalog = team
    client = Client(url, verbose=False)
    for bad, why in [("../etc", "not a valid index name"), ("two words", "not a valid index name"),
                     ("", "not a valid index name"), ("facts", "exists already")]:
        with pytest.raises(Exception, match=why):
            client.predict(bad, api_name="/create_index")
    picked, stats, _ = client.predict("team-orbit", api_name="/create_index")
    assert picked["value"] == "team-orbit" and "team-orbit" in str(picked["choices"]) and "0 files" in stats
    _upload(client, _write(tmp_path, "orbit.md", "# Orbit\n\nThe Pellucid satellite circles Mars every 7 hours.\n"),
            "team-orbit")
    question = "How often does the Pellucid satellite circle Mars?"
    details = _ask(Client(url, verbose=False), question, "team-orbit")  # another session picks it by name
    assert "every 7 hours" in details["text"] and details["sources"][0]["file"].endswith("orbit.md")
    assert not [s for s in _ask(client, question, "facts")["sources"] if s["file"].endswith("orbit.md")]
    with pytest.raises(Exception, match="cannot be deleted"):
        client.predict("facts", api_name="/delete_index")
    picked, _, _ = client.predict("team-orbit", api_name="/delete_index")
    assert picked["value"] == "facts" and "team-orbit" not in str(picked["choices"]) + str(catalog.names())
    assert not (catalog.root / "team-orbit").exists()
    with pytest.raises(Exception, match="no index named 'team-orbit'"):
        _ask(client, question, "team-orbit")


def test_a_document_is_removed_from_an_index(team, tmp_path):
    url, catalog = team
    client = Client(url, verbose=False)
    _upload(client, _write(tmp_path, "ferry.md", "# Ferry\n\nThe Quillon ferry leaves pier 12 at dawn.\n"))
    question = "Which pier does the Quillon ferry leave from?"
    source = _ask(client, question)["sources"][0]["file"]
    assert source.endswith("ferry.md")
    with pytest.raises(Exception, match="holds no document"):
        client.predict(None, "/etc/passwd", api_name="/remove_document")
    stats, _ = client.predict(None, source, api_name="/remove_document")
    assert source not in catalog.documents(None) and not Path(source).exists()
    details = _ask(client, question)
    assert not [s for s in details["sources"] if s["file"].endswith("ferry.md")] and "pier 12" not in details["text"]
