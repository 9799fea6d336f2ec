"""FAISS index construction: exact inner product (`flat`) or approximate (`hnsw`, `ivf`), all keyed by chunk id.

`auto` (the default) is `flat` below AUTO_IVF_FROM vectors and `ivf` from there on.

Vectors are float32 and L2-normalised, so inner product is cosine. Every kind is wrapped in `IndexIDMap2`, so
searches return chunk ids. `flat` and `ivf` support `remove_ids`; `hnsw` does not (a FAISS limitation): the store
never removes in place, it rebuilds the FAISS copy from SQLite after every write (`build_vector_index`).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

VECTOR_INDEX_KINDS = ("flat", "hnsw", "ivf")
VECTOR_INDEX_CHOICES = ("auto", *VECTOR_INDEX_KINDS)
DEFAULT_VECTOR_INDEX = "auto"

# Exact search scans every vector: one query over 384-d vectors took 12.4 ms at 50k and 26.6 ms at 100k against
# IVF's 1.1 and 1.8 ms (recall@10 0.973 for 200 real queries, 0.998 for 200 held-out); below 50k flat costs a few
# ms (5.3 at 20k) and builds in a blink, which matters because the copy is rebuilt after every write (docs/latency.md).
AUTO_IVF_FROM = 50_000

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
IVF_NPROBE = 32
IVF_MIN_POINTS_PER_LIST = 39  # FAISS's k-means wants at least this many training points per centroid
IVF_TRAINING_POINTS_PER_LIST = 64  # k-means sample per list: above FAISS's minimum, far faster than all vectors


def ivf_list_count(size: int) -> int:
    """Inverted lists for `size` vectors: 2 * sqrt(size) (2,000 at 1M), never more than training can fill.

    Fewer lists than FAISS's usual 4 * sqrt(size) halve training and adding time on a 2-core machine, which
    matters because the store rebuilds the index after every write; nprobe makes up the recall.
    """
    return max(1, min(int(2 * math.sqrt(size)), size // IVF_MIN_POINTS_PER_LIST))


def make_vector_index(dimension: int, kind: str = "flat", expected_size: int | None = None) -> faiss.Index:
    """An empty inner-product index of this kind behind an id map; `ivf` needs `expected_size` for its lists."""
    if kind not in VECTOR_INDEX_KINDS:
        raise ValueError(f"unknown vector index kind {kind!r}: choose one of {', '.join(VECTOR_INDEX_KINDS)}")
    if dimension < 1:
        raise ValueError(f"vector dimension must be positive, got {dimension}")
    if kind == "flat":
        inner: faiss.Index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        if expected_size is None or expected_size < 1:
            raise ValueError(
                "an ivf index needs expected_size (the number of vectors it will hold) to choose its lists; "
                "pass it, or use kind 'flat' or 'hnsw'"
            )
        quantizer = faiss.IndexFlatIP(dimension)
        inner = faiss.IndexIVFFlat(quantizer, dimension, ivf_list_count(expected_size), faiss.METRIC_INNER_PRODUCT)
        inner.nprobe = IVF_NPROBE
    return faiss.IndexIDMap2(inner)  # the Python wrappers keep `inner` and the quantizer alive with it


def train_if_needed(index: faiss.Index, vectors: np.ndarray, seed: int = 1234) -> None:
    """Train an index that needs it (`ivf`) on a sample of the vectors it will hold; others are left as they are."""
    if index.is_trained:
        return
    lists = faiss.extract_index_ivf(index).nlist
    if len(vectors) < lists:
        raise ValueError(f"an ivf index with {lists} lists needs at least {lists} training vectors, got {len(vectors)}")
    limit = lists * IVF_TRAINING_POINTS_PER_LIST
    if len(vectors) > limit:
        vectors = vectors[np.random.default_rng(seed).choice(len(vectors), limit, replace=False)]
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))


def resolve_kind(kind: str, size: int) -> str:
    """The concrete kind for `size` vectors: `auto` becomes `flat` or `ivf`; the others stay as they are."""
    if kind == "auto":
        return "ivf" if size >= AUTO_IVF_FROM else "flat"
    return kind


def build_vector_index(vectors: np.ndarray, ids: np.ndarray, dimension: int, kind: str = "flat") -> faiss.Index:
    """An index of this kind (or `auto`) holding `vectors` under `ids` (int64 chunk ids), trained when it must be."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dimension)
    kind = resolve_kind(kind, len(vectors))
    if kind == "ivf" and len(vectors) < IVF_MIN_POINTS_PER_LIST:
        kind = "flat"  # too few vectors to train lists on; exact search is instant at this size anyway
    index = make_vector_index(dimension, kind, expected_size=len(vectors))
    if len(vectors):
        train_if_needed(index, vectors)
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index

