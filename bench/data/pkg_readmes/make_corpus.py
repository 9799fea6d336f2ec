"""Writes the pkg_readmes corpus: the long descriptions (READMEs) of eight packages the project installs, at the
versions pinned in requirements.txt, one Markdown file each.

    python bench/data/pkg_readmes/make_corpus.py /tmp/pkg_readmes
"""

from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path

PACKAGES = ("bm25s", "click", "httpx", "jinja2", "psycopg", "pydantic", "requests", "tqdm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args().folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        (folder / f"{name}.md").write_text(importlib.metadata.metadata(name).get_payload(), encoding="utf-8")
    print(f"{len(PACKAGES)} READMEs written to {folder}")


if __name__ == "__main__":
    main()
