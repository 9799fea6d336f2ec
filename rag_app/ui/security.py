"""The UI's guards: login parsing, and server folders kept inside the allowed roots (no `..`, no symlinks out)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ingest.walk import walk

AUTH_ENV = "RAG_APP_AUTH"


class FolderNotAllowedError(ValueError):
    """A server folder that is missing, not a folder, or (after resolving links) outside the allowed roots."""


def parse_auth(values: Sequence[str]) -> list[tuple[str, str]]:
    """`user:pass` pairs (each value may hold several, comma-separated) as Gradio's `auth` list."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            user, colon, password = item.partition(":")
            if not colon or not user or not password:
                raise ValueError(
                    f"login {item.split(':', 1)[0]!r} is not in the form user:password; "
                    f"give --auth user:password (repeatable) or {AUTH_ENV}='user:password,other:password'"
                )
            pairs.append((user, password))
    return pairs


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


class AllowedRoots:
    """The server folders a UI user may ingest from; empty means server-folder ingestion is off."""

    def __init__(self, roots: Sequence[Path | str]) -> None:
        self.roots = [Path(root).expanduser().resolve() for root in roots]

    def __bool__(self) -> bool:
        return bool(self.roots)

    def check(self, folder: str) -> Path:
        """The folder, resolved, when it and every file under it stay inside an allowed root; else a clear error."""
        if not self.roots:
            raise FolderNotAllowedError(
                "server-folder ingestion is off: start the app with --allowed-root FOLDER to allow it, "
                "or upload the files instead"
            )
        if not folder.strip():
            raise FolderNotAllowedError("no folder given: type a folder path inside " + self.describe())
        resolved = Path(folder.strip()).expanduser().resolve()
        if not _inside(resolved, self.roots):
            raise FolderNotAllowedError(f"{folder} resolves to {resolved}, outside the allowed roots {self.describe()}")
        if not resolved.is_dir():
            raise FolderNotAllowedError(f"{resolved} is not an existing folder")
        escaping = [found.path for found in walk([resolved]) if found.problem is None
                    and not _inside(found.path, self.roots)]
        if escaping:
            shown = ", ".join(str(path) for path in escaping[:3])
            raise FolderNotAllowedError(
                f"{resolved} holds {len(escaping)} link(s) to files outside the allowed roots ({shown}); "
                "remove those links or choose another folder"
            )
        return resolved

    def describe(self) -> str:
        return ", ".join(str(root) for root in self.roots) or "(none)"
