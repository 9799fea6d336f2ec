"""manifest.json: what built the index (embedder, dimension, chunker), mirrored from the store's meta table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag_app.atomic import write_atomically

FORMAT_VERSION = 2  # 2: files.chunker (per-file chunker signature)
MANIFEST_NAME = "manifest.json"


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    write_atomically(directory / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False).encode())


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
