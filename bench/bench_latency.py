"""Search latency at 100k chunks through the product's own path, and approximate FAISS indexes at 1M vectors.

Part 1 (always): a synthetic 100k-chunk index written through the local backend (so FAISS and BM25 are the
product's), then `Retriever.search` timed per query with the real MiniLM query embedding (no LLM): p50/p95 per
mode, a breakdown of where the time goes, and the one-off warm-up (loading the FAISS and BM25 copies) of a freshly
opened index, with the dense leg's recall@10 against exact search. `--vector-index` sets the index's FAISS kind
(default: the product's `auto`), so `flat` and `auto` can be compared on the same index.
Part 2 (`--million`): vectors only, exact flat against HNSW and IVF: recall@10, latency, build time, memory.

Texts: sentences of SciFact abstracts (/work/shared/datasets/scifact, measurement only) reshuffled into chunks,
or the repo's bench/data/en_eval passages when SciFact is absent. Vectors: MiniLM embeddings of one short text per
source document (its title) used as topic centres; each chunk's vector is its centre plus gaussian noise
(cosine to the centre about 0.85), blended with a second centre for the 1M set. Embedding all 100k chunks would
take ~20 minutes on 2 cores; this keeps a realistic cluster structure for FAISS and real text for BM25.

    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_latency
    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_latency --million --skip-latency
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from bench.machine import describe_machine, load_average
from rag_app import retrieval
from rag_app.config import DEFAULT_EMBEDDER, SearchOptions
from rag_app.index import FileChunks, FileRecord, Index, IndexFacts
from rag_app.index.lexical import tokenize
from rag_app.index.local import LocalBackend
from rag_app.index.search_copies import SearchView
from rag_app.index.vectors import (
    DEFAULT_VECTOR_INDEX,
    VECTOR_INDEX_CHOICES,
    VECTOR_INDEX_KINDS,
    build_vector_index,
)
from rag_app.models.embedder import Embedder, load_embedder
from rag_app.retrieval import Retriever
from rag_app.types import Chunk, content_hash

SCIFACT = Path("/work/shared/datasets/scifact")
EN_EVAL = Path(__file__).parent / "data" / "en_eval"
GOAL_P50_MS = 30.0
GOAL_P95_MS = 60.0
SENTENCE_TEST = "sentence test (relevance gate, rag_app.retrieval)"
GOAL_RECALL = 0.95
CHUNKS_PER_FILE = 20
NOISE_COSINE = 0.85  # cosine between a synthetic chunk vector and its topic centre
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ---- machine and statistics -----------------------------------------------------------------------------------



def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def rss_bytes() -> int:
    return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmRSS"))


# ---- synthetic corpus ---------------------------------------------------------------------------------------

def load_documents() -> tuple[list[tuple[str, list[str]]], list[str], str]:
    """(title, sentences) per source document, query texts, and where they came from."""
    if (SCIFACT / "corpus.jsonl").exists():
        rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open(encoding="utf-8")]
        queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open(encoding="utf-8")]
        source = "SciFact abstracts and claims"
    else:
        rows = [json.loads(line) for line in (EN_EVAL / "corpus.jsonl").open(encoding="utf-8")]
        queries = [json.loads(line)["text"] for line in (EN_EVAL / "queries.jsonl").open(encoding="utf-8")]
        source = "bench/data/en_eval passages and queries (SciFact absent)"
    documents = [
        (row.get("title") or row["text"][:80], [s for s in _SENTENCE_END.split(row["text"]) if len(s) > 20])
        for row in rows
    ]
    return [document for document in documents if len(document[1]) >= 2], queries, source


def noisy(centres: np.ndarray, rng: np.random.Generator, cosine: float = NOISE_COSINE) -> np.ndarray:
    """Unit vectors at about `cosine` from their centres (rows of `centres`, unit length)."""
    spread = np.sqrt(1 / cosine**2 - 1) / np.sqrt(centres.shape[1])
    vectors = centres + rng.standard_normal(centres.shape, dtype=np.float32) * spread
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def topic_centres(embedder: Embedder, titles: list[str], cache: Path) -> np.ndarray:
    """MiniLM vectors of the titles, cached next to the benchmark index (embedding is the slow part)."""
    if cache.exists():
        cached = np.load(cache)
        if len(cached) == len(titles):
            return cached
    centres = embedder.embed_documents(titles)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, centres)
    return centres


def build_index(directory: Path, embedder: Embedder, documents: list[tuple[str, list[str]]],
                centres: np.ndarray, chunks: int, seed: int) -> float:
    """Write `chunks` synthetic chunks through the local backend; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    shuffle = random.Random(seed)
    started = time.perf_counter()
    store = LocalBackend.open_for_write(directory, IndexFacts(embedder.name, embedder.dimension, embedder.max_tokens))
    try:
        for first in range(0, chunks, CHUNKS_PER_FILE * 500):
            files, vectors = [], {}
            for start in range(first, min(first + CHUNKS_PER_FILE * 500, chunks), CHUNKS_PER_FILE):
                topic = int(rng.integers(len(documents)))
                count = min(CHUNKS_PER_FILE, chunks - start)
                sentences = documents[topic][1]
                texts = [
                    " ".join(shuffle.sample(sentences, min(len(sentences), shuffle.randint(4, 8))))
                    + f" [{start + ordinal}]"  # keeps every chunk distinct, as distinct files' chunks are
                    for ordinal in range(count)
                ]
                path = f"topic{topic:05d}/doc{start // CHUNKS_PER_FILE:06d}.txt"
                new = [Chunk(text, path, ordinal) for ordinal, text in enumerate(texts)]
                vectors.update(zip([chunk.content_hash for chunk in new],
                                   noisy(np.repeat(centres[topic:topic + 1], count, axis=0), rng), strict=True))
                record = FileRecord(path, sum(map(len, texts)), 0, content_hash(path), "text", count)
                files.append(FileChunks(record, new, [tokenize(text) for text in texts]))
            store.replace_files(files, vectors)
        store.finish_write()
    finally:
        store.close()
    return time.perf_counter() - started


def use_vector_index(directory: Path, embedder: Embedder, kind: str) -> None:
    """Record `kind` as the index's FAISS kind and save its copy in that kind, as `rag-ingest --vector-index` does."""
    store = LocalBackend.open_for_write(directory, IndexFacts(embedder.name, embedder.dimension, embedder.max_tokens))
    try:
        if store.meta().get("vector_index", DEFAULT_VECTOR_INDEX) != kind:
            store.update_meta({"vector_index": kind, "faiss_generation": None})
            started = time.perf_counter()
            store.finish_write()
            print(f"index: FAISS copy rebuilt as {kind!r} in {time.perf_counter() - started:.1f} s")
    finally:
        store.close()


def existing_chunks(directory: Path) -> int:
    if not Index.exists(directory):
        return 0
    store = LocalBackend.open(directory)
    try:
        return store.count_chunks()
    finally:
        store.close()


# ---- part 1: latency through the product -------------------------------------------------------------------

class Timings:
    """Seconds spent in wrapped methods, collected per query."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, owner: object, method: str, bucket: str) -> None:
        inner: Callable[..., object] = getattr(owner, method)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[bucket] = self.current.get(bucket, 0.0) + time.perf_counter() - started

        setattr(owner, method, timed)

    def take(self) -> dict[str, float]:
        taken, self.current = self.current, {}
        return taken


def load_topics(embedder: Embedder, directory: Path, topics: int) -> tuple[list, list[str], str, np.ndarray]:
    """The first `topics` documents, query texts, their source and the documents' cached topic centres."""
    documents, queries, source = load_documents()
    documents = documents[:topics]
    centres = topic_centres(embedder, [title for title, _ in documents],
                            directory.parent / f"{directory.name}-centres.npy")
    return documents, queries, source, centres


def ensure_index(directory: Path, embedder: Embedder, chunks: int = 100_000, topics: int = 1500,
                 seed: int = 7) -> list[str]:
    """The synthetic index of `chunks` chunks at `directory`, reused when it is there; the query texts."""
    documents, queries, source, centres = load_topics(embedder, directory, topics)
    print(f"data: {source}; {len(documents)} topic centres embedded with {embedder.name}")
    if existing_chunks(directory) == chunks:
        print(f"index: reusing {directory} ({chunks} chunks)")
    else:
        seconds = build_index(directory, embedder, documents, centres, chunks, seed)
        print(f"index: wrote {chunks} chunks through the local backend in {seconds:.1f} s")
    return queries


def measure_latency(args: argparse.Namespace) -> None:
    embedder = load_embedder(DEFAULT_EMBEDDER)
    directory = Path(args.index_dir)
    queries = ensure_index(directory, embedder, args.chunks, args.topics, args.seed)
    use_vector_index(directory, embedder, args.vector_index)
    index = Index.open(directory, embedder)
    started = time.perf_counter()
    view = index.backend.copies.view()
    print(f"warm-up (once per index generation, first search after opening): loading the saved FAISS and BM25 "
          f"copies {time.perf_counter() - started:.1f} s; FAISS holds {view.vectors.ntotal} vectors")
    picked = random.Random(args.seed).sample(queries, min(args.queries, len(queries)))
    print_dense_recall(index, view, embedder, picked)

    timings = Timings()
    for owner, method, bucket in ((SearchView, "dense", "FAISS search"), (SearchView, "lexical_hits", "BM25 search"),
                                  (index.backend, "chunks", "SQLite chunk fetch"),
                                  (index.backend, "known_vectors", "SQLite vector fetch (relevance, near-duplicates)"),
                                  (embedder, "embed_query", "query embedding"),
                                  (retrieval, "sentence_cosine", SENTENCE_TEST)):
        timings.wrap(owner, method, bucket)
    retriever = Retriever(index)
    for query in picked[:5]:
        retriever.search(query, SearchOptions(k=5))
    timings.take()

    print(f"\nRetriever.search, k=5, {len(picked)} queries, query embedding included, no LLM; "
          f"goals: hybrid p50 <= {GOAL_P50_MS:.0f} ms, p95 <= {GOAL_P95_MS:.0f} ms")
    hybrid_p50 = 0.0
    for mode in ("hybrid", "dense", "lexical"):
        totals, parts = [], []
        for query in picked:
            started = time.perf_counter()
            retriever.search(query, SearchOptions(k=5, mode=mode))
            totals.append(time.perf_counter() - started)
            parts.append(timings.take())
        p50, p95 = percentiles(totals)
        hybrid_p50 = hybrid_p50 or p50
        ratio = f"  = {p50 / GOAL_P50_MS:.2f}x / {p95 / GOAL_P95_MS:.2f}x the goals" if mode == "hybrid" else ""
        print(f"  {mode:8s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms{ratio}  (load {load_average()})")
        tested = sum(SENTENCE_TEST in part for part in parts)
        untested_p50, untested_p95 = percentiles([total - part.get(SENTENCE_TEST, 0.0)
                                                  for total, part in zip(totals, parts, strict=True)])
        print(f"      without the sentence test (run for {tested} of {len(totals)} queries): "
              f"p50 {untested_p50:7.1f} ms  p95 {untested_p95:7.1f} ms")
        buckets = sorted({bucket for part in parts for bucket in part})
        rest = [total - sum(part.values()) for total, part in zip(totals, parts, strict=True)]
        for bucket, values in [*((b, [part.get(b, 0.0) for part in parts]) for b in buckets),
                               ("fusion, filters, dedupe, term coverage, merge", rest)]:
            b50, b95 = percentiles(values)
            print(f"      {bucket:48s} p50 {b50:7.1f} ms  p95 {b95:7.1f} ms")

    reembed = []
    for query in picked[: args.reembed_queries]:
        texts = [source.text for source in retriever.search(query, SearchOptions(k=10, merge_neighbours=False))]
        started = time.perf_counter()
        embedder.embed_documents(texts)
        reembed.append(time.perf_counter() - started)
    p50, p95 = percentiles(reembed)
    print(f"  isolated: re-embedding the top 10 passages for relevance (the previous retrieval.py), "
          f"{len(reembed)} queries: p50 {p50:.1f} ms, p95 {p95:.1f} ms = {p50 / hybrid_p50:.1f}x today's whole "
          "hybrid search")
    index.close()


def print_dense_recall(index: Index, view: SearchView, embedder: Embedder, queries: list[str], k: int = 10) -> None:
    """The kind of FAISS copy the index searches and its recall@k against exact search over the same vectors."""
    ids, matrix = index.backend.all_vectors()
    exact = build_vector_index(matrix, ids, matrix.shape[1], "flat")
    vectors = np.vstack([embedder.embed_query(query) for query in queries]).astype(np.float32)
    found, truth = view.vectors.search(vectors, k)[1], exact.search(vectors, k)[1]
    kind = type(faiss.downcast_index(view.vectors.index)).__name__
    print(f"dense leg: FAISS {kind}, recall@{k} against exact search {recall_at(found, truth):.3f} "
          f"({len(queries)} queries)")


# ---- part 2: approximate indexes at 1M vectors ----------------------------------------------------------------

def clustered_vectors(centres: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Each vector: a topic centre blended with a second one (weight 0.35), plus noise; unit length."""
    rng = np.random.default_rng(seed)
    result = np.empty((size, centres.shape[1]), dtype=np.float32)
    for start in range(0, size, 100_000):
        count = min(100_000, size - start)
        blend = centres[rng.integers(len(centres), size=count)] + 0.35 * centres[rng.integers(len(centres), size=count)]
        blend /= np.linalg.norm(blend, axis=1, keepdims=True)
        result[start:start + count] = noisy(blend, rng)
    return result


def one_at_a_time(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Search query by query, as the product does; returns the ids and each query's seconds."""
    found, seconds = np.empty((len(queries), k), dtype=np.int64), []
    for row, query in enumerate(queries):
        started = time.perf_counter()
        found[row] = index.search(query.reshape(1, -1), k)[1][0]
        seconds.append(time.perf_counter() - started)
    return found, seconds


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def measure_ann(args: argparse.Namespace) -> None:
    embedder = load_embedder(DEFAULT_EMBEDDER)
    _, query_texts, source, centres = load_topics(embedder, Path(args.index_dir), args.topics)
    database = clustered_vectors(centres, args.size, args.seed)
    ids = np.arange(args.size, dtype=np.int64)
    picked = random.Random(args.seed).sample(query_texts, min(args.ann_queries, len(query_texts)))
    query_sets = {
        f"real queries ({source.split(' and ')[-1].split(' (')[0]}, MiniLM)": embedder.embed_documents(picked),
        "held-out synthetic vectors": clustered_vectors(centres, args.ann_queries, args.seed + 1),
    }
    print(f"\n{args.size} vectors of dimension {database.shape[1]} ({database.nbytes / 2**30:.2f} GiB): "
          f"{len(centres)} MiniLM topic centres, pairwise blended, plus noise")
    exact = build_vector_index(database, ids, database.shape[1], "flat")
    truths = {name: exact.search(vectors, 10)[1] for name, vectors in query_sets.items()}
    del exact
    sweeps = {"flat": ("exact", [""]), "hnsw": ("efSearch", [16, 32, 64, 128, 256]),
              "ivf": ("nprobe", [4, 8, 16, 32, 64, 128])}
    flat_p50: dict[str, float] = {}
    for kind in dict.fromkeys(["flat", *args.kinds.split(",")]):  # flat first: the baseline
        before = rss_bytes()
        started = time.perf_counter()
        index = build_vector_index(database, ids, database.shape[1], kind)
        built = time.perf_counter() - started
        size = len(faiss.serialize_index(index))
        grown = (rss_bytes() - before) / 2**20
        print(f"\n{kind}: build {built:.1f} s, serialized {size / 2**20:.0f} MiB, RSS +{grown:.0f} MiB")
        parameter, values = sweeps[kind]
        inner = faiss.downcast_index(index.index)
        for value in values:
            if kind == "hnsw":
                inner.hnsw.efSearch = value
            elif kind == "ivf":
                inner.nprobe = value
            line = []
            for name, vectors in query_sets.items():
                found, seconds = one_at_a_time(index, vectors, 10)
                p50, p95 = percentiles(seconds)
                flat_p50.setdefault(name, p50)
                line.append(f"{name}: recall@10 {recall_at(found, truths[name]):.3f}, "
                            f"p50 {p50:.2f} ms ({flat_p50[name] / p50:.1f}x faster than flat), p95 {p95:.2f} ms")
            print(f"  {parameter} {value}: " + "; ".join(line))
        del index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the latency index")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per mode")
    parser.add_argument("--reembed-queries", type=int, default=30,
                        help="queries for the isolated cost of re-embedding the top 10 passages")
    parser.add_argument("--topics", type=int, default=1500, help="source documents whose titles become centres")
    parser.add_argument("--index-dir", default="/tmp/rag_bench_latency/index-100k")
    parser.add_argument("--vector-index", choices=VECTOR_INDEX_CHOICES, default=DEFAULT_VECTOR_INDEX,
                        help="the FAISS kind of the latency index (default: the product's default)")
    parser.add_argument("--skip-latency", action="store_true", help="only the approximate-index part")
    parser.add_argument("--million", action="store_true", help="also compare flat, HNSW and IVF on --size vectors")
    parser.add_argument("--size", type=int, default=1_000_000, help="vectors for --million")
    parser.add_argument("--ann-queries", type=int, default=200, help="queries for recall@10 with --million")
    parser.add_argument("--kinds", default="ivf",
                        help=f"approximate indexes for --million besides flat, from {VECTOR_INDEX_KINDS}")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if unknown := set(args.kinds.split(",")) - set(VECTOR_INDEX_KINDS):
        parser.error(f"unknown --kinds {sorted(unknown)}: choose from {', '.join(VECTOR_INDEX_KINDS)}")
    print(f"machine: {describe_machine()}")
    if not args.skip_latency:
        measure_latency(args)
    if args.million:
        measure_ann(args)


if __name__ == "__main__":
    main()
