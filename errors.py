"""Errors caused by the user's input. The CLIs print these as one line and exit non-zero."""


class UserError(Exception):
    """Bad input: a flag value, a game name, a checkpoint. Never a bug in the library."""


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or inconsistent with another."""
