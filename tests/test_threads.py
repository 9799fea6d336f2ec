"""Query embedding on one OpenMP thread for torch embedders, without changing the calling thread's team after."""

from __future__ import annotations

import numpy as np
import torch


def test_a_torch_query_runs_on_one_thread_and_the_team_size_comes_back(embedder, monkeypatch):
    monkeypatch.setattr(embedder, "_onnx", None)  # the torch path, which models without an ONNX export take
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = embedder.embed_query("Which river ends in the Black Sea?")
        seen: list[int] = []
        original = embedder.embed_documents

        def recording(texts: list[str]) -> np.ndarray:
            seen.append(torch.get_num_threads())
            return original(texts)

        monkeypatch.setattr(embedder, "embed_documents", recording)
        vector = embedder.embed_query("Which river ends in the Black Sea?")
        assert seen == [1], "the query ran on torch's whole team"
        assert torch.get_num_threads() == 2, "the calling thread's team size was not restored"
        assert np.allclose(vector, expected, atol=1e-6)
    finally:
        torch.set_num_threads(previous)
