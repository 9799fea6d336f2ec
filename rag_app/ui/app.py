"""The Gradio Blocks: the chat (endpoint `/chat`), its per-session settings, and the context meter."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from rag_app.agent import RagAgent
from rag_app.retrieval import SEARCH_MODES
from rag_app.ui.chat import make_respond

TITLE = "rag_app: ask your documents"


def settings_inputs() -> list[gr.components.Component]:
    """Sampling and retrieval settings; Gradio keeps their values per browser session."""
    return [
        gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)"),
        gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p"),
        gr.Slider(0, 200, value=0, step=1, label="Top-k (0 = off)"),
        gr.Slider(16, 1024, value=256, step=16, label="Max new tokens"),
        gr.Slider(1, 12, value=5, step=1, label="Passages to retrieve"),
        gr.Radio(list(SEARCH_MODES), value="hybrid", label="Search mode"),
    ]


def build_app(agent_for: Callable[[], RagAgent], concurrency_limit: int = 2) -> gr.Blocks:
    """The whole UI over an agent provider; models are shared, history and settings are per session."""
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}")
        context = gr.Markdown("", elem_id="context-meter")
        with gr.Accordion("Settings", open=False):
            inputs = settings_inputs()
        gr.ChatInterface(
            make_respond(agent_for),
            additional_inputs=inputs,
            additional_outputs=[context],
            api_name="chat",
            concurrency_limit=concurrency_limit,
            fill_height=True,
        )
    return app
