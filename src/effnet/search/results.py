"""Writing results: JSON and CSV, atomically (temp file + rename) so a kill never leaves half a file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._util.fileio import write_text_atomic


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file in the same folder and os.replace."""
    return write_text_atomic(path, text)


def write_json(path: str | Path, data: Any) -> Path:
    """Pretty JSON, atomically."""
    return write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """One row per dict, columns in the first row's order, atomically."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())
