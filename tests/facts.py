"""The made-up fact and its distractors that the shared test corpus holds, and a helper to index small corpora."""

from __future__ import annotations

from pathlib import Path

FACT = "The Zorblax fountain in Quenville sprays purple water every Tuesday at 4 pm."
FACT_QUESTION = "When does the Zorblax fountain in Quenville spray purple water?"
DISTRACTORS = {
    "bread.md": "# Baking bread\n\nKnead the dough for ten minutes. Let it rise until doubled, then bake at 220 C.\n",
    "rivers.txt": "The Danube flows through ten countries and ends in the Black Sea.\n",
    "python.md": "# Python\n\nPython lists are mutable sequences. Tuples are immutable.\n",
}


def ingest_files(tmp_path_factory, name: str, files: dict[str, str], embedder, location=None) -> Path:
    """Write `files` into a fresh folder, ingest it into a fresh index (or `location`), and return the index's
    location."""
    from ingest.pipeline import ingest

    corpus = tmp_path_factory.mktemp(name)
    for file_name, text in files.items():
        (corpus / file_name).write_text(text, encoding="utf-8")
    index = location or tmp_path_factory.mktemp(f"{name}_index") / "index"
    assert ingest([corpus], index, embedder).ok
    return index


def record_embeddings(monkeypatch, embedder) -> list[str]:
    """The texts `embedder` embeds as documents from now on (until the test ends), in order."""
    embedded: list[str] = []
    embed_documents = embedder.embed_documents

    def recording(texts: list[str]):
        embedded.extend(texts)
        return embed_documents(texts)

    monkeypatch.setattr(embedder, "embed_documents", recording)
    return embedded
