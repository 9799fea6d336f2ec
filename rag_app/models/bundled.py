"""Where the PyPI packages that ship the default models keep their files (found without importing them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_folder(package: str, advice: str) -> Path:
    """The installed folder of `package`; a RuntimeError that says what to do when it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: {advice}")
    return Path(spec.submodule_search_locations[0])
