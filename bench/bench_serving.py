"""Concurrent users asking through the agent: the in-process LocalLLM against a ServedLLM over transformers serve
(started here on 127.0.0.1 with the same bundled SmolLM2), in one run.

For 1, 4 and 8 users, each asks a different question about the sample guide at once, through one RagAgent per
backend over the same index (max_steps 0, greedy, `--max-new-tokens` 48). Both backends are warmed first and
the rounds are interleaved (local, served, local, ...) so that load changes hit both alike. Printed per backend
and user count: aggregate answer tokens/s (all answer tokens / the round's wall time), p50/p95 time to first
answer token and to the finished answer (from the moment all users asked; queueing included), and the load
average. Both run torch on `--threads` threads (default 1, what a shared 2-core box serves best).

    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_serving [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

QUESTIONS = [
    "What is the default port of the app?",
    "Which file formats can I ingest?",
    "How do I pick another embedder?",
    "What happens when I ingest the same folder twice?",
    "How do I run the app on a GPU?",
    "Why does the agent say it found nothing?",
    "How do I export a conversation?",
    "Which models does the app use by default?",
]
USERS = (1, 4, 8)
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "en"


@dataclass
class Turn:
    """One user's timings (seconds from the round's start) and answer tokens."""

    first_token: float
    done: float
    tokens: int


def ask(agent, question: str, start: float, turns: list[Turn]) -> None:
    """One user: ask through the agent's stream and time the first answer token and the end."""
    first, text = None, ""
    for event in agent.stream(question):
        if event.kind == "token":
            first = first if first is not None else time.perf_counter() - start
            text += event.text
    done = time.perf_counter() - start
    turns.append(Turn(first or done, done, agent.llm.tokens.count_texts([text])[0]))


def round_of(agent, users: int) -> tuple[list[Turn], float]:
    """`users` different questions asked at once; their turns and the round's wall time."""
    turns: list[Turn] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(agent, QUESTIONS[n % len(QUESTIONS)], start, turns))
               for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return turns, time.perf_counter() - start


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` 0.5: the median)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def row(backend: str, users: int, rounds: list[tuple[list[Turn], float]]) -> str:
    """One table row over all rounds of a backend and user count."""
    turns = [turn for turns, _ in rounds for turn in turns]
    rate = sum(turn.tokens for turn in turns) / sum(wall for _, wall in rounds)
    first, done = [turn.first_token for turn in turns], [turn.done for turn in turns]
    return (f"| {backend} | {users} | {rate:.1f} | {percentile(first, 0.5):.2f} | {percentile(first, 0.95):.2f} | "
            f"{percentile(done, 0.5):.2f} | {percentile(done, 0.95):.2f} |")


def main() -> None:
    """Start the server, build the index, warm both backends, run the interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads, for both backends alike

    from bench.machine import describe_machine
    from ingest.pipeline import ingest
    from rag_app.agent import RagAgent
    from rag_app.config import AgentSettings, GenerationSettings, ModelSettings
    from rag_app.index import Index
    from rag_app.models.registry import load_llm, shared_embedder
    from tests.servers import bundled_model_folder, start_transformers_serve, stop_server

    url, process = start_transformers_serve(bundled_model_folder(), threads=args.threads)
    try:
        embedder = shared_embedder("all-MiniLM-L6-v2", "cpu")
        location = Path(tempfile.mkdtemp(prefix="bench-serving-")) / "index"
        ingest([SAMPLES], location, embedder)
        index = Index.open(location, embedder)
        settings = AgentSettings(max_steps=0, generation=GenerationSettings(max_new_tokens=args.max_new_tokens))
        agents = {"in-process": RagAgent(index, load_llm(ModelSettings(device="cpu")), settings),
                  "served": RagAgent(index, load_llm(ModelSettings(llm_url=url)), settings)}
        for agent in agents.values():  # warm: model, tokenizer, connections, the server's first request
            agent.ask(QUESTIONS[0])
        load_before = os.getloadavg()
        results: dict[tuple[str, int], list] = {key: [] for key in ((name, n) for name in agents for n in USERS)}
        for _ in range(args.repeats):
            for users in USERS:
                for name, agent in agents.items():
                    results[(name, users)].append(round_of(agent, users))
                    print(f"{name}, {users} user(s): {results[(name, users)][-1][1]:.1f} s", file=sys.stderr)
        load_after = os.getloadavg()
    finally:
        stop_server(process)

    print(f"machine: {describe_machine()}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {args.repeats} interleaved "
          f"repeats, max_new_tokens {args.max_new_tokens}, {args.threads} torch thread(s) per backend")
    print("| backend | users | answer tokens/s | TTFT p50 s | TTFT p95 s | done p50 s | done p95 s |")
    print("|---|---|---|---|---|---|---|")
    for (name, users), rounds in results.items():
        print(row(name, users, rounds))


if __name__ == "__main__":
    main()
