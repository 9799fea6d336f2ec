"""A terminal progress bar (files, chunks, ETA) fed by the pipeline's progress events."""

from __future__ import annotations

from tqdm import tqdm

from ingest.report import IngestProgress


class ProgressBar:
    """tqdm over files, with the chunk count in the postfix; tqdm computes the ETA."""

    def __init__(self, disabled: bool = False) -> None:
        self.bar = tqdm(total=0, unit="file", desc="ingest", disable=disabled, dynamic_ncols=True)

    def update(self, event: IngestProgress) -> None:
        """Advance to `event`; tqdm redraws at most every 0.1 s, so a fast re-ingest is not slowed down."""
        if self.bar.total != event.files_total:
            self.bar.total = event.files_total
        self.bar.set_postfix(chunks=event.chunks_done, refresh=False)
        self.bar.update(event.files_done - self.bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
