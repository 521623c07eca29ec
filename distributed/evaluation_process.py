"""Evaluation beside training, for the multi-process loop.

At the end of iteration k the learner copies its weights into a shared-memory snapshot and asks
an evaluation process to play `num_eval_steps` with them, then goes on with iteration k + 1.
Row k (training statistics of iteration k and its evaluation) is written when the result
arrives. At most one evaluation is outstanding: if iteration k + 1 ends before evaluation k
does, the learner waits for it, so rows stay in order and the snapshot is never overwritten
while the evaluation process may still read it.

Checkpoint k is written right after evaluation k is asked for, and carries row k's training
statistics while its evaluation is running ("pending"). Row k - 1 is always written before
checkpoint k (the learner waited for it), so a kill loses at most row k, which the checkpoint
holds: a resumed run that does not find row k in the CSV evaluates the checkpoint's weights
again (with the same evaluation seed) and writes it. A partial checkpoint (Ctrl-C in the middle
of iteration k + 1) also stores the snapshot, since its learner weights have moved on.

The evaluation process is supervised like the actors: a dead one is noticed within a poll,
restarted with the pending request (the snapshot is still in shared memory), and given up on
with one error line past `max_restarts`; Ctrl-C and SIGTERM stop it with the run. Its interface
(start, submit, receive with a timeout, check_health, stop) is the one a remote backend
implements.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import multiprocessing as std_mp
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.multiprocessing as mp
from absl import logging

import gym_env
from distributed.actors import start_without_sigint
from distributed.shared_weights import SharedWeights
from experiment.errors import UserError
from experiment.seeding import derive_seed
from main_loop import EnvRunner, log_iteration
from tracker import EpisodeTracker, MetricsWriter


class EvaluatorFailure(UserError):
    """The evaluation process died more often than allowed."""


class EvalRequest(NamedTuple):
    iteration: int
    version: int  # Of the snapshot in shared memory: the weights at the end of `iteration`.
    num_steps: int
    seed: int
    # The evaluation actor's own state after the previous evaluation (Agent57's evaluator
    # bandit carries on from one evaluation to the next), or None.
    actor_state: dict | None = None


class EvalResult(NamedTuple):
    iteration: int
    statistics: dict[str, float]  # eval/episode_return and the like.
    seconds: float
    actor_state: dict | None = None  # The actor's own state after this evaluation.


@dataclasses.dataclass(frozen=True)
class EvalActorFactory:
    """Builds the evaluation process's environment and actor (picklable for spawn), as
    factory(seed) -> (env, actor), the way an ActorFactory builds an actor process's.

    `build_network(observation_shape, num_actions)` builds the learner's architecture (its
    weights arrive through shared memory); `build_actor(network, seed=seed)` builds the agent's
    evaluation actor on it. Both must be picklable: module-level functions or classes, or
    functools.partial of them (e.g. partial(RecurrentEpsilonGreedyActor, epsilon=0.001,
    device=cpu); NGU: partial(evaluation_actor, config=config, epsilon=..., policy_index=0)).
    """

    env_spec: gym_env.EnvSpec
    build_network: Callable[[tuple[int, ...], int], torch.nn.Module]
    build_actor: Callable[..., Any]

    def __call__(self, seed: int):
        env = self.env_spec.create(1, seed, num_threads=1)
        network = self.build_network(env.observation_shape, env.num_actions)
        return env, self.build_actor(network, seed=seed)


class _Stopped(Exception):
    pass


def evaluator_process_main(eval_factory, weights: SharedWeights, connection, stop_event) -> None:
    """Body of the evaluation process: play each request with its snapshot, send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # The learner decides when it stops.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    parent = std_mp.parent_process()
    try:
        while not stop_event.is_set() and parent.is_alive():
            if not connection.poll(0.5):
                continue
            request = connection.recv()
            try:
                result = _evaluate(request, eval_factory, weights, stop_event)
            except _Stopped:
                break
            connection.send(result)
    except (EOFError, BrokenPipeError, OSError):
        pass  # The learner is gone.
    finally:
        connection.close()


def _evaluate(request: EvalRequest, eval_factory, weights: SharedWeights, stop_event) -> EvalResult:
    started = time.monotonic()
    env, actor = eval_factory(request.seed)
    has_state = hasattr(actor, "state_dict")
    if request.actor_state is not None and has_state:
        actor.load_state_dict(request.actor_state)
    try:
        version = weights.pull(actor.network, -1)
        if version != request.version:
            # Only one evaluation is outstanding, so nothing publishes meanwhile.
            raise RuntimeError(f"snapshot version {version}, expected {request.version}")
        tracker = EpisodeTracker(env.num_envs)
        steps = 0

        def stop_when_asked(new_steps: int) -> None:
            nonlocal steps
            steps += new_steps
            if steps % 256 < new_steps and stop_event.is_set():
                raise _Stopped

        if request.num_steps > 0:
            EnvRunner(env).run(actor, request.num_steps, tracker, stop_when_asked)
    finally:
        env.close()
    return EvalResult(
        request.iteration,
        tracker.statistics("eval"),
        time.monotonic() - started,
        actor.state_dict() if has_state else None,
    )


class EvalWorker:
    """Starts, feeds, supervises, restarts and stops the evaluation process."""

    def __init__(
        self,
        eval_factory,
        network: torch.nn.Module,
        max_restarts: int = 3,
        shutdown_timeout_s: float = 8.0,
    ) -> None:
        self.eval_factory = eval_factory
        self.snapshot = SharedWeights(network)  # Not the actors': those change every update.
        self.max_restarts = max_restarts
        self.shutdown_timeout_s = shutdown_timeout_s
        self.context = mp.get_context("spawn")
        self.stop_event = self.context.Event()
        self.process = None
        self.connection = None
        self.restarts = 0
        self.pending: EvalRequest | None = None
        self.actor_state: dict | None = None  # As the latest evaluation left it.

    def start(self) -> None:
        self.connection, child = self.context.Pipe(duplex=True)
        self.process = self.context.Process(
            target=evaluator_process_main,
            args=(self.eval_factory, self.snapshot, child, self.stop_event),
            name="evaluator",
            daemon=True,
        )
        start_without_sigint(self.process)
        child.close()  # Ours closed, the learner sees EOF when the child dies.
        if self.pending is not None:
            self._send(self.pending)

    def _send(self, request: EvalRequest) -> None:
        # If it died already, check_health restarts it, and the restart sends this again.
        with contextlib.suppress(BrokenPipeError, OSError):
            self.connection.send(request)

    def submit(self, network: torch.nn.Module, iteration: int, num_steps: int, seed: int) -> None:
        """Snapshots `network` and asks for its evaluation. Only one may be outstanding."""
        if self.pending is not None:
            raise RuntimeError(f"evaluation of iteration {self.pending.iteration} still pending")
        version = self.snapshot.publish(network)
        self.pending = EvalRequest(iteration, version, num_steps, seed, self.actor_state)
        self._send(self.pending)

    def receive(self, timeout: float) -> list[EvalResult]:
        """The finished evaluation, if one arrives within `timeout` seconds."""
        if self.pending is None or self.connection.closed:
            if timeout > 0:
                time.sleep(min(timeout, 0.1))  # Nothing can arrive; keep callers' loops slow.
            return []
        try:
            if not self.connection.poll(timeout):
                return []
            result = self.connection.recv()
        except EOFError:
            self.connection.close()  # Died; check_health restarts it.
            return []
        except Exception:
            # An interrupt in the middle of a read leaves the channel mid-message: replace it.
            self.connection.close()
            self.process.kill()
            return []
        self.pending = None
        if result.actor_state is not None:
            self.actor_state = result.actor_state
        return [result]

    def check_health(self) -> list[str]:
        """Restarts a dead evaluation process with the pending request; raises
        EvaluatorFailure past the restart budget."""
        if self.process is None or self.process.is_alive():
            return []
        code = self.process.exitcode
        if self.restarts >= self.max_restarts:
            raise EvaluatorFailure(
                f"the evaluation process died {_times(self.restarts + 1)} (last exit code "
                f"{code}); stopping the run"
            )
        self.connection.close()
        self.process.join(timeout=1.0)
        self.restarts += 1
        self.start()
        return [f"evaluation process died (exit code {code}); restarted"]

    def stop(self) -> None:
        if self.process is None:
            return
        self.stop_event.set()
        self.process.join(timeout=self.shutdown_timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2.0)
        self.connection.close()


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


@dataclasses.dataclass
class _PendingRow:
    iteration: int
    step: int
    scalars: dict[str, float]
    snapshot: dict[str, torch.Tensor]  # The evaluated weights, for a later checkpoint.


class OverlappedEvaluation:
    """Row bookkeeping around an EvalWorker: iteration k's row is written when its evaluation
    arrives, in order, and a checkpoint holds the row that is still waiting for it."""

    def __init__(
        self,
        worker: EvalWorker,
        writer: MetricsWriter,
        seed: int,
        num_eval_steps: int,
        log: Callable[[str], None] = logging.info,
    ) -> None:
        self.worker = worker
        self.writer = writer
        self.seed = seed
        self.num_eval_steps = num_eval_steps
        self.log = log
        self.pending: _PendingRow | None = None
        self.rows: list[dict[str, float]] = []
        self._network_to_resubmit: torch.nn.Module | None = None

    def __enter__(self) -> OverlappedEvaluation:
        self.worker.start()
        if self._network_to_resubmit is not None:
            self._submit(self._network_to_resubmit)
            self._network_to_resubmit = None
        return self

    def __exit__(self, *exc_info) -> None:
        self.worker.stop()

    def begin(self, iteration: int, step: int, scalars: Mapping[str, float], network) -> None:
        """Iteration `iteration` ended at agent step `step`: evaluates `network` as it is now,
        beside the next iteration. Waits first for the previous evaluation (rows in order);
        the time waited goes into this row as learner/eval_wait_seconds."""
        started = time.monotonic()
        self.finish()
        waited = time.monotonic() - started
        snapshot = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
        scalars = {**scalars, "learner/eval_wait_seconds": waited}
        self.pending = _PendingRow(iteration, step, scalars, snapshot)
        self._submit(network)

    def poll(self) -> None:
        """Between updates: supervises the process and writes a row whose evaluation came."""
        for event in self.worker.check_health():
            self.log(event)
        for result in self.worker.receive(timeout=0.0):
            self._complete(result)

    def finish(self) -> None:
        """Waits (supervising) until the outstanding evaluation's row is written."""
        while self.pending is not None:
            for event in self.worker.check_health():
                self.log(event)
            for result in self.worker.receive(timeout=0.5):
                self._complete(result)

    def state_dict(self, network: torch.nn.Module) -> dict[str, Any]:
        """The row still waiting for its evaluation ({} if none), for a checkpoint of
        `network`. The evaluated weights go in too when they are not `network`'s own (a
        checkpoint written after the learner moved on, e.g. on Ctrl-C)."""
        state: dict[str, Any] = {}
        if self.worker.actor_state is not None:  # the evaluation actor's own, e.g. a bandit
            state["actor_state"] = self.worker.actor_state
        if self.pending is None:
            return state
        state |= {
            "iteration": self.pending.iteration,
            "step": self.pending.step,
            "scalars": dict(self.pending.scalars),
        }
        current = network.state_dict()
        if any(not torch.equal(v, current[k].cpu()) for k, v in self.pending.snapshot.items()):
            state["network"] = self.pending.snapshot
        return state

    def load_state_dict(self, state: Mapping[str, Any], network: torch.nn.Module) -> None:
        """Resume: re-evaluates a checkpoint's pending row unless the CSV already has it.
        `network` holds the checkpoint's weights, used when it stored no snapshot."""
        self.worker.actor_state = state.get("actor_state")
        if "iteration" not in state or self.writer.has_row(int(state["iteration"])):
            return
        if "network" in state:
            network = copy.deepcopy(network)
            network.load_state_dict(state["network"])
        snapshot = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
        scalars = {k: float(v) for k, v in state["scalars"].items()}
        self.pending = _PendingRow(int(state["iteration"]), int(state["step"]), scalars, snapshot)
        self._network_to_resubmit = network
        self.log(f"Evaluating iteration {self.pending.iteration} again: its row was not written")

    def _submit(self, network: torch.nn.Module) -> None:
        iteration = self.pending.iteration
        # One seed per iteration: a repeated evaluation (after a resume) plays the same games.
        seed = derive_seed(self.seed, "evaluation", iteration)
        self.worker.submit(network, iteration, self.num_eval_steps, seed)

    def _complete(self, result: EvalResult) -> None:
        pending = self.pending
        if pending is None or result.iteration != pending.iteration:
            raise RuntimeError(f"unexpected evaluation of iteration {result.iteration}")
        row = {**pending.scalars, **result.statistics, "eval/seconds": result.seconds}
        self.writer.write(pending.iteration, pending.step, row)
        log_iteration(pending.iteration, pending.step, row)
        self.rows.append(row)
        self.pending = None
