"""The package keeps its layers one-way and its modules free of import cycles (import-linter, pyproject.toml)."""

from __future__ import annotations

import logging
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(capsys):
    # Reads the sources (grimp parses them, nothing is imported); the report names every import that breaks a
    # contract, printed on failure.
    # import-linter configures logging with dictConfig, which disables every logger that already exists (effnet's
    # own, e.g. effnet.data.folder's skipped-image warnings that later tests read): enable them again after.
    enabled = [log for log in logging.root.manager.loggerDict.values() if isinstance(log, logging.Logger)]
    enabled = [log for log in enabled if not log.disabled]
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    for log in enabled:
        log.disabled = False
    report = capsys.readouterr().out
    assert status == 0, report
    assert "Contracts: 3 kept, 0 broken." in report
