"""Subcommands of the `effnet` CLI, one module per command (NAME, HELP, `register(subparsers)`, `run(args)`); modules
starting with an underscore hold what several commands share."""
