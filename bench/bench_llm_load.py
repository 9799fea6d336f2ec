"""The default LLM: first start (GGUF converted) against a later start (the cached folder), each in a fresh process,
and tokens/s in fp32 against bf16 on this CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_llm_load [--repeats 5]

A start is timed from launching `python` to the model being ready: interpreter, imports, the digest lookup,
conversion (first start only) and loading. First and later starts are interleaved: each repeat converts into an
empty cache folder, then starts again from it in another fresh process. Generation: fp32 and bf16 copies of the
model, interleaved, exactly `--new-tokens` greedy tokens each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import describe_machine, load_average, spread

QUESTION = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]


def start_in_this_process(cache: Path) -> dict[str, float]:
    """Imports and LocalLLM.load of the default model with `cache` as RAG_APP_HOME (run in a fresh process)."""
    began = time.perf_counter()
    from rag_app.models.llm import LocalLLM

    imported = time.perf_counter()
    LocalLLM.load(device="cpu", cache=cache)
    return {"import_s": imported - began, "load_s": time.perf_counter() - imported}


def timed_start(cache: Path) -> dict[str, float]:
    """A fresh process that starts the model from `cache`; whole wall time and the parts it reports."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.bench_llm_load", "--start-in", str(cache)], check=True,
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": time.perf_counter() - began, "load": os.getloadavg()[0]}


def tokens_per_second(llm, new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    """Exactly `new_tokens` greedy tokens (min_new_tokens pins the length), per second."""
    import torch

    from rag_app.config import GenerationSettings

    kwargs = llm.generate_kwargs(llm.tokens.chat_ids(QUESTION), GenerationSettings(max_new_tokens=new_tokens))
    started = time.perf_counter()
    with torch.inference_mode():
        output = llm.model.generate(**kwargs, min_new_tokens=new_tokens)
    return (output.shape[1] - kwargs["input_ids"].shape[1]) / (time.perf_counter() - started)


def generation(repeats: int, new_tokens: int) -> None:
    import torch

    from rag_app.models.llm import LocalLLM

    fp32 = LocalLLM.load(device="cpu")
    bf16 = LocalLLM.load(device="cpu")
    bf16.model.to(torch.bfloat16)
    tokens_per_second(fp32, 4)  # warm-up
    tokens_per_second(bf16, 4)
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        rates["fp32"].append(tokens_per_second(fp32, new_tokens))
        rates["bf16"].append(tokens_per_second(bf16, new_tokens))
    for name, values in rates.items():
        print(f"generation, CPU {name}, {new_tokens} new tokens: {spread(values, 'tokens/s', 1)}, load "
              f"{load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--start-in", type=Path, help=argparse.SUPPRESS)  # the fresh process of one timed start
    args = parser.parse_args()
    if args.start_in:
        print(json.dumps(start_in_this_process(args.start_in)))
        return
    print(f"machine: {describe_machine()}\ncommand: python -m bench.bench_llm_load {' '.join(sys.argv[1:])}")
    runs: dict[str, list[dict[str, float]]] = {"first": [], "later": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-llm-cache-") as cache:
            runs["first"].append(timed_start(Path(cache)))
            runs["later"].append(timed_start(Path(cache)))
    for kind, label in (("first", "first start: GGUF converted, then loaded"),
                        ("later", "later start: the cached converted folder")):
        values = runs[kind]
        print(f"{label:42s} {spread([run['wall_s'] for run in values], 's')}  (imports "
              f"{spread([run['import_s'] for run in values], 's')}, conversion + load "
              f"{spread([run['load_s'] for run in values], 's')}); load {spread([r['load'] for r in values], '', 1)}")
    ratios = [later["wall_s"] / first["wall_s"] for first, later in zip(runs["first"], runs["later"], strict=True)]
    print(f"later / first start (pairs): {spread(ratios)}")
    generation(args.repeats, args.new_tokens)


if __name__ == "__main__":
    main()
