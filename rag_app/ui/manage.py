"""The UI's index management: create and delete indexes (names checked), and remove a document from one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from rag_app.ui.indexes import NAME_RULE, UPLOADS_FOLDER, IndexCatalog

ManageOutput = tuple[Any, str, Any]


def document_label(path: str) -> str:
    """How a document is listed: an upload by the name it was uploaded with, any other file by its path."""
    stored = Path(path)
    if stored.parent.parent.name == UPLOADS_FOLDER:
        return f"{stored.name} (uploaded, {stored.parent.name[:8]})"
    return path


class IndexManager:
    """What the index-management buttons do over one catalogue; errors are shown to the user, who retries."""

    def __init__(self, catalog: IndexCatalog) -> None:
        self.catalog = catalog

    def documents(self, index: str | None) -> Any:
        """The document picker for index `index`: labels shown, stored paths as values."""
        try:
            paths = self.catalog.documents(index)
        except Exception:  # a missing or damaged index: its stats say why
            paths = []
        return gr.Dropdown(choices=[(document_label(path), path) for path in paths], value=None)

    def _chosen(self, index: str | None) -> ManageOutput:
        return (gr.Dropdown(choices=self.catalog.names(), value=index), self.catalog.stats_markdown(index),
                self.documents(index))

    def create(self, name: str) -> ManageOutput:
        try:
            created = self.catalog.create(name)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        return self._chosen(created)

    def delete(self, index: str | None) -> ManageOutput:
        try:
            self.catalog.delete(index)
        except Exception as error:  # a busy, unknown or protected index: say why
            raise gr.Error(str(error)) from error
        return self._chosen(self.catalog.default_name)

    def remove(self, index: str | None, path: str | None) -> tuple[str, Any]:
        if not path:
            raise gr.Error("choose a document to remove first")
        try:
            self.catalog.remove_document(index, path)
        except Exception as error:  # an unknown document, or an ingest writing to the index: say why
            raise gr.Error(str(error)) from error
        return self.catalog.stats_markdown(index), self.documents(index)

    def build(self, index: gr.Dropdown, stats: gr.Markdown) -> gr.Dropdown:
        """The "Manage indexes" controls, wired to the index picker and its stats; returns the document picker."""
        with gr.Accordion("Manage indexes", open=False):
            name = gr.Textbox(label=f"New index name ({NAME_RULE})", elem_id="new-index-name")
            create = gr.Button("Create index", size="sm", elem_id="create-index")
            delete = gr.Button("Delete the chosen index", size="sm", variant="stop", elem_id="delete-index")
            documents = gr.Dropdown([], label="Documents of the chosen index", elem_id="documents",
                                    allow_custom_value=True)  # checked against the index's own documents
            remove = gr.Button("Remove document from index", size="sm", elem_id="remove-document")
        create.click(self.create, [name], [index, stats, documents], api_name="create_index",
                     concurrency_limit=1, concurrency_id="ingest")
        delete.click(self.delete, [index], [index, stats, documents], api_name="delete_index",
                     concurrency_limit=1, concurrency_id="ingest")
        remove.click(self.remove, [index, documents], [stats, documents], api_name="remove_document",
                     concurrency_limit=1, concurrency_id="ingest")
        index.change(self.documents, [index], [documents], api_visibility="private")
        return documents
