"""rag-eval: retrieval quality (nDCG, recall, MRR), latency and abstention on BEIR-format corpora.

Each corpus document is written as one file named after its `_id` and ingested through the normal pipeline;
retrieved chunks map back to their document by file name. A document's rank is its best chunk's rank.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

import numpy as np

from rag_app.config import FUSION_METHODS, SEARCH_MODES, ChunkingSettings, IngestOptions, ModelSettings, SearchOptions
from rag_app.index import Index, index_location
from rag_app.models.embedder import Embedder
from rag_app.models.registry import embedder_choice
from rag_app.models.server_http import ServerError
from rag_app.retrieval import Retriever
from rag_app.types import Hit

DOCUMENT_SUFFIX = ".txt"
CUTOFFS = (10, 100)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# ---- the corpus ------------------------------------------------------------------------------------------------


@dataclass
class BeirCorpus:
    """Documents, queries and relevance judgements of one BEIR-format folder (or several merged)."""

    documents: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    names: list[str] = field(default_factory=list)

    def judged_queries(self) -> dict[str, str]:
        """The queries that have at least one relevant document, in file order."""
        return {qid: text for qid, text in self.queries.items() if any(self.qrels.get(qid, {}).values())}


def read_jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{number} is not valid JSON ({error.msg}): fix or remove that line"
                    ) from None


def load_beir(folder: Path, split: str) -> BeirCorpus:
    """Read corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv; a missing file is a clear error."""
    folder = Path(folder).expanduser()
    needed = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    for path in needed:
        if not path.is_file():
            splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
            hint = f" (splits there: {', '.join(splits)})" if splits else ""
            raise ValueError(f"{path} is missing: --corpus needs a BEIR folder with corpus.jsonl, queries.jsonl "
                             f"and qrels/{split}.tsv{hint}")
    documents = {}
    for record in read_jsonl(needed[0]):
        if "_id" not in record:
            raise ValueError(f"{needed[0]}: a document has no `_id`: every line needs _id, title and text")
        title, text = (record.get("title") or "").strip(), (record.get("text") or "").strip()
        documents[str(record["_id"])] = f"{title}\n\n{text}" if title else text
    queries = {str(record["_id"]): str(record["text"]) for record in read_jsonl(needed[1])}
    qrels: dict[str, dict[str, int]] = {}
    with needed[2].open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip() or (number == 1 and not parts[-1].lstrip("-").isdigit()):
                continue
            if len(parts) != 3:
                raise ValueError(f"{needed[2]}:{number} needs three tab-separated fields: query-id, corpus-id, score")
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return BeirCorpus(documents, queries, qrels, [folder.name])


def merge_corpora(corpora: Sequence[BeirCorpus]) -> BeirCorpus:
    """Several corpora in one index; query ids are prefixed with their corpus name when there are several."""
    if len(corpora) == 1:
        return corpora[0]
    merged = BeirCorpus({}, {}, {})
    for corpus in corpora:
        prefix = f"{corpus.names[0]}/"
        clash = set(corpus.documents) & set(merged.documents)
        if clash:
            raise ValueError(f"document id {sorted(clash)[0]!r} occurs in two corpora: ids must be unique across "
                             "the --corpus folders")
        merged.documents.update(corpus.documents)
        merged.queries.update({prefix + qid: text for qid, text in corpus.queries.items()})
        merged.qrels.update({prefix + qid: judged for qid, judged in corpus.qrels.items()})
        merged.names.extend(corpus.names)
    return merged


def document_file_name(doc_id: str) -> str:
    """A safe file name for a document id; ids that needed changing get a hash so that none collide."""
    safe = _UNSAFE.sub("_", doc_id)[:100]
    if safe != doc_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.blake2b(doc_id.encode('utf-8'), digest_size=4).hexdigest()}"
    return safe + DOCUMENT_SUFFIX


def write_documents(documents: Mapping[str, str], folder: Path) -> dict[str, str]:
    """Write each document as FOLDER/<safe id>.txt; return file name -> document id."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for doc_id, text in documents.items():
        name = document_file_name(doc_id)
        (folder / name).write_text(text + "\n", encoding="utf-8")
        names[name] = doc_id
    return names


# ---- metrics -----------------------------------------------------------------------------------------------


def ndcg_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (trec_eval's, as BEIR reports it)."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1))
    ideal = sorted((grade for grade in judged.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document in the top k, else 0."""
    return next((1.0 / rank for rank, doc in enumerate(ranked[:k], start=1) if judged.get(doc, 0) > 0), 0.0)


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile (linear interpolation); 0 for no values."""
    return float(np.percentile(values, share * 100)) if len(values) else 0.0


# ---- running queries ---------------------------------------------------------------------------------------


def rank_documents(retriever: Retriever, query: str, names: Mapping[str, str], options: SearchOptions, depth: int,
                   total: int) -> tuple[list[str], list[Hit]]:
    """Distinct document ids, best first (a document ranks by its best chunk), and the chunk-level hits."""
    want = depth * 2
    while True:
        wide = replace(options, k=want, candidates=max(options.candidates, want), merge_neighbours=False)
        hits = retriever.search(query, wide)
        ranked = list(dict.fromkeys(names[PurePath(h.path).name] for h in hits if PurePath(h.path).name in names))
        if len(ranked) >= depth or len(hits) < want or want >= total:
            return ranked[:depth], hits
        want *= 2


def evaluate(retriever: Retriever, corpus: BeirCorpus, names: Mapping[str, str], options: SearchOptions,
             depth: int = 100, limit: int | None = None) -> dict[str, float | int | str]:
    """nDCG@10, Recall@10/100, MRR@10, latency and the false-abstain rate over the judged queries."""
    queries = list(corpus.judged_queries().items())[:limit]
    if not queries:
        raise ValueError("no query in this split has a relevant document: check the qrels file and --split")
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    latencies, abstained = [], 0
    top = SearchOptions().k
    total = retriever.index.stats()["chunks"]
    for qid, text in queries:
        began = time.perf_counter()
        ranked, sources = rank_documents(retriever, text, names, options, depth, total)
        latencies.append((time.perf_counter() - began) * 1000)
        judged = corpus.qrels[qid]
        totals["ndcg@10"] += ndcg_at(ranked, judged, 10)
        totals["recall@10"] += recall_at(ranked, judged, 10)
        totals["recall@100"] += recall_at(ranked, judged, 100)
        totals["mrr@10"] += mrr_at(ranked, judged, 10)
        abstained += not retriever.is_relevant(sources[:top], options)
    result: dict[str, float | int | str] = {key: round(value / len(queries), 4) for key, value in totals.items()}
    result.update({
        "p50_ms": round(percentile(latencies, 0.5), 1), "p95_ms": round(percentile(latencies, 0.95), 1),
        "false_abstain_rate": round(abstained / len(queries), 4), "n_queries": len(queries),
    })
    return result


def abstention(retriever: Retriever, questions_file: Path, options: SearchOptions) -> dict[str, float | int]:
    """False-answer rate (unanswerable judged relevant) and false-abstain rate (answerable judged not)."""
    counts = {True: [0, 0], False: [0, 0]}  # answerable -> [questions, answered]
    for record in read_jsonl(Path(questions_file).expanduser()):
        if "text" not in record or "answerable" not in record:
            raise ValueError(f"{questions_file}: every line needs `text` and `answerable` (true or false)")
        answered = retriever.is_relevant(retriever.search(record["text"], options), options)
        counts[bool(record["answerable"])][0] += 1
        counts[bool(record["answerable"])][1] += answered
    (answerable, answered_ok), (unanswerable, answered_bad) = counts[True], counts[False]
    return {
        "abstain_false_answer_rate": round(answered_bad / unanswerable, 4) if unanswerable else 0.0,
        "abstain_false_abstain_rate": round(1 - answered_ok / answerable, 4) if answerable else 0.0,
        "abstain_unanswerable": unanswerable, "abstain_answerable": answerable,
    }


# ---- the index ---------------------------------------------------------------------------------------------


def open_or_build(corpus: BeirCorpus, location: Path | str, embedder: str | Embedder | None, device: str,
                  chunking: ChunkingSettings | None = None) -> tuple[Index, dict[str, str], float | None]:
    """Reuse the index at `location` if it holds this corpus, else ingest the corpus into it (its embedder chosen
    by the same rule as rag-ingest's).

    Returns the index, file name -> document id, and the seconds spent ingesting (None for a reused index).
    """
    from ingest.pipeline import ingest

    names = {document_file_name(doc_id): doc_id for doc_id in corpus.documents}
    seconds = None
    if not Index.exists(location):
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="rag-eval-docs-") as folder:
            write_documents(corpus.documents, Path(folder))
            report = ingest([Path(folder)], location, embedder, IngestOptions(chunking=chunking), device=device)
        seconds = time.perf_counter() - began
        if report.skipped:
            print(f"warning: {len(report.skipped)} documents were skipped, e.g. {report.skipped[0]}",
                  file=sys.stderr)
    index = Index.open(location, embedder, device)
    stored = {PurePath(path).name for path in index.backend.files()}
    if not stored or not stored <= set(names):
        index.close()
        raise ValueError(f"the index at {location} holds documents that are not in this corpus: give a new or "
                         "empty --index (or leave it out for a temporary one)")
    return index, names, seconds


# ---- the command -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults = SearchOptions()
    parser = argparse.ArgumentParser(prog="rag-eval", description="Retrieval quality and latency on a BEIR-format "
                                     "corpus (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); with --answers, whole "
                                     "answers through the agent (rag-eval --answers --help).")
    parser.add_argument("--corpus", type=Path, action="append", required=True,
                        help="BEIR folder; repeat to search several corpora in one index")
    parser.add_argument("--split", default="test", help="qrels file to score against (default: %(default)s)")
    parser.add_argument("--index", type=index_location, help="index folder or postgresql:// URL to build and keep, "
                        "or reuse (default: a temporary folder)")
    parser.add_argument("--embedder", help="embedder id or folder (default: the index's own, else the one "
                        "rag-ingest would choose for the corpus)")
    parser.add_argument("--embedder-url", help="embed through an OpenAI-compatible server at this base URL "
                        "(.../v1; env RAG_APP_EMBEDDER_URL); --embedder then names its model")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--mode", choices=SEARCH_MODES, default=defaults.mode, help="default: %(default)s")
    parser.add_argument("--modes", help="comma-separated modes to compare over one ingest, e.g. dense,lexical,hybrid")
    parser.add_argument("--k", type=int, default=100, help="distinct documents ranked per query (default: 100)")
    parser.add_argument("--candidates", type=int, default=defaults.candidates,
                        help="chunks taken from each leg before fusion, at least 2*k (default: %(default)s)")
    parser.add_argument("--fusion", choices=FUSION_METHODS, default=defaults.fusion, help="default: %(default)s")
    parser.add_argument("--rrf-k", type=int, default=defaults.rrf_k, help="default: %(default)s")
    parser.add_argument("--dense-weight", type=float, default=defaults.dense_weight,
                        help="weight of the dense leg in weighted fusion (default: %(default)s)")
    parser.add_argument("--reranker", help="sentence-transformers CrossEncoder id or folder (default: none)")
    parser.add_argument("--rerank-depth", type=int, default=defaults.rerank_depth, help="default: %(default)s")
    parser.add_argument("--min-relevance", type=float, default=defaults.min_relevance,
                        help="abstain threshold (default: %(default)s)")
    parser.add_argument("--abstain", type=Path, help="JSONL of {text, answerable} questions: report false-answer "
                        "and false-abstain rates over the index")
    parser.add_argument("--limit", type=int, help="score only the first N judged queries")
    parser.add_argument("--chunk-tokens", type=int, help="chunk size for a new index (default: the embedder's)")
    parser.add_argument("--overlap-tokens", type=int, default=ChunkingSettings.overlap_tokens,
                        help="chunk overlap for a new index (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run rag-eval (or, with --answers, rag_app.answer_eval); exit 0 on success, 2 on bad input."""
    from rag_app.index import IndexError_

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--answers" in argv:
        from rag_app.answer_eval import main as answers_main

        return answers_main(argv)
    args = build_parser().parse_args(argv)
    modes = [mode.strip() for mode in (args.modes or args.mode).split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in SEARCH_MODES]
    if unknown or args.k < 1:
        what = f"unknown mode(s) {unknown}: choose from {', '.join(SEARCH_MODES)}" if unknown else "--k must be >= 1"
        print(f"error: {what}", file=sys.stderr)
        return 2
    try:
        corpus = merge_corpora([load_beir(folder, args.split) for folder in args.corpus])
        with tempfile.TemporaryDirectory(prefix="rag-eval-index-") as scratch:
            location = args.index or Path(scratch) / "index"
            location = location.expanduser().resolve() if isinstance(location, Path) else location
            models = ModelSettings.from_env(embedder=args.embedder, embedder_url=args.embedder_url)
            chunking = (ChunkingSettings(max_tokens=args.chunk_tokens, overlap_tokens=args.overlap_tokens)
                        if args.chunk_tokens else None)
            index, names, ingest_seconds = open_or_build(corpus, location, embedder_choice(models), args.device,
                                                         chunking)
            embedder_name = index.embedder.name
            retriever = Retriever(index)
            if args.reranker:
                from rag_app.rerank import CrossEncoderReranker

                retriever.reranker = CrossEncoderReranker(args.reranker, args.device)
            runs = []
            for mode in modes:
                options = SearchOptions(mode=mode, candidates=args.candidates, fusion=args.fusion,
                                        rrf_k=args.rrf_k, dense_weight=args.dense_weight,
                                        rerank_depth=args.rerank_depth, min_relevance=args.min_relevance)
                run: dict[str, object] = {"mode": mode, **evaluate(retriever, corpus, names, options, args.k,
                                                                    args.limit)}
                if args.abstain:
                    product = replace(options, candidates=SearchOptions.candidates)
                    run.update(abstention(retriever, args.abstain, product))
                runs.append(run)
            index.close()
    except (ValueError, IndexError_, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shared = {"corpus": "+".join(corpus.names), "split": args.split, "n_docs": len(corpus.documents),
              "embedder": embedder_name, "fusion": args.fusion, "rrf_k": args.rrf_k,
              "dense_weight": args.dense_weight, "candidates": args.candidates, "reranker": args.reranker,
              "ingest_seconds": round(ingest_seconds or 0.0, 2), "reused_index": ingest_seconds is None}
    if args.json:
        print(json.dumps({**runs[0], **shared} if len(runs) == 1 else {**shared, "runs": runs}, ensure_ascii=False))
    else:
        print(format_table(runs, shared))
    return 0


def format_table(runs: Sequence[Mapping[str, object]], shared: Mapping[str, object]) -> str:
    """The runs as a Markdown table, under a line that says what was measured."""
    columns = ["mode", "ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p95_ms", "false_abstain_rate"]
    columns += [key for key in ("abstain_false_answer_rate", "abstain_false_abstain_rate") if key in runs[0]]
    header = (f"{shared['corpus']} ({shared['split']}): {shared['n_docs']} documents, {runs[0]['n_queries']} queries,"
              f" embedder {shared['embedder']}, fusion {shared['fusion']}, reranker {shared['reranker'] or 'none'}, "
              f"ingest {shared['ingest_seconds']} s")
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(run.get(column, "")) for column in columns) + " |" for run in runs]
    return "\n".join(lines)
