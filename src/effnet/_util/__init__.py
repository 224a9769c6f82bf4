"""Plumbing shared by every package: atomic file writes and locks, console output, hardware facts, flag checks
and the checks of every value read from a file (filecheck)."""
