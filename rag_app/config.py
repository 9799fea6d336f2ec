"""Settings in one tree: defaults, then environment variables, then flags or keyword overrides.

Each setting is one dataclass field. A field made with `setting(...)` is a knob: the CLI's flags and the UI's
controls are generated from it, so adding a knob is one edit here. `with_overrides(k=3, temperature=0.2)` routes
each key to the (nested) settings that own it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

import platformdirs

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_LLM = "SmolLM2-135M-Instruct"
DEFAULT_INDEX = Path("indexes") / "default"

ENV_HOME = "RAG_APP_HOME"
ENV_EMBEDDER = "RAG_APP_EMBEDDER"
ENV_LLM = "RAG_APP_LLM"
ENV_DEVICE = "RAG_APP_DEVICE"
ENV_CONTEXT_WINDOW = "RAG_APP_CONTEXT_WINDOW"
ENV_LLM_URL = "RAG_APP_LLM_URL"
ENV_LLM_API_KEY = "RAG_APP_LLM_API_KEY"
ENV_EMBEDDER_URL = "RAG_APP_EMBEDDER_URL"
ENV_EMBEDDER_API_KEY = "RAG_APP_EMBEDDER_API_KEY"

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "lexical")
FusionMethod = Literal["rrf", "weighted"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("rrf", "weighted")
AnswerMode = Literal["auto", "generative", "extractive"]
ANSWER_MODES: tuple[AnswerMode, ...] = ("auto", "generative", "extractive")
RRF_K = 1  # tuned on SciFact train (docs/retrieval.md): 0.7236 nDCG@10 against 0.7046 at the usual 60


def app_home() -> Path:
    """Where converted models and other caches live (`RAG_APP_HOME`, else the user's cache dir)."""
    configured = os.environ.get(ENV_HOME)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("rag_app"))


@dataclass(frozen=True)
class Knob:
    """How a setting is offered: a label and help text; for the UI a range (low, high, step) or choices."""

    label: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    ui: bool = True


def setting(default: Any, label: str, help: str = "", *, low: float | None = None, high: float | None = None,
            step: float | None = None, choices: tuple[str, ...] = (), ui: bool = True) -> Any:
    """A field that is also a knob (a CLI flag, and a UI control unless `ui=False`)."""
    knob = Knob(label, help, low, high, step, choices, ui)
    return field(default=default, metadata={"knob": knob})


class SettingsTree:
    """Behaviour shared by every settings dataclass: overrides routed to their owner, and the knobs below."""

    def with_overrides(self, **overrides: Any) -> Any:
        """A copy with each non-None override set on the (nested) settings that has a field of that name."""
        own: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        children = {item.name: getattr(self, item.name) for item in fields(self)  # type: ignore[arg-type]
                    if is_dataclass(getattr(self, item.name))}
        for key, value in overrides.items():
            if value is None:
                continue
            if key in _field_names(self):
                own[key] = value
                continue
            owner = next((name for name, child in children.items() if key in _all_names(child)), None)
            if owner is None:
                raise TypeError(f"unknown setting {key!r}; known settings: {', '.join(sorted(_all_names(self)))}")
            nested.setdefault(owner, {})[key] = value
        changed = {owner: children[owner].with_overrides(**values) for owner, values in nested.items()}
        return replace(self, **own, **changed)  # type: ignore[type-var]

    def values(self) -> dict[str, Any]:
        """Every leaf setting by name, nested settings flattened."""
        flat: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            flat.update(value.values() if isinstance(value, SettingsTree) else {item.name: value})
        return flat


def _field_names(node: Any) -> set[str]:
    return {item.name for item in fields(node)}


def _all_names(node: Any) -> set[str]:
    names: set[str] = set()
    for item in fields(node):
        value = getattr(node, item.name)
        names |= _all_names(value) if is_dataclass(value) else {item.name}
    return names


def knobs(node: Any) -> Iterator[tuple[str, Knob, Any, type]]:
    """(name, knob, current value, type) of every knob in a settings tree, in field order."""
    for item in fields(node):
        value = getattr(node, item.name)
        if isinstance(value, SettingsTree):
            yield from knobs(value)
        elif "knob" in item.metadata:
            kind = type(item.default) if item.default not in (None, MISSING) else int
            yield item.name, item.metadata["knob"], value, kind


def add_knob_flags(parser: argparse.ArgumentParser, settings: Any) -> list[str]:
    """One command-line flag per knob of a settings tree (`-k`, `--max-new-tokens`, ...); returns the knob names
    (each flag's value lands under its knob's name, None when not given)."""
    names = []
    for name, knob, value, kind in knobs(settings):
        flag = f"-{name}" if len(name) == 1 else "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, choices=knob.choices or None,
                            help=f"{knob.help or knob.label} (default: {value})")
        names.append(name)
    return names


@dataclass(frozen=True)
class GenerationSettings(SettingsTree):
    """Sampling. `temperature == 0` is greedy decoding (top_p/top_k then unused); `top_k == 0` and `top_p == 1`
    switch those filters off; `stop` strings end the text (and are cut from it); a `seed` makes sampling
    reproducible."""

    max_new_tokens: int = setting(160, "Max new tokens", "answer length limit in tokens", low=4, high=1024, step=4)
    temperature: float = setting(0.0, "Temperature (0 = greedy)", "0 for greedy decoding", low=0.0, high=1.5,
                                 step=0.05)
    top_p: float = setting(1.0, "Top-p", "nucleus sampling share (1 = off)", low=0.05, high=1.0, step=0.05)
    top_k: int = setting(0, "Top-k (0 = off)", "sample among the k likeliest tokens", low=0, high=200, step=1)
    repetition_penalty: float = setting(1.1, "Repetition penalty", "1 is off", ui=False)
    stop: tuple[str, ...] = ()
    seed: int | None = setting(None, "Seed", "makes sampled answers reproducible", ui=False)

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


@dataclass(frozen=True)
class SearchOptions(SettingsTree):
    """How to search: result count, mode, filters, fusion, the candidate pool, and the abstain threshold."""

    k: int = setting(5, "Passages to retrieve", "passages to retrieve", low=1, high=12, step=1)
    mode: SearchMode = setting("hybrid", "Search mode", "hybrid, dense or lexical", choices=SEARCH_MODES)
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    candidates: int = 100
    merge_neighbours: bool = True
    min_relevance: float = setting(0.5, "Relevance threshold", "abstain when no passage reaches it; lower it to answer "
                                   "from a refusal's closest passages", low=0.0, high=1.0, step=0.01)
    fusion: FusionMethod = "rrf"
    rrf_k: int = RRF_K
    dense_weight: float = 0.5
    rerank_depth: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_types", tuple(self.file_types or ()))
        if self.k < 1 or self.candidates < 1:
            raise ValueError(f"k and candidates must be at least 1 (got k={self.k}, candidates={self.candidates})")
        if self.mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {self.mode!r}: choose one of {', '.join(SEARCH_MODES)}")


@dataclass(frozen=True)
class AgentSettings(SettingsTree):
    """How the agent searches, thinks and generates; any leaf can be overridden per question."""

    generation: GenerationSettings = field(default_factory=GenerationSettings)
    search: SearchOptions = field(default_factory=SearchOptions)
    max_steps: int = setting(1, "Agent steps (extra searches or reads)", "ReAct decisions before answering",
                             low=0, high=3, step=1)
    answer_mode: AnswerMode = setting(
        "auto", "Answer mode", "generative: the model's words, unsupported sentences marked; extractive: the "
        "passages' own sentences; auto: the model's words while every sentence is supported, else the passages'",
        choices=ANSWER_MODES)
    condense: Literal["deterministic", "llm"] = "deterministic"

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ValueError(f"max_steps={self.max_steps}: use 0 to skip the ReAct decisions, or a positive cap")
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"unknown answer mode {self.answer_mode!r}: choose one of {', '.join(ANSWER_MODES)}")


@dataclass(frozen=True)
class ChunkingSettings(SettingsTree):
    """Limits per chunk: tokens as the embedder counts them (special tokens included), and characters."""

    max_tokens: int = 256
    overlap_tokens: int = 32
    max_chars: int = 2000


@dataclass(frozen=True)
class IngestOptions(SettingsTree):
    """What to take from the paths and how to cut it (`chunking=None`: chunks as long as the embedder's window)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_mb: float = 50.0
    chunking: ChunkingSettings | None = None
    batch_chunks: int = 512
    vector_index: str | None = None


@dataclass(frozen=True)
class ModelSettings(SettingsTree):
    """Which models to use, on which device or server, and how big the window is.

    `embedder=None` means the index decides (rag_app.index.choose_embedder): the one it was built with, else
    `RAG_APP_EMBEDDER`, else one that suits the corpus's language. `llm=None` means SmolLM2-135M-Instruct in
    process, or the only model of the server at `llm_url`. With `llm_url` (an OpenAI-compatible base URL ending
    in /v1) the LLM is served; with `embedder_url` the embedder is (`embedder` then names the served model).
    """

    embedder: str | None = None
    llm: str | None = None
    device: str = "auto"
    context_window: int | None = None
    llm_url: str | None = None
    llm_api_key: str | None = None
    embedder_url: str | None = None
    embedder_api_key: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> ModelSettings:
        """Defaults, then `RAG_APP_*` variables, then the non-None keyword overrides."""
        window = os.environ.get(ENV_CONTEXT_WINDOW)
        settings = cls(
            llm=os.environ.get(ENV_LLM) or None,
            device=os.environ.get(ENV_DEVICE, "auto"),
            context_window=int(window) if window else None,
            llm_url=os.environ.get(ENV_LLM_URL) or None,
            llm_api_key=os.environ.get(ENV_LLM_API_KEY) or None,
            embedder_url=os.environ.get(ENV_EMBEDDER_URL) or None,
            embedder_api_key=os.environ.get(ENV_EMBEDDER_API_KEY) or None,
        )
        return settings.with_overrides(**overrides)
