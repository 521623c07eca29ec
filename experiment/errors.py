"""Errors caused by the user's input. The CLIs print these as one line and exit non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a flag value, a game name, a checkpoint. Never a bug in the library."""


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or inconsistent with another."""


def require_positive(config: object, *names: str) -> None:
    """Raises ConfigError naming the first of `names` whose value in `config` is not > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:  # Also catches NaN.
            raise ConfigError(f"{name} must be positive, got {value}")


class NonFiniteLossError(UserError):
    """A loss or gradient became NaN or infinite. The run stops before the optimiser applies
    it, so the weights and the last checkpoint stay good. Reported as one line like bad input:
    the usual cause is a hyperparameter (a learning rate too large, rewards not clipped)."""

    def __init__(self, quantity: str, value: float, update: int, iteration: int | None = None):
        where = (
            f"update {update}" if iteration is None else f"iteration {iteration}, update {update}"
        )
        super().__init__(
            f"the {quantity} is {value} at {where}; the run stops, keeping its last good checkpoint"
        )
        self.quantity, self.value, self.update, self.iteration = quantity, value, update, iteration

    def at_iteration(self, iteration: int) -> NonFiniteLossError:
        return NonFiniteLossError(self.quantity, self.value, self.update, iteration)


class UnknownEnvironmentError(ValueError):
    """An unknown game or environment id; the message is a single line."""


class UnsupportedEnvironmentError(UnknownEnvironmentError):
    """An environment the agents cannot play (its spaces, its rendering); one-line message."""
