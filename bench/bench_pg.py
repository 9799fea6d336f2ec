"""The PostgreSQL backend against the local one, in one run: quality, ingest and migration time, query latency.

1. Quality: a local SciFact index (built by rag-eval's rule if --scifact-index holds none: ~20 min of embedding on
   2 cores) is copied into PostgreSQL with `copy_index` (the migration; nothing re-embedded), then both are scored
   by rag_app.evaluation on SciFact train: nDCG@10 and p50/p95 per mode.
2. Ingest: the same --ingest-docs abstracts, written as files, ingested into a new index of each backend.
3. Latency at 100k chunks: a synthetic local index (bench_latency's: SciFact sentences, MiniLM topic centres plus
   noise, reused from --large-index when present) is copied into PostgreSQL; Retriever.search p50/p95 per mode,
   with the real query embedding, over SciFact claims.
4. Fidelity (`--parts fidelity`, on part 3's copy): how much of exact BM25's lexical top 10 the probed form (and
   the rescored form before it, and the probed form with other candidate counts) finds at 100k chunks, and the
   statement's time for each.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python -m bench.bench_pg --scifact-index /tmp/scifact-index \\
        --large-index /tmp/rag_bench_latency/index-100k --limit 200 [--pg-dir /tmp/rag-pg-bench]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.bench_latency import SCIFACT, ensure_index
from bench.machine import describe_machine
from ingest.pipeline import ingest
from rag_app.config import SearchOptions
from rag_app.evaluation import evaluate, load_beir, open_or_build, percentile, write_documents
from rag_app.index import Index, copy_index, pg_sql
from rag_app.index.backend import SearchRequest
from rag_app.index.pg_server import LocalPostgres
from rag_app.models.embedder import load_embedder
from rag_app.retrieval import ROWS_PER_PASSAGE, Retriever

MODES = ("dense", "lexical", "hybrid")
# Server settings for 2 shared cores: no parallel query, memory for HNSW builds, durability off (throwaway data).
BENCH_SETTINGS = {
    "shared_buffers": "1GB", "work_mem": "64MB", "maintenance_work_mem": "1GB", "effective_cache_size": "4GB",
    "max_parallel_workers_per_gather": "0", "max_parallel_maintenance_workers": "1", "random_page_cost": "1.1",
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_wal_size": "8GB",
}


def timed_copy(source: Path, target: str) -> float:
    """Copy a local index into PostgreSQL with copy_index and print how long it took."""
    began = time.perf_counter()
    report = copy_index(source, target)
    seconds = time.perf_counter() - began
    print(f"  copy {source} -> PostgreSQL: {report.files} files, {report.chunks} chunks in {seconds:.1f} s "
          f"({report.chunks / seconds:.0f} chunks/s, nothing embedded)  [load {describe_load()}]")
    return seconds


def describe_load() -> str:
    """The load average, printed next to every figure."""
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def quality(args: argparse.Namespace, url: str) -> None:
    """Part 1: nDCG@10 per mode on SciFact train, local against its copy in PostgreSQL."""
    corpus = load_beir(SCIFACT, "train")
    local, names, seconds = open_or_build(corpus, args.scifact_index, "all-MiniLM-L6-v2", "cpu")
    print(f"\n## Quality: SciFact train ({len(corpus.judged_queries())} judged queries, "
          f"{local.stats()['chunks']} chunks; local index {f'built in {seconds:.0f} s' if seconds else 'reused'})")
    local.close()
    timed_copy(args.scifact_index, url)
    print("| backend | mode | nDCG@10 | recall@100 | p50 ms | p95 ms |\n|---|---|---|---|---|---|")
    scores: dict[tuple[str, str], float] = {}
    for name, location in (("local", args.scifact_index), ("postgresql", url)):
        with Index.open(location, "all-MiniLM-L6-v2", "cpu") as index:
            retriever = Retriever(index)
            for mode in MODES:
                result = evaluate(retriever, corpus, names, SearchOptions(mode=mode), 100, args.limit)
                scores[name, mode] = float(result["ndcg@10"])
                print(f"| {name} | {mode} | {result['ndcg@10']:.4f} | {result['recall@100']:.4f} | "
                      f"{result['p50_ms']} | {result['p95_ms']} |", flush=True)
    for mode in MODES:
        print(f"  {mode}: PostgreSQL - local = {scores['postgresql', mode] - scores['local', mode]:+.4f}")
    print(f"  [load {describe_load()}]")


def ingest_time(args: argparse.Namespace, url: str) -> None:
    """Part 2: the same abstracts ingested into a new index of each backend."""
    corpus = load_beir(SCIFACT, "train")
    documents = dict(list(corpus.documents.items())[:args.ingest_docs])
    print(f"\n## Ingest: {len(documents)} SciFact abstracts as files, MiniLM on CPU")
    with tempfile.TemporaryDirectory(prefix="rag-pg-bench-") as scratch:
        folder = Path(scratch) / "docs"
        folder.mkdir()
        write_documents(documents, folder)
        for name, location in (("local", Path(scratch) / "index"), ("postgresql", url)):
            report = ingest([folder], location, "all-MiniLM-L6-v2", device="cpu")
            print(f"  {name}: {report.chunks_written} chunks in {report.seconds:.1f} s (embedding "
                  f"{report.embed_seconds:.1f} s, the rest {report.seconds - report.embed_seconds:.1f} s)  "
                  f"[load {describe_load()}]", flush=True)


def latency(args: argparse.Namespace, url: str) -> None:
    """Part 3: query latency per mode at 100k chunks, local against its copy in PostgreSQL."""
    embedder = load_embedder("all-MiniLM-L6-v2", "cpu")
    ensure_index(args.large_index, embedder)
    with Index.open(args.large_index, embedder) as index:
        chunks = index.stats()["chunks"]
    print(f"\n## Latency at {chunks} chunks "
          f"(Retriever.search, query embedding included, {args.queries} SciFact claims)")
    timed_copy(args.large_index, url)
    queries = list(load_beir(SCIFACT, "train").judged_queries().values())[:args.queries]
    print("Interleaved per query (local first for even ones, PostgreSQL first for odd ones), both warmed first.")
    print("| backend | mode | p50 ms | p95 ms | search only p50 / p95 ms |\n|---|---|---|---|---|")
    with Index.open(args.large_index, embedder) as local, Index.open(url, embedder) as postgres:
        backends = {"local": local, "postgresql": postgres}
        for mode in MODES:
            timed = time_queries(backends, queries, SearchOptions(mode=mode))
            for name, (whole, search) in timed.items():
                print(f"| {name} | {mode} | {percentile(whole, 0.5):.1f} | {percentile(whole, 0.95):.1f} | "
                      f"{percentile(search, 0.5):.1f} / {percentile(search, 0.95):.1f} |", flush=True)
            differences = [pg - mine for pg, mine in zip(timed["postgresql"][0], timed["local"][0], strict=True)]
            print(f"|  | {mode}: PostgreSQL - local per query | {percentile(differences, 0.5):+.1f} | "
                  f"{percentile(differences, 0.95):+.1f} | |  [load {describe_load()}]", flush=True)


def fidelity(args: argparse.Namespace, url: str) -> None:
    """Part 4: at 100k chunks, how much of exact BM25's lexical top 10 the probed and rescored forms find, and what
    each costs (the local backend's bm25s is exact; below EXACT_BELOW chunks PostgreSQL is too)."""
    embedder = load_embedder("all-MiniLM-L6-v2", "cpu")
    timed_copy(args.large_index, url)
    claims = list(load_beir(SCIFACT, "train").judged_queries().values())[:args.queries]
    request = SearchRequest.from_options(SearchOptions(mode="lexical"), rows=10)
    shipped = pg_sql.EXACT_BELOW
    with Index.open(url, embedder) as index:
        queries = [index.query(text) for text in claims]
        print(f"\n## Lexical top 10 at {index.stats()['chunks']} chunks, probed and rescored against exact BM25 "
              f"({len(queries)} SciFact claims; the backend's lexical search alone)\n"
              "| form | recall of exact top 10 | p50 ms | p95 ms |\n|---|---|---|---|")
        found: dict[str, list[list[int]]] = {}
        per_term = pg_sql.PER_TERM
        forms = [("exact", pg_sql.ALL, per_term, True), ("probed (shipped)", shipped, per_term, True),
                 ("rescored (before the probes)", shipped, per_term, False),
                 *((f"probed, {count} candidates per term", shipped, count, True) for count in (100, 150, 300))]
        for form, exact_below, candidates, probed in forms:
            pg_sql.EXACT_BELOW, pg_sql.PER_TERM, index.backend.probed = exact_below, candidates, probed
            index.search(queries[0], request)  # warm-up
            seconds = []
            for query in queries:
                began = time.perf_counter()
                hits = index.search(query, request).hits
                seconds.append((time.perf_counter() - began) * 1000)
                found.setdefault(form, []).append([hit.chunk.id for hit in hits[:10]])
            recall = sum(len(set(mine) & set(exact)) / max(len(exact), 1)
                         for mine, exact in zip(found[form], found["exact"], strict=True)) / len(queries)
            print(f"| {form} | {recall:.3f} | {percentile(seconds, 0.5):.1f} | {percentile(seconds, 0.95):.1f} |",
                  flush=True)
        pg_sql.EXACT_BELOW, pg_sql.PER_TERM, index.backend.probed = shipped, per_term, True
    print(f"  [load {describe_load()}]")


def time_queries(indexes: dict[str, Index], queries: list[str],
                 options: SearchOptions) -> dict[str, tuple[list[float], list[float]]]:
    """Per index, milliseconds per query through Retriever.search (embedding included) and of the backend's search
    alone, the indexes taking turns per query."""
    retrievers = {name: Retriever(index) for name, index in indexes.items()}
    request = SearchRequest.from_options(options, rows=ROWS_PER_PASSAGE * options.k)  # as Retriever.search asks
    for retriever in retrievers.values():
        retriever.search(queries[0], options)  # warm-up: loads the local copies, fills PostgreSQL's cache
    timed: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in indexes}
    for number, text in enumerate(queries):
        for name in list(indexes)[::-1 if number % 2 else 1]:
            began = time.perf_counter()
            retrievers[name].search(text, options)
            timed[name][0].append((time.perf_counter() - began) * 1000)
            query = indexes[name].query(text)
            began = time.perf_counter()
            indexes[name].search(query, request)
            timed[name][1].append((time.perf_counter() - began) * 1000)
    return timed


def main() -> None:
    """Start a PostgreSQL (temporary, or kept in --pg-dir) and run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact-index", type=Path, default=Path("/tmp/rag_pg_bench/scifact-local"))
    parser.add_argument("--large-index", type=Path, default=Path("/tmp/rag_pg_bench/local-100k"))
    parser.add_argument("--limit", type=int, help="score only the first N judged queries")
    parser.add_argument("--ingest-docs", type=int, default=150)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--parts", default="quality,ingest,latency")
    parser.add_argument("--pg-dir", type=Path, help="keep the PostgreSQL data here (a rerun then copies nothing)")
    args = parser.parse_args()
    print(describe_machine())
    server = LocalPostgres(args.pg_dir, settings=BENCH_SETTINGS) if args.pg_dir else \
        LocalPostgres.temporary(settings=BENCH_SETTINGS)
    with server:
        server.create_database("bench")
        # fidelity reads the latency part's copy of the 100k index
        parts = {"quality": (quality, "quality"), "ingest": (ingest_time, "ingest"), "latency": (latency, "latency"),
                 "fidelity": (fidelity, "latency")}
        for part in args.parts.split(","):
            run, schema = parts[part]
            run(args, server.url("bench", schema=f"idx_{schema}"))


if __name__ == "__main__":
    main()
