"""Plumbing shared by every package: atomic file writes and locks, console output, hardware facts, flag checks."""
