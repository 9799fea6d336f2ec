"""Settings in one place: defaults, overridden by environment variables, overridden by flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_LLM = "SmolLM2-135M-Instruct"
DEFAULT_INDEX = Path("indexes") / "default"

ENV_HOME = "RAG_APP_HOME"
ENV_EMBEDDER = "RAG_APP_EMBEDDER"
ENV_LLM = "RAG_APP_LLM"
ENV_DEVICE = "RAG_APP_DEVICE"
ENV_CONTEXT_WINDOW = "RAG_APP_CONTEXT_WINDOW"


def app_home() -> Path:
    """Where converted models and other caches live (`RAG_APP_HOME`, else the user's cache dir)."""
    configured = os.environ.get(ENV_HOME)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("rag_app"))


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling parameters. `temperature == 0` is greedy decoding (top_p/top_k then unused); `top_k == 0` and
    `top_p == 1` switch those filters off; `stop` strings end the text (and are cut from it); a `seed` makes
    sampled runs reproducible."""

    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", tuple(text for text in stop if text))
        problems = [
            f"{name}={value!r} (must be {rule})"
            for name, value, ok, rule in (
                ("max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, "at least 1"),
                ("temperature", self.temperature, self.temperature >= 0, "0 for greedy, or above 0"),
                ("top_p", self.top_p, 0 < self.top_p <= 1, "above 0 and at most 1"),
                ("top_k", self.top_k, self.top_k >= 0, "0 for off, or a positive count"),
                ("repetition_penalty", self.repetition_penalty, self.repetition_penalty > 0, "above 0; 1 is off"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("invalid generation setting: " + "; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_overrides(self, **overrides: object) -> GenerationSettings:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


@dataclass(frozen=True)
class Settings:
    """Which models to use, on which device, and how big the window is.

    `embedder=None` means the embedder the index was built with (the default one for a new index).
    """

    embedder: str | None = None
    llm: str = DEFAULT_LLM
    device: str = "auto"
    context_window: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, then `RAG_APP_*` variables, then the non-None keyword overrides."""
        window = os.environ.get(ENV_CONTEXT_WINDOW)
        settings = cls(
            embedder=os.environ.get(ENV_EMBEDDER) or None,
            llm=os.environ.get(ENV_LLM, DEFAULT_LLM),
            device=os.environ.get(ENV_DEVICE, "auto"),
            context_window=int(window) if window else None,
        )
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})
