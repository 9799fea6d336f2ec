"""python app.py: serve the chat UI (127.0.0.1:7860 unless told otherwise) over an index."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rag_app.config import DEFAULT_INDEX, Settings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--embedder", help="embedder model id or folder (default: the index's own)")
    parser.add_argument("--llm", help="LLM model id, folder or .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--concurrency", type=int, default=2, help="answers generated at once")
    return parser.parse_args()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args()
    from ingest.samples import ensure_index
    from rag_app.agent import RagAgent
    from rag_app.config import DEFAULT_EMBEDDER
    from rag_app.models.registry import shared_embedder
    from rag_app.ui.app import build_app

    settings = Settings.from_env(embedder=args.embedder, llm=args.llm, device=args.device)
    if args.index == DEFAULT_INDEX:
        report = ensure_index(args.index, shared_embedder(settings.embedder or DEFAULT_EMBEDDER, settings.device))
        if report is not None:
            print(report.summary())
    agent = RagAgent.load(args.index, embedder=settings.embedder, llm=settings.llm, device=settings.device)
    app = build_app(lambda: agent, concurrency_limit=args.concurrency)
    app.queue().launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
