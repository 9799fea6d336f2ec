"""A chat request in the OpenAI API's shape, with the sampling settings in the form each server takes them.

`max_tokens`, `temperature`, `top_p`, `seed` and `stop` are standard. `top_k` and `repetition_penalty` are not
OpenAI fields (docs/serving-notes.md): vLLM takes them as top-level extras, llama.cpp as `top_k` /
`repeat_penalty`, transformers serve only inside a `generation_config` JSON string (it answers 422 to unknown
fields, and samples only when that config says `do_sample`), and Ollama's /v1 and the plain API not at all.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from rag_app.config import GenerationSettings
from rag_app.models.tokens import Messages

OPENAI_MAX_STOPS = 4  # the plain OpenAI API refuses more; all of them are cut on our side anyway
EXTRAS_TAKEN = {"transformers": "top_k, repetition_penalty (in generation_config)",
                "vllm": "top_k, repetition_penalty", "llamacpp": "top_k, repeat_penalty"}


def request_body(model: str, dialect: str, messages: Messages, settings: GenerationSettings,
                 tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for a streamed request (usage asked for)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": wire_messages(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.stop:
        body["stop"] = list(settings.stop)[:OPENAI_MAX_STOPS] if dialect == "openai" else list(settings.stop)
    if tools:
        body["tools"] = tools
    extra = sampling_extras(dialect, settings)
    if extra:
        body["extra_body"] = extra
    return body


def sampling_extras(dialect: str, settings: GenerationSettings) -> dict[str, Any]:
    """top_k and the repetition penalty in this server's form; {} for servers that take neither."""
    top_k, penalty = settings.top_k, settings.repetition_penalty
    if dialect == "transformers":
        # The model's generation config decides do_sample unless told: say it, or temperature is ignored.
        config: dict[str, Any] = {"do_sample": not settings.greedy, "repetition_penalty": penalty}
        if not settings.greedy:
            config.update(temperature=settings.temperature, top_p=settings.top_p, top_k=top_k)
        return {"generation_config": json.dumps(config)}
    if dialect == "vllm":
        return {"top_k": top_k if top_k > 0 else -1, "repetition_penalty": penalty}
    if dialect == "llamacpp":
        # llama.cpp's own defaults (top_k 40, min_p 0.05) would filter even when we asked for no filter.
        return {"top_k": top_k, "repeat_penalty": penalty, "min_p": 0.0}
    return {}


def dropped_settings(dialect: str, settings: GenerationSettings) -> list[str]:
    """The sampling settings this server cannot take per request (so they are not sent)."""
    if dialect in EXTRAS_TAKEN:
        return []
    return [name for name, unset in (("top_k", settings.top_k == 0),
                                     ("repetition_penalty", settings.repetition_penalty == 1.0)) if not unset]


def wire_messages(messages: Messages) -> Messages:
    """Messages as the OpenAI API wants them: assistant tool calls with ids, types and JSON-string arguments,
    and tool results linked to those ids (made up in order when the engine's messages carry none)."""
    converted: Messages = []
    pending: list[str] = []
    for position, message in enumerate(messages):
        message = {**message, "content": message.get("content") or ""}
        if message.get("tool_calls"):
            message["tool_calls"] = [_wire_call(call, f"call_{position}_{number}")
                                     for number, call in enumerate(message["tool_calls"])]
            pending = [call["id"] for call in message["tool_calls"]]
        elif message.get("role") == "tool" and not message.get("tool_call_id") and pending:
            message["tool_call_id"] = pending.pop(0)
        converted.append(message)
    return converted


def _wire_call(call: dict[str, Any], default_id: str) -> dict[str, Any]:
    function = dict(call.get("function") or {key: call[key] for key in ("name", "arguments") if key in call})
    if not isinstance(function.get("arguments", ""), str):
        function["arguments"] = json.dumps(function["arguments"], ensure_ascii=False)
    return {"id": call.get("id") or default_id, "type": "function", "function": function}


def tool_call_block(name: str, arguments: str) -> str:
    """A native tool call as the engine's one text format: `<tool_call>{"name", "arguments"}</tool_call>`."""
    parsed: Any = arguments
    with contextlib.suppress(json.JSONDecodeError):  # else the raw string: the engine reports it
        parsed = json.loads(arguments) if arguments.strip() else {}
    return "<tool_call>" + json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False) + "</tool_call>"
