"""The PostgreSQL backend's search: both legs, fusion, filters and term statistics in one SQL statement.

Dense: HNSW over `chunks.embedding` (`<#>` is the negative inner product). Lexical: BM25 exactly as bm25s scores it
(k1 1.5, b 0.75, IDF ln(1 + (N - df + 0.5) / (df + 0.5)), a repeated query term counted twice) over `postings`.
Up to EXACT_BELOW chunks every posting of the query terms is scored (SciFact, 5k chunks: the same nDCG@10 as
bm25s). Above it, candidates are each term's PER_TERM best postings by impact, and the "probed" form scores each
candidate exactly: one index probe per candidate reads its postings of the query's common terms (those with more
than PER_TERM postings) from `postings_by_chunk`. At 100k chunks (`bench.bench_pg --parts fidelity --queries 150`,
the statement alone, 2026-12-01 20:39): exact BM25 154.8 ms p50, probed 35.1 ms holding 0.931 of exact's top 10;
the former "rescored" form, which summed only each term's DEPTH best postings, 19.7 ms and 0.682. An index whose
`postings_by_chunk` predates the probes keeps the
rescored form (pg_schema.PROBES_SQL). Fusion is the shared RRF (or weighted) with the local
backend's tie order: on equal scores dense hits first in dense order, then lexical-only hits in lexical order.
Filters are the local backend's: the legs take the (already widened) pool unfiltered, fused rows are kept if their
path passes, so ranks are the unfiltered ranks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag_app.index.backend import Query, SearchRequest

BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults (method "lucene"), as rag_app.index.lexical uses them
EXACT_BELOW = 20_000
PER_TERM, DEPTH = 200, 3000
ALL = 2**31 - 1
EF_SEARCH = 200  # ef_search caps an HNSW scan's rows: 40 (the default) gave recall@100 0.375 for a pool of 100

_SEARCH_SQL = """
WITH dense AS MATERIALIZED (
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank,
           (score - min(score) OVER ()) / coalesce(nullif(max(score) OVER () - min(score) OVER (), 0), 1) AS norm
    FROM (SELECT id, -(embedding <#> %(vector)s) AS score FROM chunks
          WHERE embedding IS NOT NULL
          ORDER BY embedding <#> %(vector)s
          LIMIT %(dense_pool)s) AS nearest
), query_terms AS (
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
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank,
           (score - min(score) OVER ()) / coalesce(nullif(max(score) OVER () - min(score) OVER (), 0), 1) AS norm
    FROM (SELECT r.chunk_id AS id,
                 sum(q.qtf * q.idf * r.tf / (r.tf + %(k1)s * (1 - %(b)s + %(b)s * r.dl / q.avgdl))) AS score
          FROM lexical_rows AS r JOIN query_terms AS q USING (term_id)
          GROUP BY r.chunk_id
          ORDER BY score DESC, r.chunk_id
          LIMIT %(lexical_pool)s) AS scored
), fused AS (
    SELECT coalesce(d.id, l.id) AS id, {fused_score} AS score, d.rank AS dense_rank, l.rank AS lexical_rank
    FROM dense AS d FULL OUTER JOIN lexical AS l ON d.id = l.id
), hits AS (
    SELECT c.id, c.path, c.ordinal, c.text, c.page, c.heading, c.start_line, c.end_line, c.start_char,
           c.end_char, c.content_hash, f.score, f.dense_rank, f.lexical_rank, c.embedding
    FROM fused AS f JOIN chunks AS c ON c.id = f.id
    {where}
    ORDER BY f.score DESC, f.dense_rank IS NULL, coalesce(f.dense_rank, f.lexical_rank)
    LIMIT %(limit)s
)
SELECT s.chunk_count, s.frequencies, h.*
FROM (SELECT (SELECT chunks FROM lexical_stats) AS chunk_count,
             (SELECT coalesce(jsonb_object_agg(t.term, coalesce(terms.df, 0)), '{{}}'::jsonb)
              FROM (SELECT DISTINCT unnest(%(terms)s::text[]) AS term) AS t LEFT JOIN terms USING (term))
             AS frequencies) AS s
LEFT JOIN hits AS h ON true
ORDER BY h.score DESC, h.dense_rank IS NULL, coalesce(h.dense_rank, h.lexical_rank)
"""
# The common terms' postings of each candidate: probed (exact), or from each term's DEPTH best (rescored).
# OFFSET 0 keeps the probe a per-candidate index scan: flattened into a join, the planner scanned all postings.
_PROBED_ROWS = """    SELECT p.term_id, c.chunk_id, p.tf, p.dl
    FROM (SELECT array_agg(term_id) AS ids FROM query_terms WHERE df > cap) AS common
    CROSS JOIN (SELECT DISTINCT chunk_id FROM lexical_top) AS c
    CROSS JOIN LATERAL (SELECT term_id, tf, dl FROM postings
                        WHERE postings.chunk_id = c.chunk_id AND postings.term_id = ANY(common.ids)
                        OFFSET 0) AS p
    WHERE common.ids IS NOT NULL"""
_RESCORED_ROWS = """    SELECT q.term_id, p.chunk_id, p.tf, p.dl
    FROM query_terms AS q
    CROSS JOIN LATERAL (SELECT chunk_id, tf, dl FROM postings WHERE postings.term_id = q.term_id
                        ORDER BY impact DESC LIMIT q.depth) AS p
    WHERE q.df > q.cap AND p.chunk_id IN (SELECT chunk_id FROM lexical_top)"""
_RRF = ("coalesce(1.0::float8 / (%(rrf_k)s + d.rank), 0) + coalesce(1.0::float8 / (%(rrf_k)s + l.rank), 0)")
_WEIGHTED = "coalesce(%(dense_weight)s * d.norm, 0) + coalesce((1 - %(dense_weight)s) * l.norm, 0)"


def search_statement(request: SearchRequest, probed: bool = True) -> tuple[str, dict[str, Any]]:
    """The statement for `request` (its shape depends on the fusion, the filters and whether the index has the
    probes' postings_by_chunk) and its filter parameters."""
    condition, parameters = path_filter(request.path_glob, request.file_types)
    sql = _SEARCH_SQL.format(all=ALL, fused_score=_WEIGHTED if request.fusion == "weighted" else _RRF,
                             common_rows=_PROBED_ROWS if probed else _RESCORED_ROWS,
                             where=f"WHERE {condition}" if condition else "")
    return sql, parameters


def search_parameters(query: Query, request: SearchRequest) -> dict[str, Any]:
    """The statement's parameters: a leg switched off gets a pool of 0 (LIMIT 0 does not run it)."""
    return {
        "vector": query.vector, "terms": list(query.tokens), "k1": BM25_K1, "b": BM25_B,
        "dense_pool": request.pool if request.mode != "lexical" else 0,
        "lexical_pool": request.pool if request.mode != "dense" else 0,
        "exact_below": EXACT_BELOW, "per_term": PER_TERM, "depth": DEPTH,
        "rrf_k": request.rrf_k, "dense_weight": request.dense_weight,
        "limit": request.rows or 2 * request.pool,  # at most every fused row, as the local backend returns them
    }


def _glob_regex(glob: str, star: str) -> str:
    """A fnmatch-style glob as a PostgreSQL regular expression body (`star` stands for `*`)."""
    out, index = [], 0
    while index < len(glob):
        char = glob[index]
        if char == "*":
            out.append(star)
        elif char == "?":
            out.append("[^/]" if star != ".*" else ".")
        elif char == "[" and (end := glob.find("]", index + 2 if glob[index + 1:index + 2] in ("!", "]")
                                                else index + 1)) != -1:
            body = glob[index + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            index = end
        else:
            out.append(char if char.isalnum() else re.escape(char))
        index += 1
    return "".join(out)


def path_filter(path_glob: str | None, file_types: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """SQL on `c.path` equal to `SearchRequest.allows`: fnmatch over the whole path (`*` crosses `/`) or
    PurePath.match (from the right, `*` within one part, anchored for an absolute glob); types by PurePath.suffix."""
    conditions, parameters = [], {}
    if path_glob:
        whole = "^" + _glob_regex(path_glob, ".*") + "$"
        from_right = ("^" if path_glob.startswith("/") else "(^|/)") + _glob_regex(path_glob, "[^/]*") + "$"
        conditions.append("(c.path ~ %(glob_whole)s OR c.path ~ %(glob_right)s)")
        parameters.update(glob_whole=whole, glob_right=from_right)
    if file_types:
        conditions.append(r"lower(substring(c.path from '(?:^|/)[^/]+\.([^./]+)$')) = ANY(%(file_types)s)")
        parameters["file_types"] = sorted({kind.lower().lstrip(".") for kind in file_types})
    return " AND ".join(conditions), parameters
