"""The package keeps its layers one-way and its modules free of import cycles (import-linter, pyproject.toml)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    # lint-imports reads the sources (grimp parses them, nothing is imported) in its own process: it configures
    # logging for itself (dictConfig), which in this process would disable effnet's loggers and close the handlers
    # earlier tests left. The report names every import that breaks a contract.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    script = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_module_map_names_every_module_and_nothing_else():
    # docs/architecture.md lists every module by its path; a module added, moved or removed shows here.
    # (tests/test_docs_links.py checks the page's other paths and effnet.* names.)
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "src" / "effnet").rglob("*.py")}
    named = set(re.findall(r"src/effnet/[\w/]+\.py", text))
    assert not modules - named, f"docs/architecture.md's module map lacks {sorted(modules - named)}"
    assert not named - modules, f"docs/architecture.md names modules that do not exist: {sorted(named - modules)}"
