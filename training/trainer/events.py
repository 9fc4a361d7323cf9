"""The trainer's progress, one JSON object a line in output_dir/events.jsonl (docs/training.md lists the events)."""

import json
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class Events:
    """Appends one JSON object per line to events.jsonl (main process only), flushed at once so the
    worker relaying them sees each as soon as it is written."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self._handle = open(output_dir / EVENTS_FILE, "a", encoding="utf-8") if enabled else None  # noqa: SIM115

    def emit(self, type_: str, **fields: Any) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps({"type": type_, "time": round(time.time(), 3), **fields}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
