"""How often each model gives a valid ReAct action, remembered across runs: a model that cannot act is not asked.

Each decision step costs a generation before the answer starts (6-7 s of the first token's wait with the bundled
135M model on 2 cores, which never produced a valid action in our measurements). The agent records every decision
here; once a model has had `MIN_DECISIONS` tries and fewer than `MIN_VALID_SHARE` of them were valid actions, the
agent answers from its first search without asking. A model that acts keeps its steps.

The same rule covers `auto` answers (recorded under `checked_answers(model)`): an answer is valid when the model's
first sentence was supported by a passage. The bundled 135M model failed 7 of 8 English and 7 of 8 Chinese checks in
bench_first_token, and each failure cost the whole first-token wait (median 12.5 s English, 16.2 s Chinese, load
6-8) before the extractive answer that is shown anyway; once it has failed enough, `auto` answers extractively at
once.

A new installation starts from the bundled model's measured records (`MEASURED`), so its first answers do not
re-measure what bench_first_token already did: during that probation the first token took 20.5 s (English) and
28.1 s (Chinese), after it 1.84 s and 1.12 s (README, speed table). Any other model starts with no record.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rag_app.atomic import write_atomically
from rag_app.config import DEFAULT_LLM, app_home

MIN_DECISIONS = 8
MIN_VALID_SHARE = 0.25


def checked_answers(model: str) -> str:
    """The record key of a model's `auto` answers (valid: its first sentence was supported by a passage)."""
    return f"{model} [checked answers]"


@dataclass
class ActionRecord:
    """One model's decision steps so far and how many gave a valid action."""

    decisions: int = 0
    valid: int = 0

    @property
    def can_act(self) -> bool:
        return self.decisions < MIN_DECISIONS or self.valid >= MIN_VALID_SHARE * self.decisions


# The bundled model, measured on 2 cores at load 6-9 (`bench.bench_first_token --probation`, as the runs before
# these records were shipped): no valid action in 8 decision steps, and 2 of 16 checked answers (8 English,
# 8 Chinese) with a supported first sentence.
MEASURED = {DEFAULT_LLM: ActionRecord(decisions=8, valid=0),
            checked_answers(DEFAULT_LLM): ActionRecord(decisions=16, valid=2)}


class ActionRecords:
    """Per-model records, kept in a JSON file (`path`), or in memory only when `path` is None; a model without a
    record of its own starts from `measured`."""

    def __init__(self, path: Path | None = None, measured: Mapping[str, ActionRecord] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._records: dict[str, ActionRecord] = {name: replace(record) for name, record in (measured or {}).items()}
        if path is not None and path.is_file():
            # A damaged file is only a lost measurement: start again from what was measured.
            with contextlib.suppress(ValueError, TypeError):
                self._records.update({name: ActionRecord(**counts) for name, counts in
                                      json.loads(path.read_text(encoding="utf-8")).items()})

    @classmethod
    def shared(cls) -> ActionRecords:
        """The records of this installation (under RAG_APP_HOME), starting from the bundled model's measured ones."""
        return cls(app_home() / "action-records.json", MEASURED)

    def get(self, model: str) -> ActionRecord:
        with self._lock:
            return ActionRecord(**asdict(self._records.get(model, ActionRecord())))

    def add(self, model: str, valid: bool) -> None:
        """Count one decision of `model`, and save."""
        with self._lock:
            record = self._records.setdefault(model, ActionRecord())
            record.decisions += 1
            record.valid += valid
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                data = {name: asdict(counts) for name, counts in self._records.items()}
                write_atomically(self.path, json.dumps(data, indent=1).encode())
