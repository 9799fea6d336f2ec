"""python app.py: serve the chat UI (127.0.0.1:7860 unless told otherwise) over an index."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rag_app.config import DEFAULT_INDEX, AgentSettings, GenerationSettings, IngestOptions, ModelSettings

M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # glibc's mallopt parameter numbers

if TYPE_CHECKING:
    from rag_app.models.embedder import Embedder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from rag_app.index import index_location

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=index_location, default=DEFAULT_INDEX,
                        help="index folder, or postgresql://USER@HOST:PORT/DB?schema=NAME (default: %(default)s)")
    parser.add_argument("--indexes-dir", type=Path, default=DEFAULT_INDEX.parent,
                        help="folder whose indexes users can pick (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require this login (repeatable; or set RAG_APP_AUTH='user:pass,user2:pass2')")
    parser.add_argument("--allowed-root", action="append", type=Path, default=[], metavar="FOLDER",
                        help="a server folder users may ingest from (repeatable; none: server folders are off)")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted (default: 50)")
    parser.add_argument("--ingest-batch-chunks", type=int, default=IngestOptions.batch_chunks,
                        help="chunks embedded per committed batch of a UI ingest (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, help="answers generated at once (default: 2 in process, 8 "
                        "with --llm-url, where the server schedules them)")
    parser.add_argument("--queue-size", type=int, default=64, help="requests waiting at most (default: 64)")
    parser.add_argument("--max-new-tokens", type=int, default=GenerationSettings.max_new_tokens,
                        help="a new session's answer length (default: %(default)s)")
    parser.add_argument("--embedder", help="embedder model id or folder (default: the index's own)")
    parser.add_argument("--llm", help="LLM model id, folder or .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--llm-url", help="answer with the model of an OpenAI-compatible server at this base URL "
                        "(.../v1; env RAG_APP_LLM_URL, key in RAG_APP_LLM_API_KEY); --llm names its model")
    parser.add_argument("--embedder-url", help="embed through an OpenAI-compatible server at this base URL "
                        "(.../v1; env RAG_APP_EMBEDDER_URL); --embedder names its model")
    args = parser.parse_args(argv)
    if min(args.concurrency or 1, args.max_upload_mb, args.max_new_tokens, args.ingest_batch_chunks) <= 0:
        parser.error("--concurrency, --max-upload-mb, --max-new-tokens and --ingest-batch-chunks must be positive")
    return args


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20) -> None:
    """Cap glibc's malloc arenas (each Gradio worker thread would keep its own) and fix its mmap threshold (else it
    rises after torch frees a large activation buffer, and later ones stay on the heap, never returned). Under 5
    sessions with an ingest the arena cap alone cut the app's growth from 11.5% to 6.2% (bench/bench_load.py)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)


def say(message: str) -> None:
    """A stage of the start, with the seconds since `make run` began when it set RAG_APP_STARTED_AT."""
    started = os.environ.get("RAG_APP_STARTED_AT", "")
    since = f" ({time.time() - float(started):.0f} s since `make run` started)" if started.isdigit() else ""
    print(f"[app] {message}{since}", flush=True)


def build_sample_index(args: argparse.Namespace, embedder: str | Embedder | None, device: str) -> None:
    """indexes/default holds the bundled guide: the first start builds it (with a progress bar), every later one
    reads again what changed in the guide since (a new version of the app), unless another process is writing."""
    from ingest.progress import ProgressBar
    from ingest.samples import SAMPLES_DIR, ensure_index
    from rag_app.index import Index, IndexBusyError

    if args.index != DEFAULT_INDEX:
        return
    first = not Index.exists(args.index)
    say(f"building the sample index {args.index} from {SAMPLES_DIR.name}/ (first start only)" if first else
        f"bringing the sample index {args.index} up to date with {SAMPLES_DIR.name}/")
    try:
        with ProgressBar() as bar:
            report = ensure_index(args.index, embedder, device, progress=bar.update)
    except IndexBusyError as error:
        if first:
            raise
        say(f"the sample index was left as it is: {error}")
        return
    if first or not report.ok or report.added or report.updated or report.removed:
        print(report.summary())


def main() -> None:
    tune_malloc()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args()
    from rag_app.ui.security import AUTH_ENV, AllowedRoots, parse_auth

    try:
        auth = parse_auth([*args.auth, os.environ.get(AUTH_ENV, "")])
    except ValueError as error:
        raise SystemExit(f"app.py: {error}") from None
    from rag_app.index import IndexError_
    from rag_app.models.registry import embedder_choice
    from rag_app.models.server_http import ServerError
    from rag_app.ui.app import UIOptions, build_app, launch
    from rag_app.ui.indexes import IndexCatalog

    models = ModelSettings.from_env(embedder=args.embedder, llm=args.llm, device=args.device, llm_url=args.llm_url,
                                    embedder_url=args.embedder_url)
    try:
        build_sample_index(args, embedder_choice(models), models.device)
        say("loading the embedder and the LLM (the first start also converts the bundled GGUF to a cached "
            "transformers folder once, about 20 s)")
        began = time.perf_counter()
        catalog = IndexCatalog(args.indexes_dir, args.index, models)
        catalog.agent(None).retriever.load_judges()  # load the models (or reach their servers) before the first user
    except (IndexError_, ServerError) as error:
        raise SystemExit(f"app.py: {error}") from None
    say(f"models loaded in {time.perf_counter() - began:.1f} s")
    defaults = AgentSettings().with_overrides(max_new_tokens=args.max_new_tokens)
    options = UIOptions(concurrency=args.concurrency, allowed_roots=AllowedRoots(args.allowed_root),
                        defaults=defaults, max_upload_mb=args.max_upload_mb,
                        ingest=IngestOptions(batch_chunks=args.ingest_batch_chunks))
    app = launch(build_app(catalog, options), host=args.host, port=args.port, share=args.share, auth=auth,
                 max_upload_mb=args.max_upload_mb, queue_size=args.queue_size, block=False)
    say(f"serving the chat at http://{args.host}:{args.port} (Ctrl+C stops it)")
    app.block_thread()


if __name__ == "__main__":
    main()
