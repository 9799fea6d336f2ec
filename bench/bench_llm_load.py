"""The default LLM: GGUF load vs the converted folder's load, and tokens/s in fp32 vs bf16 on this CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_llm_load
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import describe_machine
from rag_app.config import GenerationSettings
from rag_app.models.llm import LocalLLM, bundled_gguf_path, converted_folder

QUESTION = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]


def tokens_per_second(llm: LocalLLM, new_tokens: int, repeats: int) -> float:
    """Best of `repeats` runs of exactly `new_tokens` greedy tokens (min_new_tokens pins the length)."""
    settings = GenerationSettings(max_new_tokens=new_tokens)
    kwargs = llm.generate_kwargs(llm.tokens.chat_ids(QUESTION), settings)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.inference_mode():
            output = llm.model.generate(**kwargs, min_new_tokens=new_tokens)
        made = output.shape[1] - kwargs["input_ids"].shape[1]
        best = max(best, made / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        folder = converted_folder(bundled_gguf_path(), Path(cache))
        gguf_seconds = time.perf_counter() - started
        started = time.perf_counter()
        llm = LocalLLM.load(str(folder), device="cpu")
        folder_seconds = time.perf_counter() - started
        print(f"first start, GGUF loaded and converted: {gguf_seconds:.1f} s")
        print(f"later starts, converted folder:          {folder_seconds:.2f} s  "
              f"(ratio {folder_seconds / gguf_seconds:.3f} of the GGUF load)")
        fp32 = tokens_per_second(llm, args.new_tokens, args.repeats)
        llm.model.to(torch.bfloat16)
        bf16 = tokens_per_second(llm, args.new_tokens, args.repeats)
    print(f"generation, CPU fp32: {fp32:.1f} tokens/s; bf16: {bf16:.1f} tokens/s "
          f"(fp32/bf16 = {fp32 / bf16:.2f}; fp32 is the CPU default)")


if __name__ == "__main__":
    main()
