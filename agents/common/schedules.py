"""Step-indexed schedules (exploration ε, importance-sampling exponent)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LinearSchedule:
    """Goes linearly from `start` to `end` over `duration` steps after `begin`, then stays."""

    start: float
    end: float
    duration: int
    begin: int = 0

    def __call__(self, step: int) -> float:
        if self.duration <= 0:
            return self.end
        fraction = min(max(step - self.begin, 0) / self.duration, 1.0)
        return self.start + fraction * (self.end - self.start)
