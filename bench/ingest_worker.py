"""One timed ingest in a fresh process, for bench_ingest: models loaded and warmed first, then only the work timed.

    python bench/ingest_worker.py ours FOLDER EMBEDDER          # first ingest, re-ingest, embedding only
    python bench/ingest_worker.py langchain FOLDER EMBEDDER     # LangChain build, then its rebuild

Run as a file so that PYTHONPATH picks the tree: with an older checkout first on PYTHONPATH, `ours` times that
checkout's pipeline (it uses only `ingest.pipeline.ingest` and `load_embedder`, which every version has).
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")


def timed(action):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def warm_up_folder(scratch: Path) -> Path:
    """A one-file folder: a pipeline's first run over it imports and warms what it loads lazily (its index and
    search libraries), which every later run in the process reuses, so that work stays out of the timed region."""
    folder = scratch / "warm-up"
    folder.mkdir()
    (folder / "warm-up.txt").write_text("Warm up the pipeline. 预热流水线。\n", encoding="utf-8")
    return folder


def ours(folder: Path, embedder_name: str) -> dict[str, float | int]:
    """Our pipeline: first ingest, re-ingest of the unchanged folder, and embedding only the stored chunk texts."""
    from ingest.pipeline import ingest
    from rag_app.models.embedder import load_embedder

    embedder = load_embedder(embedder_name)
    embedder.embed_documents(["warm up the model", "预热模型"])
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        ingest([warm_up_folder(Path(scratch))], Path(scratch) / "warm-up-index", embedder)
        index = Path(scratch) / "index"
        first_s, first = timed(lambda: ingest([folder], index, embedder))
        again_s, again = timed(lambda: ingest([folder], index, embedder))
        with sqlite3.connect(index / "store.sqlite3") as db:
            texts = list(dict.fromkeys(row[0] for row in db.execute("SELECT text FROM chunks ORDER BY id")))
        embed_s, _ = timed(lambda: embedder.embed_documents(texts))
    return {"first_s": first_s, "again_s": again_s, "embed_s": embed_s, "chunks": first.chunks_written,
            "embedded": first.chunks_embedded, "again_embedded": again.chunks_embedded,
            "tokens": sum(embedder.count_tokens(text) for text in texts)}


def langchain(folder: Path, embedder_name: str) -> dict[str, float | int]:
    """The plain LangChain pipeline on the same files with the same embedder, chunk size and overlap: build, then
    its only way to take changes, a full rebuild."""
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.pipeline import default_chunk_tokens
    from rag_app.integrations import RagEmbeddings
    from rag_app.models.embedder import load_embedder

    embedder = load_embedder(embedder_name)
    embeddings = RagEmbeddings(embedder=embedder)
    embeddings.embed_documents(["warm up the model", "预热模型"])
    splitter = RecursiveCharacterTextSplitter(chunk_size=default_chunk_tokens(embedder), chunk_overlap=32,
                                              length_function=embedder.count_tokens)

    def build(source: Path = folder) -> int:
        documents = DirectoryLoader(str(source), glob="**/*.*", loader_cls=TextLoader,
                                    loader_kwargs={"encoding": "utf-8"}).load()
        chunks = splitter.split_documents(documents)
        FAISS.from_documents(chunks, embeddings)
        return len(chunks)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        build(warm_up_folder(Path(scratch)))
    build_s, chunks = timed(build)
    rebuild_s, _ = timed(build)
    return {"build_s": build_s, "rebuild_s": rebuild_s, "chunks": chunks}


if __name__ == "__main__":
    kind, folder, embedder_name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    print(json.dumps({"ours": ours, "langchain": langchain}[kind](folder, embedder_name)))
