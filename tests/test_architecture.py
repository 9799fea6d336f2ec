"""The layering rule of docs/architecture.md, checked on every import in the code (walked with `ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("base", ["rag_app", "rag_app.config", "rag_app.types", "rag_app.language", "rag_app.atomic",
              "rag_app.digest"]),
    ("models", ["rag_app.models"]),
    ("index", ["rag_app.index"]),
    ("retrieval", ["rag_app.retrieval", "rag_app.rerank", "rag_app.calibration"]),
    ("engine", ["rag_app.agent", "rag_app.react", "rag_app.prompt", "rag_app.citations", "rag_app.followup",
                "rag_app.attribution", "rag_app.answering", "rag_app.evaluation", "rag_app.answer_eval", "ingest"]),
    ("faces", ["rag_app.cli", "rag_app.ui", "rag_app.integrations", "app"]),
]
# What the faces may use of the index: the Index and its errors, never a backend's insides.
FACE_INDEX_MODULES = {"rag_app.index", "rag_app.index.errors"}


def layer_of(module: str) -> int | None:
    """The layer of a project module (the longest matching prefix wins); None for third-party modules."""
    best: tuple[int, int] | None = None
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    return best[0] if best else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, imported name) of every import in the file, relative imports resolved; for `import x.y`
    the module and the name are both x.y, for `from x import y` they are x and x.y."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, base, f"{base}.{alias.name}") for alias in node.names]
    return found


def project_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "rag_app").rglob("*.py")), *sorted((ROOT / "ingest").rglob("*.py"))]


def violations(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        own = module_name(path)
        level = layer_of(own)
        assert level is not None, f"{own} belongs to no layer: add it to LAYERS and docs/architecture.md"
        for line, module, imported in imports(path):
            target = layer_of(imported)
            if target is None:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {imported}"
            if target > level:
                problems.append(f"{where} ({LAYERS[level][0]} -> {LAYERS[target][0]}: upwards)")
            elif (LAYERS[level][0] == "faces" and LAYERS[target][0] == "index"
                  and module not in FACE_INDEX_MODULES):
                problems.append(f"{where} (a face reaches inside the index)")
    return problems


def test_every_import_follows_the_layering_rule() -> None:
    assert violations(project_files()) == []


def test_the_check_catches_an_upward_import_and_a_face_inside_the_index(tmp_path) -> None:
    probe = ROOT / "rag_app" / "models" / "_layering_probe.py"
    face = ROOT / "rag_app" / "ui" / "_layering_probe.py"
    try:
        probe.write_text("from rag_app.agent import RagAgent\n", encoding="utf-8")
        face.write_text("from rag_app.index.sqlite_store import SQLiteStore\nimport rag_app.index.local\n"
                        "from rag_app.index import Index\n", encoding="utf-8")
        found = violations([probe, face])
    finally:
        probe.unlink(missing_ok=True)
        face.unlink(missing_ok=True)
    assert len(found) == 3
    assert "models -> engine: upwards" in found[0]
    assert all("a face reaches inside the index" in problem for problem in found[1:])


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.py")), ids=lambda path: path.name)
def test_benchmarks_call_no_private_method(path: Path) -> None:
    """`thing._private` from outside the class (anything but self or cls) is a private reach."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reaches = [
        f"{path.name}:{node.lineno} {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert reaches == []
