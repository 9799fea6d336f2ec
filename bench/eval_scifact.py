"""Fusion sweep on a BEIR corpus (SciFact train by default): nDCG@10 and Recall@100 for each fusion setting.

Each query's dense and lexical candidate lists are fetched once, then fused with `rag_app.retrieval.fuse` under
every setting, so the sweep measures the product's fusion code on the same candidates. Builds (or reuses) the
index through `rag_app.evaluation.open_or_build`. Not a test.

    python -m bench.eval_scifact --corpus /work/shared/datasets/scifact --split train --index /tmp/scifact-index
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path, PurePath

import torch

from rag_app.config import DEFAULT_EMBEDDER, SearchOptions
from rag_app.evaluation import load_beir, ndcg_at, open_or_build, recall_at
from rag_app.index.backend import SearchRequest
from rag_app.index.fusion import fuse
from rag_app.index.lexical import tokenize

POOLS = (20, 50, 100, 200)
RRF_KS = (1, 5, 10, 20, 40, 60, 100)
DENSE_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def machine() -> str:
    """CPU model, cores, RAM, Python and torch versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")


def settings() -> list[tuple[str, SearchOptions]]:
    """Every (label, options) pair the sweep scores: pure legs, RRF k, weighted sums, each per pool size."""
    runs = []
    for pool in POOLS:
        runs.append((f"dense pool={pool}", SearchOptions(mode="dense", candidates=pool)))
        runs.append((f"lexical pool={pool}", SearchOptions(mode="lexical", candidates=pool)))
        runs += [(f"rrf k={k} pool={pool}", SearchOptions(fusion="rrf", rrf_k=k, candidates=pool)) for k in RRF_KS]
        runs += [(f"weighted w_dense={w} pool={pool}", SearchOptions(fusion="weighted", dense_weight=w,
                                                                     candidates=pool)) for w in DENSE_WEIGHTS]
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/shared/datasets/scifact"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--index", type=Path, required=True, help="index folder to build or reuse")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--json", type=Path, help="also write every setting's figures to this file")
    args = parser.parse_args()

    corpus = load_beir(args.corpus, args.split)
    index, names, ingest_seconds = open_or_build(corpus, args.index.resolve(), args.embedder, "cpu")
    store, queries = index.backend, corpus.judged_queries()
    view = store.copies.view()  # the local backend's legs, each ranked once to the largest pool
    began = time.perf_counter()
    legs = {}
    for qid, text in queries.items():
        vector = index.embedder.embed_query(text)
        legs[qid] = (view.dense(vector, max(POOLS)), view.lexical_hits(tokenize(text), max(POOLS)))
    fetch_seconds = time.perf_counter() - began
    doc_of = {chunk_id: names[PurePath(chunk.path).name]
              for chunk_id, chunk in store.chunks([i for d, lex in legs.values() for i, _ in d + lex]).items()}
    rows = []
    for label, options in settings():
        ndcg = recall = 0.0
        for qid, (dense, lexical) in legs.items():
            dense = dense[: options.candidates] if options.mode != "lexical" else []
            lexical = lexical[: options.candidates] if options.mode != "dense" else []
            fused = fuse(dense, lexical, SearchRequest.from_options(options))
            ranked = list(dict.fromkeys(doc_of[i] for i in sorted(fused, key=fused.__getitem__, reverse=True)))
            ndcg += ndcg_at(ranked, corpus.qrels[qid], 10)
            recall += recall_at(ranked, corpus.qrels[qid], 100)
        rows.append({"setting": label, "ndcg@10": round(ndcg / len(legs), 4),
                     "recall@100": round(recall / len(legs), 4)})
    print(f"machine: {machine()}")
    print(f"{args.corpus.name} ({args.split}): {len(corpus.documents)} documents, {len(queries)} queries, "
          f"{store.count_chunks()} chunks; ingest {ingest_seconds or 0:.0f} s; candidate fetch {fetch_seconds:.0f} s\n")
    print("| setting | nDCG@10 | Recall@100 |\n|---|---|---|")
    for row in sorted(rows, key=lambda row: row["ndcg@10"], reverse=True):
        print(f"| {row['setting']} | {row['ndcg@10']} | {row['recall@100']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
