"""A terminal progress bar fed by the pipeline's progress events: chunks embedded (the slow part), files, ETA."""

from __future__ import annotations

from tqdm import tqdm

from ingest.report import IngestProgress


class ProgressBar:
    """tqdm over the chunks given vectors, out of the chunks to embed (an estimate until every file is read), with
    the files finished in the postfix; tqdm computes the ETA from the chunk rate."""

    def __init__(self, disabled: bool = False) -> None:
        self.bar = tqdm(total=0, unit="chunk", desc="ingest", disable=disabled, dynamic_ncols=True)

    def update(self, event: IngestProgress) -> None:
        """Advance to `event`; tqdm redraws at most every 0.1 s, so a fast re-ingest is not slowed down."""
        if self.bar.total != event.chunks_total:
            self.bar.total = event.chunks_total
        # "saved": a file counts once its chunks are committed, so "files 0/7" at 58% of the chunks read as stuck.
        self.bar.set_postfix_str(f"files saved {event.files_done}/{event.files_total}", refresh=False)
        self.bar.update(event.chunks_embedded - self.bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
