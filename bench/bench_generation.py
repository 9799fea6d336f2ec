"""Generation through RagAgent against a plain `model.generate` on the same prompt, in one run.

Figures: tokens per second and time to first token of the agent's streaming path (LocalLLM.stream: a worker
thread, TextIteratorStreamer, stop-string cutting) against `model.generate` with the same ids and settings
(greedy, so both produce the same tokens); the ratio is the generation overhead (goal: at most 1.05). Then a
whole agent turn (retrieval, the ReAct decision call, prompt, answer), and building a prompt for a 50-turn
history.

    HF_HUB_OFFLINE=1 RAG_APP_HOME=/tmp/rag_home .venv/bin/python -m bench.bench_generation [--repeats 5]

Every figure is the median of `--repeats` interleaved runs with its spread (min-max) and n.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import describe_machine, load_average, spread
from ingest.pipeline import ingest
from rag_app.agent import RagAgent
from rag_app.config import AgentSettings, GenerationSettings
from rag_app.index import Index
from rag_app.models.registry import shared_embedder, shared_llm

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "en"
QUESTION = "What is the default port?"




def timed_stream(llm, messages, settings) -> tuple[float, float, str]:
    """(time to first piece, total time, text) through LocalLLM.stream, the agent's path."""
    start = time.perf_counter()
    first = None
    pieces = []
    for piece in llm.stream(messages, settings):
        first = first if first is not None else time.perf_counter() - start
        pieces.append(piece)
    return first or 0.0, time.perf_counter() - start, "".join(pieces)


def timed_plain(llm, ids, settings) -> tuple[float, int]:
    """(total time, new tokens) of a plain model.generate on the same ids and settings."""
    kwargs = llm.generate_kwargs(ids, settings)
    start = time.perf_counter()
    with torch.inference_mode():
        output = llm.model.generate(**kwargs)
    return time.perf_counter() - start, output.shape[1] - len(ids)


def agent_turns(agent: RagAgent, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of whole agent turns and of their first answer token."""
    turns, turn_ttft = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first = None
        for event in agent.stream(QUESTION):
            if event.kind == "token" and first is None:
                first = time.perf_counter() - start
        turns.append(time.perf_counter() - start)
        turn_ttft.append(first or 0.0)
    return turns, turn_ttft


def prompt_assembly(agent: RagAgent, sources, generation: GenerationSettings):  # type: ignore[no-untyped-def]
    """Seconds to build the answer prompt for a 50-turn history (7 runs after a warm-up), and the last prompt."""
    history = [message for n in range(50) for message in (
        {"role": "user", "content": f"Question {n}: how does retrieval work here?"},
        {"role": "assistant", "content": f"Answer {n}: it searches the passages first. " * 6},
    )]
    agent.answer_prompt(QUESTION, sources, history, generation)
    assembly = []
    for _ in range(7):
        start = time.perf_counter()
        built = agent.answer_prompt(QUESTION, sources, history, generation)
        assembly.append(time.perf_counter() - start)
    return assembly, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    embedder = shared_embedder("all-MiniLM-L6-v2", "cpu")
    llm = shared_llm("SmolLM2-135M-Instruct", "auto")
    index = Path(tempfile.mkdtemp(prefix="bench-generation-")) / "index"
    ingest([SAMPLES], index, embedder)
    generation = GenerationSettings(max_new_tokens=args.max_new_tokens)
    agent = RagAgent(Index.open(index, embedder), llm, AgentSettings(generation=generation))

    sources = agent.search(QUESTION)
    built = agent.answer_prompt(QUESTION, sources, [], generation)
    ids = llm.tokens.chat_ids(built.messages)
    one_token = GenerationSettings(max_new_tokens=1)
    timed_plain(llm, ids, generation)  # warm-up
    rows = {"plain": [], "stream": [], "plain_ttft": [], "stream_ttft": []}
    tokens = 0
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        seconds, tokens = timed_plain(llm, ids, generation)
        rows["plain"].append(seconds)
        rows["plain_ttft"].append(timed_plain(llm, ids, one_token)[0])
        ttft, seconds, _ = timed_stream(llm, built.messages, generation)
        rows["stream"].append(seconds)
        rows["stream_ttft"].append(ttft)

    turns, turn_ttft = agent_turns(agent, args.repeats)
    assembly, history_prompt = prompt_assembly(agent, sources, generation)

    print(f"machine: {describe_machine()}\ncommand: python -m bench.bench_generation {' '.join(sys.argv[1:])}")
    print(f"model: {llm.name} on {llm.device}; prompt {len(ids)} tokens, {tokens} new tokens, "
          f"{args.repeats} interleaved repeats: median (min-max, n)")
    rates = {name: [tokens / seconds for seconds in rows[name]] for name in ("plain", "stream")}
    ttft = {name: [seconds * 1000 for seconds in rows[f"{name}_ttft"]] for name in ("plain", "stream")}
    print(f"plain model.generate : {spread(rates['plain'], 'tok/s', 1)}, TTFT {spread(ttft['plain'], 'ms', 0)}")
    print(f"agent streaming path : {spread(rates['stream'], 'tok/s', 1)}, TTFT {spread(ttft['stream'], 'ms', 0)}")
    overhead = [stream / plain for stream, plain in zip(rows["stream"], rows["plain"], strict=True)]
    print(f"generation overhead  : {spread(overhead, 'x', 3)} time, stream / plain per repeat (goal <= 1.05); "
          f"load {load_average()}")
    print(f"whole agent turn     : {spread(turns, 's')}, first answer token after {spread(turn_ttft, 's')} "
          f"(retrieval + {agent.settings.max_steps} ReAct decision + answer)")
    print(f"50-turn prompt build : {spread([seconds * 1000 for seconds in assembly], 'ms', 1)} "
          f"({history_prompt.tokens} tokens, {history_prompt.dropped_turns} turns dropped)")


if __name__ == "__main__":
    main()
