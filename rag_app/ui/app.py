"""The Gradio Blocks: the chat (endpoint `/chat`) with per-session settings, the context meter, export,
the index picker with its stats, and ingestion of uploads or allowed server folders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr

from ingest.report import IngestReport
from rag_app.config import AgentSettings, IngestOptions
from rag_app.models.chat import ChatLLM
from rag_app.ui.chat import Answers, make_respond, ui_knobs
from rag_app.ui.export import conversation_turns, remove_exports, to_json, to_markdown, write_export
from rag_app.ui.indexes import IndexCatalog, progress_bar, run_ingest, save_uploads
from rag_app.ui.manage import IndexManager
from rag_app.ui.render import Message, client_safe
from rag_app.ui.security import AllowedRoots

TITLE = "rag_app: ask your documents"
IngestOutput = tuple[str, str, Any, str]
# Answers made at once, unless the operator says. In process the model generates one answer at a time (a lock),
# so 2 lets one session retrieve while another generates. A served model takes concurrent requests and its
# server schedules them (vLLM batches them): 8 is the most users measured (bench/bench_serving.py, README).
IN_PROCESS_CONCURRENCY = 2
SERVED_CONCURRENCY = 8


def default_concurrency(llm: ChatLLM) -> int:
    """How many answers to make at once with this LLM when the operator does not say."""
    return SERVED_CONCURRENCY if llm.concurrent else IN_PROCESS_CONCURRENCY


@dataclass(frozen=True)
class UIOptions:
    """What the operator decides for every session: limits, allowed server folders, starting settings
    (`concurrency` None: `default_concurrency` of the LLM), ingest options (the file limit is `max_upload_mb`)."""

    concurrency: int | None = None
    allowed_roots: AllowedRoots = field(default_factory=lambda: AllowedRoots([]))
    defaults: AgentSettings = field(default_factory=AgentSettings)
    max_upload_mb: float = 50.0
    ingest: IngestOptions = field(default_factory=IngestOptions)


def settings_inputs(defaults: AgentSettings) -> list[gr.components.Component]:
    """One control per UI knob of the settings (rag_app.config); Gradio keeps their values per browser session."""
    return [
        gr.Radio(list(knob.choices), value=value, label=knob.label) if knob.choices
        else gr.Slider(knob.low, knob.high, value=value, step=knob.step, label=knob.label)
        for _, knob, value, _ in ui_knobs(defaults)
    ]


def _report_markdown(report: IngestReport) -> str:
    counts = report.to_dict()["counts"]
    verdict = "✅ Ingested" if report.ok else "⚠️ Ingested with problems"
    lines = [f"**{verdict}:** " + ", ".join(f"{count} {name}" for name, count in counts.items()),
             f"{report.chunks_written} chunks written in {report.seconds:.1f} s; new documents are searchable now."]
    lines += [f"- note: {note}" for note in report.notes]
    lines += [f"- skipped `{item.path}`: {item.reason}" for item in report.skipped]
    return "\n".join(lines)


def _ingest_events(catalog: IndexCatalog, index: str | None, paths: Sequence[Path],
                   options: IngestOptions) -> Iterator[IngestOutput]:
    for progress, report in run_ingest(paths, catalog.index(index), options):
        if report is None:
            yield progress_bar(progress), gr.skip(), gr.skip(), gr.skip()
        else:
            done = f"<progress id='ingest-progress' value='1' max='1'></progress> done in {report.seconds:.1f} s"
            yield done, _report_markdown(report), client_safe(report.to_dict()), catalog.stats_markdown(index)


class Handlers:
    """What the UI's buttons do, over one catalogue; every call is stateless apart from the session's inputs."""

    def __init__(self, catalog: IndexCatalog, options: UIOptions) -> None:
        self.catalog = catalog
        self.options = options
        self.ingest_options = replace(options.ingest, max_file_mb=options.max_upload_mb)

    def refresh_indexes(self, index: str | None) -> tuple[Any, str]:
        names = self.catalog.names()
        chosen = index if index in names else self.catalog.default_name
        return gr.Dropdown(choices=names, value=chosen), self.catalog.stats_markdown(chosen)

    def ingest_uploads(self, files: list[str] | None, index: str | None) -> Iterator[IngestOutput]:
        if not files:
            raise gr.Error("choose one or more files to upload first")
        try:
            saved = save_uploads(files, self.catalog.path(index))
            yield from _ingest_events(self.catalog, index, saved, self.ingest_options)
        except gr.Error:
            raise
        except Exception as error:
            raise gr.Error(f"ingest failed: {error}") from error

    def ingest_folder(self, folder: str, index: str | None) -> Iterator[IngestOutput]:
        try:
            checked = self.options.allowed_roots.check(folder or "")
            yield from _ingest_events(self.catalog, index, [checked], self.ingest_options)
        except Exception as error:
            raise gr.Error(str(error)) from error

    def export_markdown(self, history: list[Message], answers: Answers, index: str | None,
                        request: gr.Request) -> str:
        turns = conversation_turns(history or [], answers or {})
        return write_export(to_markdown(turns, index or self.catalog.default_name), ".md", request.session_hash)

    def export_json(self, history: list[Message], answers: Answers, index: str | None, request: gr.Request) -> str:
        turns = conversation_turns(history or [], answers or {})
        return write_export(to_json(turns, index or self.catalog.default_name), ".json", request.session_hash)

    @staticmethod
    def end_session(request: gr.Request) -> None:
        """The browser tab closed: remove the session's exports."""
        remove_exports(request.session_hash)


def _documents_column(catalog: IndexCatalog, options: UIOptions,
                      handlers: Handlers) -> tuple[gr.Dropdown, gr.Markdown]:
    """The index picker with its stats, and ingestion of uploads or allowed server folders."""
    # Any name is accepted here and checked by the catalogue (names only, never paths), so that an index another
    # session created is usable at once, without a page reload.
    index = gr.Dropdown(catalog.names(), value=catalog.default_name, label="Index", elem_id="index-picker",
                        allow_custom_value=True)
    stats = gr.Markdown(catalog.stats_markdown(catalog.default_name), elem_id="index-stats")
    gr.Markdown(catalog.model_markdown(), elem_id="model-info")
    refresh = gr.Button("Refresh indexes", size="sm")
    with gr.Accordion("Add documents", open=True):
        uploads = gr.File(file_count="multiple", type="filepath", label="Upload files", elem_id="upload-files")
        ingest_button = gr.Button("Ingest uploaded files", variant="primary", elem_id="ingest-uploads")
        if options.allowed_roots:
            folder = gr.Textbox(label=f"Server folder (inside {options.allowed_roots.describe()})",
                                elem_id="server-folder")
            folder_button = gr.Button("Ingest server folder", elem_id="ingest-folder")
        progress = gr.HTML("", elem_id="ingest-progress-box")
        report_text = gr.Markdown("", elem_id="ingest-report")
        with gr.Accordion("Ingestion report (JSON)", open=False):
            report_json = gr.JSON(label="Ingestion report")
    manager = IndexManager(catalog)
    documents = manager.build(index, stats)
    outputs = [progress, report_text, report_json, stats]
    ingest_button.click(handlers.ingest_uploads, [uploads, index], outputs, api_name="ingest_uploads",
                        concurrency_limit=1, concurrency_id="ingest").then(manager.documents, [index], [documents])
    if options.allowed_roots:
        folder_button.click(handlers.ingest_folder, [folder, index], outputs, api_name="ingest_folder",
                            concurrency_limit=1, concurrency_id="ingest").then(manager.documents, [index], [documents])
    refresh.click(handlers.refresh_indexes, [index], [index, stats], api_name="indexes")
    index.change(catalog.stats_markdown, [index], [stats], api_visibility="private")
    return index, stats


def _chat_column(catalog: IndexCatalog, options: UIOptions, handlers: Handlers, index: gr.Dropdown) -> None:
    """The chat (endpoint `/chat`) with its settings, context meter and export buttons."""
    answers = gr.State({})
    context = gr.Markdown("", label="Context meter", elem_id="context-meter")
    answer_json = gr.JSON(visible=False, label="Last answer")
    with gr.Accordion("Settings", open=False, elem_id="chat-settings"):
        inputs = settings_inputs(options.defaults)
    chat = gr.ChatInterface(
        make_respond(catalog, options.defaults),
        chatbot=gr.Chatbot(elem_id="chatbot", height=560, sanitize_html=True, label="Chat"),
        # A custom textbox brings its own buttons: without stop_btn there is no Stop while an answer streams.
        # Stop cancels the event; Gradio then closes `respond`, which closes the Response and ends generation.
        textbox=gr.Textbox(elem_id="chat-input", placeholder="Ask a question about your documents",
                           show_label=False, scale=7, submit_btn=True, stop_btn=True),
        additional_inputs=[*inputs, index, answers],
        additional_outputs=[context, answer_json, answers],
        api_name="chat",
        api_description="Ask a question (other inputs are optional); returns the messages, the context "
                        "meter and the full answer with sources. The session keeps the conversation.",
        concurrency_limit=options.concurrency or default_concurrency(catalog.llm()),
        fill_height=False,
    )
    with gr.Row():
        markdown_button = gr.Button("Export Markdown", size="sm", elem_id="export-md")
        json_button = gr.Button("Export JSON", size="sm", elem_id="export-json")
    exported = gr.File(label="Exported conversation", interactive=False, elem_id="export-file")
    conversation = [chat.chatbot_state, answers, index]
    markdown_button.click(handlers.export_markdown, conversation, [exported], api_name="export_markdown")
    json_button.click(handlers.export_json, conversation, [exported], api_name="export_json")
    chat.chatbot.clear(lambda: "", None, [context], api_visibility="private")


def build_app(catalog: IndexCatalog, options: UIOptions | None = None) -> gr.Blocks:
    """The whole UI over an index catalogue; models are shared, history and settings are per session."""
    options = options or UIOptions()
    handlers = Handlers(catalog, options)
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}")
        with gr.Row():
            with gr.Column(scale=1):
                index, stats = _documents_column(catalog, options, handlers)
            with gr.Column(scale=3):
                _chat_column(catalog, options, handlers, index)
        app.load(handlers.refresh_indexes, [index], [index, stats], api_visibility="private")
        app.unload(handlers.end_session)
    return app


def launch(app: gr.Blocks, *, host: str, port: int, share: bool, auth: list[tuple[str, str]] | None,
           max_upload_mb: float, queue_size: int | None = None, block: bool = True) -> gr.Blocks:
    """Serve the app through the queue; uploads over `max_upload_mb` are refused by Gradio itself."""
    app.queue(max_size=queue_size)
    app.launch(server_name=host, server_port=port, share=share, auth=auth or None,
               max_file_size=f"{max_upload_mb:g}mb", prevent_thread_lock=not block, quiet=not block,
               show_error=True)
    return app
