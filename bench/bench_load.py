"""Many users, one app: `--sessions` gradio_client sessions ask questions for `--seconds` (each keeps its own
history) while `--files` new files are ingested through the UI's upload path; prints per-request latency and queue
wait (p50/p95/max), errors, answers whose sources came from a half-written state, and the app's memory.

Half of the questions are about a fact of the starting index (its answer must stay right during the ingest), half
about the new files, which only exist once the ingest has finished: an answer that finished before the ingest
published its state (the saved FAISS copy is written just before) and cites a new file saw a half-written state.
Answers are extractive (answer_mode=extractive, max_steps=0): no LLM generation, so that on 2 shared cores the
load measures what the sessions share (queue, retrieval, the index switching during an ingest), not SmolLM2 at
~10 s an answer. The app runs as `app.py` on 127.0.0.1 (a free port) with ingest batches of 64 chunks, so that an
ingest of 500 one-chunk files commits 8 times (half-written states exist for readers not to see).

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python -m bench.bench_load [--sessions 20 --seconds 120 --files 500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
from gradio_client import Client, handle_file
from gradio_client.utils import Status

FACT = "The Halvard observatory opens its copper dome at 9 pm on clear nights."
FACT_QUESTION = "When does the Halvard observatory open its copper dome?"
FACT_ANSWER = "9 pm"
NEW_QUESTION = "What frequency does the Quorvath relay station hum at?"
NEW_PREFIX = "relay-"
EXTRACTIVE = {"answer_mode": "extractive", "max_steps": 0}
BATCH_CHUNKS = 64
STARTED = {Status.PROCESSING, Status.ITERATING, Status.PROGRESS, Status.FINISHED}
BASE = {
    "observatory.md": f"# Observatory\n\n{FACT} Visitors book a seat at the gate.\n",
    "bakery.md": "# Bakery\n\nThe bakery on Lime Street sells rye bread from 7 am.\n",
    "rivers.txt": "The Danube flows through ten countries and ends in the Black Sea.\n",
}
FILLER = ("Maintenance crews check the antenna guy wires, grease the bearings of the dish and log the weather. "
          "The logbook is kept in the hut beside the mast and copied to the district office each month. ")


@dataclass
class LoadResult:
    """What a load run measured; `problems()` lists the goals it missed."""

    sessions: int
    seconds: float
    files: int
    latencies: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    half_written: int = 0
    fact_answers: int = 0
    fact_wrong: int = 0
    new_answers_after: int = 0
    histories_mixed: int = 0
    ingest_seconds: float = 0.0
    ingest_report: dict = field(default_factory=dict)
    rss_before: int = 0
    rss_after: int = 0

    @property
    def growth(self) -> float:
        return self.rss_after / self.rss_before - 1 if self.rss_before else 0.0

    def problems(self) -> list[str]:
        found = [f"{len(self.errors)} errors (first: {self.errors[0]})"] if self.errors else []
        found += [f"{self.half_written} answers from a half-written state"] if self.half_written else []
        found += [f"{self.fact_wrong} of {self.fact_answers} fact answers wrong"] if self.fact_wrong else []
        found += [f"{self.histories_mixed} sessions saw another's history"] if self.histories_mixed else []
        found += ["no answer cited the new files after the ingest"] if not self.new_answers_after else []
        found += [f"memory grew {self.growth:.1%}"] if self.growth >= 0.10 else []
        counts = self.ingest_report.get("counts", {})
        found += [f"ingest added {counts.get('added')} of {self.files} files"] if counts.get("added") != self.files \
            else []
        return found

    def table(self) -> str:
        def row(name: str, values: list[float]) -> str:
            if not values:
                return f"| {name} | - | - | - |"
            p50, p95 = np.percentile(values, [50, 95])
            return f"| {name} | {p50:.2f} | {p95:.2f} | {max(values):.2f} |"

        counts = self.ingest_report.get("counts", {})
        return "\n".join([
            f"{self.sessions} sessions for {self.seconds:.0f} s; ingest of {self.files} files "
            f"({counts.get('added', 0)} added, {self.ingest_report.get('chunks_written', 0)} chunks) took "
            f"{self.ingest_seconds:.1f} s (upload included; the pipeline itself "
            f"{self.ingest_report.get('seconds', 0):.1f} s, embedding "
            f"{self.ingest_report.get('embed_seconds', 0):.1f} s)",
            "| per request (s) | p50 | p95 | max |", "|---|---|---|---|",
            row("latency (submit to answer)", self.latencies), row("queue wait (submit to start)", self.waits),
            f"requests {len(self.latencies)} · errors {len(self.errors)} · half-written {self.half_written} · "
            f"fact answers right {self.fact_answers - self.fact_wrong}/{self.fact_answers} · new files cited "
            f"after the ingest {self.new_answers_after} · sessions with another's history {self.histories_mixed}",
            f"memory (RSS) before {self.rss_before / 2**20:.0f} MiB, after {self.rss_after / 2**20:.0f} MiB "
            f"({self.growth:+.1%})",
        ])


def write_base(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in BASE.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def write_new_files(folder: Path, count: int) -> list[Path]:
    """`count` relay logs of one chunk each (~60 words)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"{NEW_PREFIX}{number:04d}.md"
        path.write_text(f"# Relay station {number}\n\nThe Quorvath relay station {number} hums at {400 + number} "
                        f"hertz. {FILLER}\n", encoding="utf-8")
        paths.append(path)
    return paths


@dataclass
class _Answer:
    question: str
    finished: float
    details: dict


def _one_request(client: Client, question: str, result: LoadResult, lock: threading.Lock) -> _Answer | None:
    """Ask once; record latency and queue wait (submit until the queue starts the job)."""
    submitted = time.monotonic()
    job = client.submit(question, api_name="/chat", **EXTRACTIVE)
    started = None
    while not job.done():
        if started is None and job.status().code in STARTED:
            started = time.monotonic()
        time.sleep(0.1)
    try:
        *_, details = job.result()
    except Exception as error:  # counted and shown: the goal is none
        with lock:
            result.errors.append(f"{type(error).__name__}: {error}"[:300])
        return None
    ended = time.monotonic()
    with lock:
        result.latencies.append(ended - submitted)
        result.waits.append((started or ended) - submitted)
    return _Answer(question, time.time(), details)


@dataclass
class _Clock:
    """When sessions stop: at the deadline, and not before the ingest has finished and each asked after it."""

    deadline: float
    ingested: threading.Event = field(default_factory=threading.Event)

    def running(self, asked_after: int) -> bool:
        return time.monotonic() < self.deadline or not self.ingested.is_set() or asked_after < 2


def _session(client: Client, word: str, clock: _Clock, result: LoadResult, lock: threading.Lock,
             answers: list[_Answer]) -> None:
    """One user (who said a code word first): alternates the two questions; checks its history at the end."""
    turn, asked_after, last = 0, 0, None
    while clock.running(asked_after):
        answer = _one_request(client, (FACT_QUESTION, NEW_QUESTION)[turn % 2], result, lock)
        turn += 1
        asked_after += clock.ingested.is_set()
        if answer is not None:
            last = answer
            with lock:
                answers.append(answer)
    replayed = str(last.details.get("history")) if last else ""
    if last is not None and (word not in replayed or "code word is word-" in replayed.replace(word, "")):
        with lock:
            result.histories_mixed += 1


def _ingest(url: str, files: list[Path], result: LoadResult, clock: _Clock) -> None:
    """Upload every file in one request, as a browser does (gradio_client would send one request per file), then
    ingest them through `/ingest_uploads` (Gradio's HTTP API: call, then read the event stream to its end)."""
    began = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            parts = [("files", (path.name, stack.enter_context(path.open("rb")))) for path in files]
            stored = httpx.post(f"{url}gradio_api/upload", files=parts, timeout=600).json()
        uploads = [{"path": path, "orig_name": file.name, "meta": {"_type": "gradio.FileData"}}
                   for path, file in zip(stored, files, strict=True)]
        result.ingest_report = _call(url, "ingest_uploads", [uploads, None])[2]
    except Exception as error:  # counted and shown
        result.errors.append(f"ingest: {type(error).__name__}: {error}"[:300])
    result.ingest_seconds = time.monotonic() - began
    clock.ingested.set()


def _call(url: str, endpoint: str, data: list) -> list:
    """One call of a Gradio endpoint over its HTTP API: the final outputs."""
    event = httpx.post(f"{url}gradio_api/call/{endpoint}", json={"data": data}, timeout=60).json()["event_id"]
    kind = ""
    with httpx.stream("GET", f"{url}gradio_api/call/{endpoint}/{event}", timeout=None) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"{endpoint} failed: {line[len('data: '):]}")
                return json.loads(line[len("data: "):])
    raise RuntimeError(f"{endpoint} ended without a result")


def _judge(result: LoadResult, answers: list[_Answer], published: float) -> None:
    """Fact answers must stay right; an answer finished before the ingest published must not cite new files."""
    for answer in answers:
        cited = [Path(source["file"]).name for source in answer.details.get("sources", [])]
        new = any(name.startswith(NEW_PREFIX) for name in cited)
        if answer.question == FACT_QUESTION:
            result.fact_answers += 1
            result.fact_wrong += FACT_ANSWER not in answer.details.get("text", "")
        if new and answer.finished < published:
            result.half_written += 1
        if new and answer.finished >= published:
            result.new_answers_after += 1


def run_load(url: str, pid: int, index_folder: Path, files: list[Path], sessions: int,
             seconds: float) -> LoadResult:
    """The load against a running app (process `pid`, index at `index_folder`): sessions ask for `seconds` (and
    until each has asked twice after the ingest), while the files are ingested into the app's own index."""
    result, lock, answers = LoadResult(sessions, seconds, len(files)), threading.Lock(), []
    words = [f"word-{n:02d}" for n in range(sessions)]
    clients = [Client(url, verbose=False) for _ in range(sessions + 1)]
    for client, word in zip(clients, words, strict=False):  # first turns; the memory baseline is after them
        _one_request(client, f"Please remember that my code word is {word}.", result, lock)
    # One warm-up ingest first: the first one starts the ingest threads and their allocator arenas (~90 MB once,
    # measured in tests/test_load.py), which is not growth under load.
    warm_up = Path(tempfile.mkdtemp(prefix="bench_load-warm-up-")) / "warm-up.md"
    warm_up.write_text("# Warm-up\n\nThis note only warms the ingest up.\n", encoding="utf-8")
    clients[-1].predict([handle_file(str(warm_up))], None, api_name="/ingest_uploads")
    result.rss_before = psutil.Process(pid).memory_info().rss
    clock = _Clock(time.monotonic() + seconds)
    users = [threading.Thread(target=_session, args=(client, word, clock, result, lock, answers))
             for client, word in zip(clients, words, strict=False)]
    for user in users:
        user.start()
    time.sleep(min(5.0, seconds / 6))  # every session is asking before the ingest starts
    _ingest(url, files, result, clock)
    for user in users:
        user.join()
    result.rss_after = psutil.Process(pid).memory_info().rss
    published = (index_folder / "vectors.faiss").stat().st_mtime  # written just before the state is published
    _judge(result, answers, published)
    return result


def start_app(index: Path, batch_chunks: int = BATCH_CHUNKS) -> tuple[subprocess.Popen, str]:
    """`app.py` over `index` on a free loopback port, once it answers: (process, URL)."""
    app = Path(__file__).resolve().parent.parent / "app.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(app.parent)}
    process = subprocess.Popen([sys.executable, str(app), "--index", str(index), "--indexes-dir",
                                str(index.parent), "--port", str(port), "--queue-size", "256",
                                "--ingest-batch-chunks", str(batch_chunks), "--device", "cpu"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(1)
    process.kill()
    raise RuntimeError(f"bench_load: the app over {index} did not start within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    from bench.machine import describe_machine
    from ingest.pipeline import ingest

    work = Path(tempfile.mkdtemp(prefix="bench_load-"))
    index = work / "indexes" / "team"
    print(ingest([write_base(work / "base")], index).summary())
    files = write_new_files(work / "new", args.files)
    print("before:", describe_machine())
    process, url = start_app(index)
    try:
        result = run_load(url, process.pid, index, files, args.sessions, args.seconds)
    finally:
        process.terminate()
        process.wait(timeout=60)
    print("after: load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print(result.table())
    problems = result.problems()
    print("goals met" if not problems else "goals missed: " + "; ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
