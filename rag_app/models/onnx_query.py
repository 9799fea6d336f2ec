"""A sentence-transformers embedder's queries and small batches on ONNX Runtime: its transformer exported once per
weights content.

Why: one short query is a pass over ~16 tokens, where torch spends its time in per-op overhead and small-matrix
kernels; ONNX Runtime's fused graph embedded the same MiniLM queries in p50 12.1 ms against torch's 43.2 ms, one
thread each (45 short SciFact-style questions, interleaved, load 2.7; docs/latency.md), and the query embedding
was most of a hybrid search at 100k chunks. So are the few passage sentences that the refusal gate's sentence test
embeds per search (rag_app.models.embedder.ONNX_TEXTS has the measured sizes); larger batches (an ingest's) stay
on torch, where its kernels do well.

Only a model whose pipeline is Transformer -> mean Pooling -> Normalize (all-MiniLM-L6-v2 and most
sentence-transformers models) loaded from a folder with `model.safetensors` takes this path; the export is checked
against torch on probe texts and used only if they agree (cosine >= `AGREEMENT`), else queries stay on torch. The
export lives in the converted-model cache (`RAG_APP_HOME/models/<name>-<sha256[:12]>/model.onnx`, listed and
pruned by `rag-cache`), keyed by the weights' content, so checkouts share it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from rag_app.models.model_cache import cached_folder, mark_used

ONNX_NAME = "model.onnx"
WEIGHTS_NAME = "model.safetensors"
AGREEMENT = 0.9999
PROBES = ("Which river ends in the Black Sea?", "长江流经哪些城市？", "GPT-2 context window 1024 tokens")


def weights_file(model) -> Path | None:  # type: ignore[no-untyped-def]
    """The weights file of a sentence-transformers model with the supported pipeline, else None."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    if len(modules) != 3 or not isinstance(modules[0], Transformer) or not isinstance(modules[2], Normalize):
        return None
    pooling = modules[1]
    if not isinstance(pooling, Pooling) or pooling.pooling_mode != "mean":
        return None
    weights = Path(str(modules[0].auto_model.config._name_or_path)) / WEIGHTS_NAME
    return weights if weights.is_file() else None


def export(model, target: Path) -> None:  # type: ignore[no-untyped-def]
    """Write the model's transformer as ONNX to `target` (atomically: a concurrent export never leaves half)."""
    import warnings

    import torch

    class LastHiddenState(torch.nn.Module):
        """The transformer as a function of (input_ids, attention_mask): the graph that is exported."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = model[0].auto_model

        def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    features = model.tokenizer([PROBES[0]], return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.part")
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState().eval(), (features["input_ids"], features["attention_mask"]), temporary,
                input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "hidden")},
                opset_version=17, dynamo=False,
            )
        os.chmod(temporary, 0o644)  # readable by every user of a shared cache, as the converted GGUFs are
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


class OnnxQueryEncoder:
    """Mean-pooled, L2-normalised vectors of queries and small batches from the exported transformer, on one
    thread."""

    def __init__(self, path: Path, tokenizer: Tokenizer) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread. Two took SciFact claims (21 tokens median, n=150, interleaved) from p50 11.9 to 8.0 ms on an
        # idle 2-core machine and did not stall beside busy processes, but their spinning pool took CPU from the
        # work beside it: a 256-abstract torch embedding (an ingest) took 37.4-37.7 s with two-thread queries
        # running every 50 ms against 25.3-32.8 s with one-thread ones, and the queries were no faster (p50 31
        # against 27-34 ms). Without spinning, two threads were slower than one (12.7 ms).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer

    @classmethod
    def for_model(cls, model, name: str, cache: Path | None = None) -> OnnxQueryEncoder | None:  # type: ignore[no-untyped-def]
        """The encoder for a supported model whose export agrees with torch, exporting it on first use; else None."""
        weights = weights_file(model)
        if weights is None:
            return None
        folder = cached_folder(weights, cache, marker=ONNX_NAME, stem=name.replace("/", "--"))
        if not (folder / ONNX_NAME).is_file():
            export(model, folder / ONNX_NAME)
        mark_used(folder)
        # Its own Rust tokenizer, truncating at the model's window: a shared one has its truncation switched by
        # whichever thread encodes next (the ingest's documents and a chat's query run at once in the app).
        tokenizer = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(model.max_seq_length))
        encoder = cls(folder / ONNX_NAME, tokenizer)
        expected = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
        agreement = min(float(encoder.embed(text) @ vector) for text, vector in zip(PROBES, expected, strict=True))
        return encoder if agreement >= AGREEMENT else None

    def embed(self, text: str) -> np.ndarray:
        return self.embed_many([text])[0]

    def embed_many(self, texts: list[str]) -> np.ndarray:
        """A few short texts in one padded pass, each mean-pooled over its own tokens."""
        encoded = [self.tokenizer.encode(text).ids for text in texts]
        width = max(len(ids) for ids in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(encoded):
            ids[row, :len(tokens)], mask[row, :len(tokens)] = tokens, 1
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)
