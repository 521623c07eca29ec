"""Training loops: single-thread (DQN) and multi-process actor-learner (R2D2 and later).

Both run the same iteration: `num_train_steps` agent steps of training, then
`num_eval_steps` of evaluation with a greedy actor on a separate environment, then a
checkpoint, a CSV row and TensorBoard scalars.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from absl import logging

from tracker import EpisodeTracker, MetricsWriter, ProgressPrinter, ScalarAverager


class ActorLike(Protocol):
    def reset(self) -> None: ...
    def step(self, timestep) -> np.ndarray: ...


class LearnerLike(Protocol):
    num_updates: int

    def ready(self) -> bool: ...
    def step(self) -> Mapping[str, float]: ...


@dataclasses.dataclass(frozen=True)
class IterationSchedule:
    num_iterations: int
    num_train_steps: int
    num_eval_steps: int


class EnvRunner:
    """Steps an EnvironmentBatch with an actor; episodes carry on across calls."""

    def __init__(self, env) -> None:
        self.env = env
        self.timestep = None

    def run(
        self,
        actor: ActorLike,
        num_steps: int,
        tracker: EpisodeTracker,
        after_step: Callable[[int], None] | None = None,
        progress: ProgressPrinter | None = None,
    ) -> int:
        """Runs at least `num_steps` agent steps (whole batches of E); returns steps taken."""
        if self.timestep is None:
            actor.reset()
            self.timestep = self.env.reset()
            tracker.step(self.timestep)
        steps = 0
        while steps < num_steps:
            actions = actor.step(self.timestep)
            self.timestep = self.env.step(actions)
            tracker.step(self.timestep)
            steps += self.env.num_envs
            if after_step is not None:
                after_step(self.env.num_envs)
            if progress is not None:
                progress.update(steps)
        return steps


def evaluate(env, actor: ActorLike, num_steps: int) -> EpisodeTracker:
    """Plays `num_steps` from fresh episodes; only games that finish are counted."""
    tracker = EpisodeTracker(env.num_envs)
    if num_steps > 0:
        EnvRunner(env).run(actor, num_steps, tracker)
    return tracker


class UpdateScheduler:
    """Keeps learner updates at one per `agent_steps_per_update` steps once replay is warm."""

    def __init__(self, agent_steps_per_update: float) -> None:
        self.agent_steps_per_update = agent_steps_per_update
        self.warm_steps = 0
        self.updates_done = 0

    def updates_due(self, new_agent_steps: int, ready: bool) -> int:
        if not ready:
            return 0
        self.warm_steps += new_agent_steps
        due = int(self.warm_steps // self.agent_steps_per_update) - self.updates_done
        self.updates_done += due
        return due


def run_single_thread_training(
    *,
    schedule: IterationSchedule,
    actor: ActorLike,
    learner: LearnerLike,
    agent_steps_per_update: float,
    train_env,
    eval_env,
    eval_actor: ActorLike,
    save_checkpoint: Callable[[int, int], None],
    writer: MetricsWriter,
    start_iteration: int = 0,
    start_step: int = 0,
) -> list[dict[str, float]]:
    """The DQN loop: act, learn every few steps, evaluate, checkpoint. Returns each row."""
    runner = EnvRunner(train_env)
    scheduler = UpdateScheduler(agent_steps_per_update)
    total_steps = start_step
    rows = []
    for iteration in range(start_iteration + 1, schedule.num_iterations + 1):
        started = time.monotonic()
        train_tracker = EpisodeTracker(train_env.num_envs)
        learner_stats = ScalarAverager()

        def learn(new_steps: int) -> None:
            for _ in range(scheduler.updates_due(new_steps, learner.ready())):
                learner_stats.add(learner.step())

        progress = ProgressPrinter(f"iteration {iteration} train", schedule.num_train_steps)
        steps = runner.run(actor, schedule.num_train_steps, train_tracker, learn, progress)
        train_seconds = time.monotonic() - started
        eval_tracker = evaluate(eval_env, eval_actor, schedule.num_eval_steps)
        total_steps += steps
        save_checkpoint(iteration, total_steps)
        row = {
            **train_tracker.statistics("train"),
            **learner_stats.means("learner"),
            **eval_tracker.statistics("eval"),
            "train/steps_per_second": steps / max(train_seconds, 1e-9),
            "learner/num_updates": float(learner.num_updates),
        }
        writer.write(iteration, total_steps, row)
        log_iteration(iteration, total_steps, row)
        rows.append(row)
    return rows


def log_iteration(iteration: int, total_steps: int, row: Mapping[str, Any]) -> None:
    def show(key: str) -> str:
        value = row.get(key, math.nan)
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"

    logging.info(
        "iteration %d, step %d: train return %s (%d games), eval return %s (%d games), "
        "%s steps/s",
        iteration,
        total_steps,
        show("train/episode_return"),
        row.get("train/num_episodes", 0),
        show("eval/episode_return"),
        row.get("eval/num_episodes", 0),
        show("train/steps_per_second"),
    )
