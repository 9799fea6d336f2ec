"""Ingest throughput and overhead: our pipeline vs embedding alone vs a plain LangChain pipeline, in one run.

For SciFact (one file per abstract) and a generated Chinese corpus of the same size, prints chunks/s, the
ratio of the whole ingest to embedding only the same chunk texts, re-ingest of the unchanged corpus as a
fraction of the first ingest, and both ingests as a ratio of LangChain's (DirectoryLoader/TextLoader +
RecursiveCharacterTextSplitter + HuggingFaceEmbeddings + FAISS.from_documents; it has no incremental mode,
so its re-ingest is a full rebuild, the same work as its first build).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_ingest            # full: 5,183 files per corpus
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_ingest --limit 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from bench.machine import describe_machine
from ingest.pipeline import ingest
from rag_app.index.sqlite_store import STORE_NAME
from rag_app.models.embedder import SentenceTransformerEmbedder, bundled_minilm_path

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = Path("/work/shared/datasets/scifact/corpus.jsonl")
ZH_SOURCE = ROOT / "bench" / "data" / "zh_eval" / "corpus.jsonl"
CORPUS_SIZE = 5183
_ZH_SENTENCE = re.compile(r"[^。！？]+[。！？]")




def write_scifact(folder: Path, limit: int) -> None:
    with SCIFACT.open(encoding="utf-8") as stream:
        for _, line in zip(range(limit), stream, strict=False):
            record = json.loads(line)
            (folder / f"{record['_id']}.txt").write_text(f"{record['title']}\n\n{record['text']}", encoding="utf-8")


def write_chinese(folder: Path, limit: int) -> None:
    """Plausible Chinese documents: a title and 3-8 sentences recombined from the hand-written zh_eval passages."""
    records = [json.loads(line) for line in ZH_SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = [sentence for record in records for sentence in _ZH_SENTENCE.findall(record["text"])]
    titles = [record["title"] for record in records]
    rng = random.Random(0)
    for n in range(limit):
        body = "".join(rng.sample(sentences, rng.randint(3, 8)))
        (folder / f"zh-{n:05d}.txt").write_text(f"{rng.choice(titles)}\n\n{body}", encoding="utf-8")


def timed(action: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def stored_chunk_texts(index: Path) -> list[str]:
    """The distinct chunk texts our pipeline embedded, in the order it stored them."""
    with sqlite3.connect(index / STORE_NAME) as db:
        rows = db.execute("SELECT text FROM chunks ORDER BY id").fetchall()
    return list(dict.fromkeys(row[0] for row in rows))


def langchain_build(folder: Path, embedder: SentenceTransformerEmbedder) -> int:
    """The plain LangChain pipeline on the same files, embedder, chunk size (in its tokens) and batch size."""
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    documents = DirectoryLoader(str(folder), glob="*.txt", loader_cls=TextLoader,
                                loader_kwargs={"encoding": "utf-8"}).load()
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        embedder.tokenizer, chunk_size=embedder.max_tokens, chunk_overlap=32
    )
    chunks = splitter.split_documents(documents)
    embeddings = HuggingFaceEmbeddings(model_name=str(bundled_minilm_path()), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"batch_size": embedder.batch_size,
                                                      "normalize_embeddings": True})
    FAISS.from_documents(chunks, embeddings)
    return len(chunks)


def bench_corpus(name: str, write: Callable[[Path, int], None], limit: int,
                 embedder: SentenceTransformerEmbedder, skip_langchain: bool) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{name}-") as scratch:
        folder, index = Path(scratch) / "files", Path(scratch) / "index"
        folder.mkdir()
        write(folder, limit)
        first_s, first = timed(lambda: ingest([folder], index, embedder))
        again_s, again = timed(lambda: ingest([folder], index, embedder))
        texts = stored_chunk_texts(index)
        embed_s, _ = timed(lambda: embedder.embed_documents(texts))
        assert again.chunks_embedded == 0 and len(again.unchanged) == limit, "re-ingest was not a no-op"
        print(f"\n== {name}: {limit} files, {first.chunks_written} chunks ({first.chunks_embedded} embedded), "
              f"{len(first.skipped)} skipped")
        print(f"first ingest        {first_s:8.1f} s   {first.chunks_written / first_s:7.1f} chunks/s")
        print(f"embedding only      {embed_s:8.1f} s   (the same {len(texts)} chunk texts, "
              f"batch {embedder.batch_size})")
        print(f"ingest / embed      {first_s / embed_s:8.3f}     (goal <= 1.10)")
        print(f"re-ingest unchanged {again_s:8.2f} s   {again_s / first_s:.4f} of the first ingest (goal <= 0.02)")
        if skip_langchain:
            return
        langchain_s, langchain_chunks = timed(lambda: langchain_build(folder, embedder))
        print(f"LangChain build     {langchain_s:8.1f} s   ({langchain_chunks} chunks)")
        print(f"ours / LangChain    {first_s / langchain_s:8.3f}     first ingest (goal <= 1.0)")
        print(f"ours / LangChain    {again_s / langchain_s:8.4f}     re-ingest (LangChain rebuilds everything)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=CORPUS_SIZE, help="files per corpus (default: %(default)s)")
    parser.add_argument("--corpus", choices=("scifact", "zh", "both"), default="both")
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain baseline")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    embedder = SentenceTransformerEmbedder(device="cpu")
    embedder.embed_documents(["warm up the model"])
    print(describe_machine())
    print(f"embedder {embedder.name} (dim {embedder.dimension}, window {embedder.max_tokens}, "
          f"batch {embedder.batch_size})")
    if args.corpus in ("scifact", "both"):
        bench_corpus("SciFact", write_scifact, min(args.limit, CORPUS_SIZE), embedder, args.no_langchain)
    if args.corpus in ("zh", "both"):
        bench_corpus("Chinese (generated)", write_chinese, args.limit, embedder, args.no_langchain)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (the CPU is shared: compare ratios, not seconds)")


if __name__ == "__main__":
    main()
