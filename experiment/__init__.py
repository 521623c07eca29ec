"""The run machinery every agent shares: flags and run configuration, one runner for the
single-thread and parallel paths, checkpoints and run records, seeding, preflight checks, the
evaluation of a saved checkpoint, and the one-line errors of bad input."""
