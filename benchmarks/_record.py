"""Writing a benchmark's table into its marked section of BENCHMARKS.md (shared by the benchmark scripts)."""

from __future__ import annotations

import re
from pathlib import Path

from effnet.fileio import write_text_atomic


def replace_section(path: Path, marker: str, body: str) -> None:
    """Put `body` between `marker` and the next `<!-- section:` marker of `path`, leaving the rest alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(marker) + r".*?(?=<!-- section:|\Z)", re.S)
    section = f"{marker}\n{body.rstrip()}\n\n"
    text = pattern.sub(lambda _: section, text) if marker in text else text.rstrip() + "\n\n" + section
    write_text_atomic(path, text)
