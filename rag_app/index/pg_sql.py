"""The PostgreSQL backend's search statements: the lexical leg with the term statistics, and the dense leg.

Lexical: BM25 exactly as bm25s scores it (k1 1.5, b 0.75, IDF ln(1 + (N - df + 0.5) / (df + 0.5)), a repeated
query term counted twice) over `postings`. Up to EXACT_BELOW chunks every posting of the query terms is scored
(SciFact, 5k chunks: the same nDCG@10 as bm25s). Above it, candidates are each term's PER_TERM best postings by
impact, and the "probed" form scores each candidate exactly from its postings of the query's common terms (those
with more than PER_TERM postings) in `postings_by_chunk`. At 100k chunks (`bench.bench_pg --parts fidelity
--queries 150`, the statement alone, 2026-12-01 20:39): exact BM25 154.8 ms p50, probed 35.1 ms holding 0.931 of
exact's top 10 (14.2 ms since the probes are one index scan, 2026-12-02); the former "rescored" form, which summed
only each term's DEPTH best postings, 19.7 ms and 0.682.
An index whose `postings_by_chunk` predates the probes keeps the rescored form (pg_schema.PROBES_SQL).
Dense: HNSW over `chunks.embedding` (`<#>` is the negative inner product). Fusion and filters are the local
backend's own Python (rag_app.index.fusion): the legs take the (already widened) pool unfiltered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_app.index.backend import SearchRequest

BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults (method "lucene"), as rag_app.index.lexical uses them
EXACT_BELOW = 20_000
PER_TERM, DEPTH = 200, 3000  # 300 per term: 0.967 of exact BM25's top 10 (200: 0.931) but +4.7 ms a search
ALL = 2**31 - 1
EF_SEARCH = 200  # ef_search caps an HNSW scan's rows: 40 (the default) gave recall@100 0.375 for a pool of 100

# The lexical leg needs only the query's tokens, so it runs on a second connection while the query is embedded.
_LEXICAL_SQL = """
WITH query_terms AS (
    SELECT terms.id AS term_id, q.qtf, terms.df,
           ln(1 + (s.chunks - terms.df + 0.5::float8) / (terms.df + 0.5::float8)) AS idf,
           s.tokens::float8 / greatest(s.chunks, 1) AS avgdl,
           CASE WHEN s.chunks <= %(exact_below)s THEN {all} ELSE %(per_term)s END AS cap,
           CASE WHEN s.chunks <= %(exact_below)s THEN {all} ELSE %(depth)s END AS depth
    FROM (SELECT term, count(*) AS qtf FROM unnest(%(terms)s::text[]) AS term GROUP BY term) AS q
    JOIN terms USING (term) CROSS JOIN lexical_stats AS s
    WHERE terms.df > 0 AND %(lexical_pool)s > 0
), lexical_top AS MATERIALIZED (
    SELECT q.term_id, q.df, q.cap, p.chunk_id, p.tf, p.dl
    FROM query_terms AS q
    CROSS JOIN LATERAL (SELECT chunk_id, tf, dl FROM postings WHERE postings.term_id = q.term_id
                        ORDER BY impact DESC LIMIT q.cap) AS p
), lexical_rows AS (
    SELECT term_id, chunk_id, tf, dl FROM lexical_top WHERE df <= cap
    UNION ALL
{common_rows}
), lexical AS MATERIALIZED (
    SELECT r.chunk_id AS id,
           sum(q.qtf * q.idf * r.tf / (r.tf + %(k1)s * (1 - %(b)s + %(b)s * r.dl / q.avgdl))) AS score
    FROM lexical_rows AS r JOIN query_terms AS q USING (term_id)
    GROUP BY r.chunk_id
    ORDER BY score DESC, r.chunk_id
    LIMIT %(lexical_pool)s
)
SELECT (SELECT value FROM meta WHERE key = 'generation') AS generation,
       (SELECT chunks FROM lexical_stats) AS chunk_count,
       (SELECT coalesce(jsonb_object_agg(t.term, coalesce(terms.df, 0)), '{{}}'::jsonb)
        FROM (SELECT DISTINCT unnest(%(terms)s::text[]) AS term) AS t LEFT JOIN terms USING (term)) AS frequencies,
       (SELECT coalesce(array_agg(id ORDER BY score DESC, id), '{{}}') FROM lexical) AS ids,
       (SELECT coalesce(array_agg(score ORDER BY score DESC, id), '{{}}') FROM lexical) AS scores
"""
# The dense leg: HNSW nearest by inner product, equal scores in id order, with the generation it read.
DENSE_SQL = """
SELECT (SELECT value FROM meta WHERE key = 'generation') AS generation,
       coalesce(array_agg(id ORDER BY score DESC, id), '{}') AS ids,
       coalesce(array_agg(score ORDER BY score DESC, id), '{}') AS scores
FROM (SELECT id, -(embedding <#> %(vector)s) AS score FROM chunks
      WHERE embedding IS NOT NULL
      ORDER BY embedding <#> %(vector)s
      LIMIT %(pool)s) AS nearest
"""
# The common terms' postings of each candidate: probed (exact), or from each term's DEPTH best (rescored). The
# probes are one index scan over both arrays (PostgreSQL 18 skips within the sorted candidates): 15.1 ms p50
# against 20.4 for a LATERAL probe per candidate, the same ranking for 150 of 150 claims at 100k chunks. OFFSET 0
# keeps it an index scan: flattened into a join, the planner scanned all postings.
_PROBED_ROWS = """    SELECT p.term_id, p.chunk_id, p.tf, p.dl
    FROM (SELECT array_agg(term_id) AS ids FROM query_terms WHERE df > cap) AS common,
         (SELECT array_agg(DISTINCT chunk_id) AS ids FROM lexical_top) AS candidates,
         LATERAL (SELECT term_id, chunk_id, tf, dl FROM postings
                  WHERE postings.chunk_id = ANY(candidates.ids) AND postings.term_id = ANY(common.ids)
                  OFFSET 0) AS p
    WHERE common.ids IS NOT NULL"""
_RESCORED_ROWS = """    SELECT q.term_id, p.chunk_id, p.tf, p.dl
    FROM query_terms AS q
    CROSS JOIN LATERAL (SELECT chunk_id, tf, dl FROM postings WHERE postings.term_id = q.term_id
                        ORDER BY impact DESC LIMIT q.depth) AS p
    WHERE q.df > q.cap AND p.chunk_id IN (SELECT chunk_id FROM lexical_top)"""


def lexical_statement(probed: bool = True) -> str:
    """The lexical leg's statement: the query terms' statistics and the BM25 ranking (probed or rescored)."""
    return _LEXICAL_SQL.format(all=ALL, common_rows=_PROBED_ROWS if probed else _RESCORED_ROWS)


def lexical_parameters(tokens: Sequence[str], request: SearchRequest) -> dict[str, Any]:
    """The lexical statement's parameters: a leg switched off gets a pool of 0 (it then returns the statistics)."""
    return {"terms": list(tokens), "k1": BM25_K1, "b": BM25_B, "exact_below": EXACT_BELOW, "per_term": PER_TERM,
            "depth": DEPTH, "lexical_pool": request.pool if request.mode != "dense" else 0}
