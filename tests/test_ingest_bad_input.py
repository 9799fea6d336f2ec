"""Bad input never stops the rest: each bad file is reported with its reason, through the pipeline and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag_app.config import IngestOptions
from rag_app.index import IndexCorruptError
from rag_app.index.local import LocalBackend
from rag_app.index.sqlite_store import STORE_NAME
from tests.fixtures_files import write_encrypted_pdf, write_pdf

BIN = Path(sys.executable).parent
GOOD = {"good.txt": "The orchard harvest festival starts on the first Saturday of October.",
        "good.md": "# Ferry\n\nThe ferry to the island runs twice a day in winter."}
# Substrings of the reason each bad path must be reported with.
REASONS = {
    "corrupt.pdf": "corrupt PDF",
    "encrypted.pdf": "encrypted PDF",
    "empty.txt": "empty file",
    "binary.dat": "binary file",
    "big.txt": "over the",
    "dangling.txt": "broken symlink",
    "self-loop.txt": "symlink loop",
    "loop": "symlink loop",
    "missing-folder": "path does not exist",
}


def make_bad_corpus(folder: Path) -> Path:
    folder.mkdir()
    for name, text in GOOD.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(3000))
    plain = write_pdf(folder.parent / "plain.pdf", [["A secret page about the vault."]])
    write_encrypted_pdf(plain, folder / "encrypted.pdf", "user-secret")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.dat").write_bytes(bytes(range(256)) * 8)
    (folder / "big.txt").write_text("lighthouse " * 400, encoding="utf-8")  # 4.4 KB, over a 4 KB limit
    (folder / "dangling.txt").symlink_to(folder / "nowhere.txt")
    (folder / "self-loop.txt").symlink_to(folder / "self-loop.txt")
    (folder / "sub").mkdir()
    (folder / "sub" / "loop").symlink_to(folder)
    return folder


OPTIONS = IngestOptions(max_file_mb=4096 / (1024 * 1024))


def reasons_by_name(skipped: list[tuple[str, str]]) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in skipped}


def unprivileged(command: list[str]) -> list[str]:
    """Run `command` so that a mode-000 file is really unreadable: as root, drop the DAC override capabilities."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a chmod 000 file stays readable, so 'unreadable' "
                    "cannot be produced here (the other bad inputs are covered by the in-process test)")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]


def run_ingest(*args: str, unreadable: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "rag-ingest"), *args]
    return subprocess.run(unprivileged(command) if unreadable else command, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_pipeline_reports_each_bad_input_and_ingests_the_rest(tmp_path, embedder):
    corpus = make_bad_corpus(tmp_path / "docs")
    report = ingest([corpus, tmp_path / "missing-folder"], tmp_path / "index", embedder, OPTIONS)

    assert sorted(Path(path).name for path in report.added) == sorted(GOOD)
    reasons = reasons_by_name([(item.path, item.reason) for item in report.skipped])
    assert set(reasons) == set(REASONS)
    for name, expected in REASONS.items():
        assert expected in reasons[name], (name, reasons[name])
    assert not report.ok and "skipped" in report.summary()
    assert LocalBackend.open(tmp_path / "index").count_files() == len(GOOD)


def test_a_file_that_turns_bad_keeps_its_indexed_chunks(tmp_path, embedder):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, text in GOOD.items():
        (corpus / name).write_text(text, encoding="utf-8")
    index = tmp_path / "index"
    ingest([corpus], index, embedder)
    (corpus / "good.txt").write_bytes(b"\x00\x01\x02" * 100)  # overwritten with binary junk

    report = ingest([corpus], index, embedder)
    assert [(Path(item.path).name, item.reason) for item in report.skipped] == [("good.txt", "binary file, not text")]
    store = LocalBackend.open(index)
    assert store.count_files() == 2
    assert any("orchard harvest" in chunk.text for chunk in store.chunks(list(range(1, 10))).values())


def test_cli_reports_bad_inputs_as_json_with_exit_code_1(tmp_path):
    corpus = make_bad_corpus(tmp_path / "docs")
    unreadable = corpus / "locked.txt"
    unreadable.write_text("Nobody may read this note.", encoding="utf-8")
    unreadable.chmod(0)
    try:
        result = run_ingest(str(corpus), str(tmp_path / "missing-folder"), "--index", str(tmp_path / "index"),
                            "--max-file-mb", str(4096 / (1024 * 1024)), "--json", unreadable=True)
    finally:
        unreadable.chmod(0o644)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    reasons = reasons_by_name([(item["path"], item["reason"]) for item in report["skipped"]])
    assert set(reasons) == {*REASONS, "locked.txt"}
    for name, expected in {**REASONS, "locked.txt": "permission denied"}.items():
        assert expected.lower() in reasons[name].lower(), (name, reasons[name])
    assert report["counts"] == {"added": 2, "updated": 0, "unchanged": 0, "removed": 0, "skipped": 10}
    assert report["ok"] is False and report["chunks_written"] == 2


def test_a_damaged_store_is_refused_and_left_untouched(tmp_path, embedder):
    index = tmp_path / "index"
    index.mkdir()
    garbage = os.urandom(8192)
    (index / STORE_NAME).write_bytes(garbage)

    with pytest.raises(IndexCorruptError, match="left untouched"):
        LocalBackend.open(index)
    with pytest.raises(IndexCorruptError, match="left untouched"):
        ingest([Path(__file__)], index, embedder)
    result = run_ingest(__file__, "--index", str(index))
    assert result.returncode == 2
    assert "error:" in result.stderr and "not an SQLite database" in result.stderr
    assert (index / STORE_NAME).read_bytes() == garbage
    assert sorted(path.name for path in index.iterdir() if path.name != ".lock") == [STORE_NAME]


def test_a_damaged_sqlite_store_is_refused(tmp_path, embedder):
    index = tmp_path / "index"
    ingest([Path(__file__)], index, embedder)
    with sqlite3.connect(index / STORE_NAME) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray((index / STORE_NAME).read_bytes())
    data[4096:8192] = os.urandom(4096)  # a page of the database overwritten, the header intact
    (index / STORE_NAME).write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="damaged"):
        ingest([Path(__file__)], index, embedder)
    assert (index / STORE_NAME).read_bytes() == bytes(data)


def test_a_folder_that_is_not_an_index_is_not_written_into(tmp_path, embedder):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(IndexCorruptError, match="holds no rag_app index"):
        ingest([Path(__file__)], folder, embedder)
    assert [path.name for path in folder.iterdir()] == ["holiday.jpg"]


_opened: list[str] | None = None  # the paths an `open` audit event named while a test listens


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


def test_an_oversized_file_is_skipped_by_its_size_before_any_read(tmp_path, embedder):
    global _opened
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD["good.txt"], encoding="utf-8")
    big = folder / "big.txt"
    big.write_text("lighthouse " * 400, encoding="utf-8")  # 4.4 KB, over a 4 KB limit
    sys.addaudithook(_record_opens)  # every open() in this process, C or Python, raises an "open" audit event
    _opened = []
    try:
        report = ingest([folder], tmp_path / "index", embedder, OPTIONS)
        opened = list(_opened)
    finally:
        _opened = None
    assert reasons_by_name([(item.path, item.reason) for item in report.skipped]) == {
        "big.txt": "file is 0.0 MB, over the 0.0 MB limit; raise --max-file-mb"}
    assert str(folder / "good.txt") in opened, "the audit hook must see the files that are read"
    assert str(big) not in opened, "the oversized file was opened (read or hashed) before its size was checked"
