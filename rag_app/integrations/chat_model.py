"""The engine's LLM (in process or served) as a LangChain chat model: streaming, usage, tool calls where allowed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ToolCallChunk,
    UsageMetadata,
)
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from rag_app.config import DEFAULT_LLM, GenerationSettings, ModelSettings
from rag_app.models.registry import load_llm
from rag_app.react import parse_tool_calls

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as the role/content dicts a chat template takes (assistant tool calls kept)."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.role if isinstance(message, ChatMessage) else _ROLES.get(message.type, "user")
        entry: dict[str, Any] = {"role": role, "content": message.text}
        if isinstance(message, AIMessage) and message.tool_calls:
            entry["tool_calls"] = [
                {"type": "function", "function": {"name": call["name"], "arguments": call["args"]}}
                for call in message.tool_calls
            ]
        converted.append(entry)
    return converted


def tool_call_chunks(text: str) -> tuple[str, list[ToolCallChunk]]:
    """A reply's plain text and its tool calls (parsed by the agent's one parser) as LangChain chunks."""
    content, calls = parse_tool_calls(text)
    return content, [
        ToolCallChunk(name=call.name, index=index, id=f"call_{uuid.uuid4().hex[:12]}", type="tool_call_chunk",
                      args=json.dumps(call.arguments))
        for index, call in enumerate(calls)
    ]


class RagChatModel(BaseChatModel):
    """The engine's chat model (SmolLM2-135M-Instruct in process by default; `base_url=".../v1"` for any
    OpenAI-compatible server's), loaded once per process.

    Tool calling works only with models whose chat template takes tools; SmolLM2's does not,
    so `bind_tools` refuses it rather than binding tools the model would never see.
    """

    model: str = DEFAULT_LLM
    device: str = "auto"
    context_window: int | None = None
    base_url: str | None = None  # an OpenAI-compatible server (.../v1): its model answers instead
    api_key: str | None = Field(default=None, exclude=True, repr=False)
    llm: Any = Field(exclude=True)  # a ChatLLM (a Protocol, which pydantic cannot check)
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.1
    stop: list[str] | None = None
    seed: int | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _load_llm(cls, values: Any) -> Any:
        if isinstance(values, dict):
            if values.get("llm") is None:
                models = ModelSettings(llm=values.get("model"), device=values.get("device", "auto"),
                                       context_window=values.get("context_window"), llm_url=values.get("base_url"),
                                       llm_api_key=values.get("api_key"))
                values = {**values, "llm": load_llm(models)}
            values.setdefault("model", values["llm"].name)
        return values

    @property
    def _llm_type(self) -> str:
        return "rag_app-served" if getattr(self.llm, "base_url", None) else "rag_app-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "backend": self.llm.backend, **asdict(self._settings(None, {}))}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="rag_app",
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    def _settings(self, stop: list[str] | None, overrides: dict[str, Any]) -> GenerationSettings:
        """Sampling from the fields, overridden per call (`max_tokens`, `temperature`, ... and `stop`)."""
        def pick(name: str) -> Any:
            return overrides.get(name, getattr(self, name))

        return GenerationSettings(
            max_new_tokens=pick("max_tokens"), temperature=pick("temperature"), top_p=pick("top_p"),
            top_k=pick("top_k"), repetition_penalty=pick("repetition_penalty"),
            stop=tuple(stop if stop is not None else self.stop or ()), seed=pick("seed"),
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chat = to_chat_messages(messages)
        tools: list[dict[str, Any]] | None = kwargs.get("tools")
        completion = self.llm.stream(chat, self._settings(stop, kwargs), tools)
        if tools:
            content, calls = tool_call_chunks("".join(completion))
            yield ChatGenerationChunk(message=AIMessageChunk(content=content, tool_call_chunks=calls))
        else:
            for piece in completion:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        usage = UsageMetadata(input_tokens=completion.prompt_tokens, output_tokens=completion.completion_tokens,
                              total_tokens=completion.prompt_tokens + completion.completion_tokens)
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=usage, chunk_position="last",
            response_metadata={"model_name": self.model, "finish_reason": completion.finish_reason},
        ))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools through the chat template; the model answers with `<tool_call>` JSON blocks."""
        if not self.llm.native_tools:
            raise NotImplementedError(
                f"{self.model}'s chat template does not take tools; use a model whose template does "
                "(e.g. Qwen2.5-Instruct) for tool calling"
            )
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)
