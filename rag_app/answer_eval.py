"""rag-eval --answers: whole answers through the real agent path, scored against gold answers and off-topic sets.

Every question goes through `RagAgent.stream` (condense, retrieve, refuse or answer, attribute), exactly as a user's
would. For answerable questions (a BEIR folder with `answers.jsonl`: `_id`, `answers`) it reports the share of
answers that contain a gold answer, the share whose gold answer lies inside a passage the answer cites, the share
of shown sentences that the passages they cite support, and the refusal rate (the same for `--questions FILE`,
JSONL with `_id`, `text`, `answers`, asked of an existing index, such as one of a folder); for off-topic questions
(`--offtopic FILE`, JSONL with `text`) the false-answer rate; for both the seconds per answer and the time to the
first token. Text is compared normalised: Unicode NFKC (full-width forms), case, spaces and punctuation removed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag_app.agent import RagAgent
from rag_app.attribution import Attributor
from rag_app.config import AgentSettings, ModelSettings, add_knob_flags
from rag_app.evaluation import BeirCorpus, load_beir, merge_corpora, open_or_build, percentile, read_jsonl
from rag_app.index import Index
from rag_app.models.actions import MEASURED, ActionRecords
from rag_app.models.registry import embedder_choice, load_llm
from rag_app.types import Answer


def normalise(text: str) -> str:
    """Text for matching: NFKC, lower case, without spaces and punctuation."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(char for char in folded if not (char.isspace() or unicodedata.category(char)[0] in "PS"))


def contains_any(text: str, golds: Iterable[str]) -> bool:
    normalised = normalise(text)
    return any(gold and gold in normalised for gold in map(normalise, golds))


@dataclass
class Asked:
    """One question through the agent, and how its answer scored."""

    id: str
    question: str
    answerable: bool
    abstained: bool
    mode: str
    text: str
    seconds: float
    first_token: float
    gold_in_answer: bool = False
    gold_in_cited: bool = False
    sentences: int = 0
    supported: int = 0
    gold: list[str] = field(default_factory=list)
    generated: str = ""  # the model's own text, where it was asked (auto mode shows it only when it is supported)


def ask(agent: RagAgent, qid: str, question: str, golds: Sequence[str] | None) -> Asked:
    """Ask through the streaming path, timing the first token and the whole answer."""
    started = time.perf_counter()
    first = None
    response = agent.stream(question)
    for event in response:
        if event.kind == "token" and first is None:
            first = time.perf_counter() - started
    answer = response.answer
    seconds = time.perf_counter() - started
    asked = Asked(qid, question, golds is not None, answer.abstained, answer.mode, answer.text, seconds,
                  first if first is not None else seconds, gold=list(golds or []), generated=answer.generated)
    if golds is not None and not answer.abstained:
        score(asked, answer, agent, golds)
    return asked


def score(asked: Asked, answer: Answer, agent: RagAgent, golds: Sequence[str]) -> None:
    """Gold in the answer, gold in a cited passage, and each checked sentence against the passages it cites."""
    cited = {number for sentence in answer.sentences for number in sentence.citations}
    asked.gold_in_answer = contains_any(answer.text, golds)
    asked.gold_in_cited = any(contains_any(hit.text, golds) for hit in answer.sources if hit.number in cited)
    meaning = agent.retriever.calibration(answer.query).cosine
    for sentence in answer.sentences:
        if not sentence.checked:
            continue
        hits = [hit for hit in answer.sources if hit.number in sentence.citations]
        asked.sentences += 1
        attributor = Attributor(hits, agent.retriever.sentences, meaning, asked.question)
        asked.supported += bool(hits) and attributor.attribute(sentence.text).supported


def summarise(rows: Sequence[Asked], name: str) -> dict[str, object]:
    """The figures of one question set."""
    if not rows:
        return {"set": name, "n": 0}
    seconds = [row.seconds for row in rows]
    first = [row.first_token for row in rows]
    figures: dict[str, object] = {"set": name, "n": len(rows), "seconds_p50": round(statistics.median(seconds), 2),
                                  "seconds_mean": round(statistics.fmean(seconds), 2),
                                  "first_token_p50": round(percentile(first, 0.5), 2),
                                  "first_token_p95": round(percentile(first, 0.95), 2)}
    if rows[0].answerable:
        sentences = sum(row.sentences for row in rows)
        figures.update(
            gold_in_answer=round(sum(row.gold_in_answer for row in rows) / len(rows), 4),
            gold_in_cited_passage=round(sum(row.gold_in_cited for row in rows) / len(rows), 4),
            sentences_supported=round(sum(row.supported for row in rows) / sentences, 4) if sentences else None,
            refusal_rate=round(sum(row.abstained for row in rows) / len(rows), 4),
            extractive_share=round(sum(row.mode == "extractive" for row in rows) / len(rows), 4),
        )
    else:
        figures["false_answer_rate"] = round(sum(not row.abstained for row in rows) / len(rows), 4)
    return figures


def answerable(corpus: BeirCorpus, folders: Sequence[Path], limit: int | None) -> list[tuple[str, str, list[str]]]:
    """(id, question, gold answers) of the judged queries that have gold answers."""
    golds: dict[str, list[str]] = {}
    for folder in folders:
        prefix = f"{folder.name}/" if len(folders) > 1 else ""
        path = folder / "answers.jsonl"
        if not path.is_file():
            raise ValueError(f"{path} is missing: --answers needs answers.jsonl ({{_id, answers}}) in the folder")
        golds.update({prefix + str(row["_id"]): list(row["answers"]) for row in read_jsonl(path)})
    asked = [(qid, text, golds[qid]) for qid, text in corpus.judged_queries().items() if qid in golds]
    if limit is None or limit >= len(asked):
        return asked
    # Evenly spaced rather than the first N: question files are ordered by document, so a prefix covers a few.
    return [asked[n * len(asked) // limit] for n in range(limit)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag-eval --answers", description=__doc__.splitlines()[0])
    parser.add_argument("--answers", action="store_true", required=True, help="score whole answers")
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="BEIR folder with answers.jsonl (repeatable; none: off-topic sets over --index only)")
    parser.add_argument("--split", default="test", help="qrels file of the corpus (default: %(default)s)")
    parser.add_argument("--index", type=Path, help="index to build and keep, or reuse (default: temporary)")
    parser.add_argument("--questions", type=Path, action="append", default=[],
                        help="JSONL of answerable questions with gold answers ({_id, text, answers}) to ask of "
                             "--index, e.g. about a folder it was built from; repeatable")
    parser.add_argument("--offtopic", type=Path, action="append", default=[],
                        help="JSONL of off-topic questions ({text}); repeatable")
    parser.add_argument("--embedder", help="embedder (default: the index's own, else as rag-ingest chooses)")
    parser.add_argument("--embedder-url", help="embed through an OpenAI-compatible server at this base URL")
    parser.add_argument("--llm", help="LLM id, folder or .gguf (default: the bundled SmolLM2)")
    parser.add_argument("--llm-url", help="answer with the model served at this OpenAI-compatible base URL")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, help="ask N answerable questions spread evenly over the set")
    parser.add_argument("--details", type=Path, help="write every question's answer and scores to this JSONL file")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    add_knob_flags(parser, AgentSettings())
    return parser


def open_index(args: argparse.Namespace, models: ModelSettings,
               scratch: Path) -> tuple[Index, BeirCorpus | None, float | None]:
    embedder = embedder_choice(models)
    if not args.corpus:
        if args.index is None:
            raise ValueError("give --corpus (a BEIR folder with answers.jsonl) or an existing --index (with "
                             "--questions or --offtopic)")
        return Index.open(args.index, embedder, args.device), None, None
    corpus = merge_corpora([load_beir(folder, args.split) for folder in args.corpus])
    location = (args.index or scratch / "index").expanduser().resolve()
    index, _, seconds = open_or_build(corpus, location, embedder, args.device)
    return index, corpus, seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run rag-eval --answers; exit 0 on success, 2 on bad input."""
    from rag_app.index import IndexError_

    args = build_parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in AgentSettings().values() if hasattr(args, name)}
    try:
        with tempfile.TemporaryDirectory(prefix="rag-eval-answers-") as scratch:
            models = ModelSettings.from_env(embedder=args.embedder, embedder_url=args.embedder_url, llm=args.llm,
                                            llm_url=args.llm_url, device=args.device)
            index, corpus, ingest_seconds = open_index(args, models, Path(scratch))
            # The model's records as a new installation starts them (the bundled model's measured ones), kept in
            # memory: figures do not depend on what this installation asked before, and time what a new user
            # waits (a fresh record re-ran the 135M model's probation: 9-15 s to its first token, 2026-12-02).
            agent = RagAgent(index, load_llm(models), AgentSettings().with_overrides(**overrides),
                             ActionRecords(measured=MEASURED))
            agent.retriever.load_judges()  # as the app does before its first user: not timed as a first answer's
            rows = [ask(agent, qid, text, golds) for qid, text, golds in
                    (answerable(corpus, args.corpus, args.limit) if corpus else [])]
            sets = [summarise(rows, "+".join(corpus.names))] if corpus else []
            for path, with_answers in [(path, True) for path in args.questions] + [
                    (path, False) for path in args.offtopic]:
                asked = [ask(agent, str(row.get("_id", n)), row["text"], row["answers"] if with_answers else None)
                         for n, row in enumerate(read_jsonl(path))]
                rows += asked
                sets.append(summarise(asked, path.name))
            index.close()
    except (ValueError, IndexError_) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shared = {"index": str(args.index or "temporary"), "embedder": agent.index.embedder.name, "llm": agent.llm.name,
              "answer_mode": agent.settings.answer_mode, "ingest_seconds": round(ingest_seconds or 0.0, 1)}
    if args.details:
        args.details.write_text("".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows),
                                encoding="utf-8")
    print(json.dumps({**shared, "sets": sets}, ensure_ascii=False) if args.json else format_table(sets, shared))
    return 0


GOALS = {"gold_in_answer": ">= 0.75", "sentences_supported": ">= 0.95", "refusal_rate": "<= 0.05",
         "false_answer_rate": "<= 0.05"}


def format_table(sets: Sequence[dict[str, object]], shared: dict[str, object]) -> str:
    columns = ["set", "n", "gold_in_answer", "gold_in_cited_passage", "sentences_supported", "refusal_rate",
               "false_answer_rate", "extractive_share", "seconds_p50", "first_token_p50", "first_token_p95"]
    header = ", ".join(f"{key} {value}" for key, value in shared.items())
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in sets]
    lines.append("| goal | | " + " | ".join(GOALS.get(column, "") for column in columns[2:]) + " |")
    return "\n".join(lines)

