"""Settings of the multi-process loop: how many actors, how they talk to the learner, and
where they run (--backend)."""

from __future__ import annotations

import dataclasses
import re

from experiment.errors import UserError


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    num_actors: int = 2
    """Actor processes, each stepping --num_envs environments with one batched network call per
    step and sending what it collects to the learner (R2D2 paper: 256 single-environment
    actors)."""
    actor_update_interval: int = 400  # Batch steps between weight pulls (paper: 400).
    """Steps of an actor (each steps all its environments once) between its fetches of the
    learner's latest weights (R2D2 paper: 400)."""
    replay_ratio: float = 1.0  # Samples learned per sample inserted.
    """Samples learned per sample inserted into replay, held both ways: the learner waits for
    data when ahead and actors wait when it is behind (the R2D2 paper's is set by its hardware,
    about 0.2)."""
    messages_in_flight: int = 8  # Per actor: the bound of its channel.
    """Messages an actor may have sent that the learner has not yet read; a full channel makes
    the actor wait, which bounds memory."""
    max_actor_restarts: int = 3  # Per actor, before the run stops.
    """Times one actor process that died is restarted (with a fresh seed) before the run stops
    with an error."""
    publish_period: int = 1  # Learner updates between weight publications.
    """Learner updates between publications of the weights to the shared memory that actors read."""
    wait_timeout_s: float = 1.0
    """Seconds the learner waits at most for actor messages when it may not learn yet, before it
    checks the actors' health again."""
    shutdown_timeout_s: float = 8.0
    """Seconds actors get to stop on their own when the run ends (their channels are drained
    meanwhile) before they are terminated."""
    learner_threads: int = 0  # Torch CPU threads of the learner; 0: the cores actors leave.
    """Torch CPU threads of the learner; 0 takes the cores the actor processes leave free."""

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise UserError(f"num_actors must be at least 1, got {self.num_actors}")
        if self.replay_ratio <= 0:
            raise UserError(f"replay_ratio must be positive, got {self.replay_ratio}")
        if self.actor_update_interval < 1:
            raise UserError("actor_update_interval must be at least 1")


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Where the actors run. Not a hyperparameter: a run may resume on the other backend."""

    backend: str = "process"
    """Where the actors run: 'process' (spawned processes on this machine; needs no Ray) or
    'ray' (Ray actors placed anywhere in a Ray cluster, the learner staying in this process on
    the head node). Checkpoints, --resume, CSV and TensorBoard are the same for both."""
    ray_address: str = ""
    """With --backend=ray: the Ray cluster to join, 'auto' (the one `ray start` started on this
    machine, or RAY_ADDRESS) or host:port of its head; empty starts a Ray instance on this
    machine, bound to the loopback address, and stops it when the run ends."""
    ray_cpus_per_actor: float = 1.0
    """With --backend=ray: CPUs Ray reserves for each actor (fractions allowed: 0.5 puts two
    actors on a core); the cluster needs --num_actors times this many."""

    def __post_init__(self) -> None:
        if self.backend not in ("process", "ray"):
            raise UserError(f"backend must be 'process' or 'ray', got {self.backend!r}")
        if self.ray_cpus_per_actor <= 0:
            raise UserError(f"ray_cpus_per_actor must be positive, got {self.ray_cpus_per_actor}")
        if self.ray_address and not _is_ray_address(self.ray_address):
            raise UserError(
                f"ray_address must be empty, 'auto' or host:port (the head's `ray start` "
                f"address, e.g. 10.0.0.5:6379), got {self.ray_address!r}"
            )
        if self.backend == "process" and (self.ray_address or self.ray_cpus_per_actor != 1.0):
            raise UserError("ray_address and ray_cpus_per_actor only apply with --backend=ray")


def _is_ray_address(address: str) -> bool:
    match = re.fullmatch(r"([\w.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", address)
    return address == "auto" or (match is not None and 0 < int(match.group(2)) < 65536)
