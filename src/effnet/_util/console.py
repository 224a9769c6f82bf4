"""Console manners shared by the CLI and the trainer: when to draw progress bars, and JSON output."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields, is_dataclass
from pathlib import PurePath
from typing import Any, TextIO

_FALSE = ("", "0", "false", "no", "off")


def tqdm_disabled_by_env() -> bool:
    """True when TQDM_DISABLE is set to a true value (tqdm's own switch, honoured even where bars are forced)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in _FALSE


def show_bar(requested: bool = True, stream: TextIO | None = None) -> bool:
    """Whether to draw a progress bar: requested, `stream` (stderr) is a terminal, and TQDM_DISABLE is not set.

    Redirected output (a log file, a pipe, CI) then gets the result lines only, not thousands of bar frames.
    """
    stream = stream if stream is not None else sys.stderr
    is_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return requested and is_terminal and not tqdm_disabled_by_env()


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, tuples, sets and dicts with non-string keys as plain JSON data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_jsonable(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):  # e.g. CPU flags: sorted, so the output is stable
        return sorted(to_jsonable(item) for item in value)
    return value


def print_json(value: Any) -> None:
    """Print `value` as one JSON document on stdout (the CLI's `--json` output)."""
    print(json.dumps(to_jsonable(value), indent=2))
