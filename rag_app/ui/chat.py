"""The chat handler: streams an agent's steps and answer into Gradio messages, plus the context meter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rag_app.agent import RagAgent
from rag_app.ui.render import agent_history, escape, meter, render_answer, render_step

Messages = list[dict[str, Any]]


def make_respond(agent_for: Callable[[], RagAgent]) -> Callable[..., Iterator[tuple[Messages, str]]]:
    """A ChatInterface function over whichever agent `agent_for` returns (the index chosen now)."""

    def respond(
        message: str,
        history: list[dict[str, Any]],
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 256,
        k: int = 5,
        mode: str = "hybrid",
    ) -> Iterator[tuple[Messages, str]]:
        agent = agent_for()
        shown: Messages = []
        partial = ""
        for event in agent.stream(
            message, agent_history(history or []), temperature=float(temperature), top_p=float(top_p),
            top_k=int(top_k), max_new_tokens=int(max_new_tokens), k=int(k), mode=mode,
        ):
            if event.kind == "step" and event.step is not None:
                shown.append(render_step(event.step))
                yield shown, ""
            elif event.kind == "token":
                partial += event.text
                yield [*shown, {"role": "assistant", "content": escape(partial)}], ""
            elif event.answer is not None:
                yield [*shown, {"role": "assistant", "content": render_answer(event.answer)}], meter(event.answer)

    return respond
