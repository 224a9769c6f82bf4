"""Subcommands of the `effnet` CLI, one module per area; each exposes `register(subparsers)`."""
