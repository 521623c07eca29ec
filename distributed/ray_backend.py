"""The Ray backend of the actor-learner loop: actors as Ray actors, anywhere in a Ray cluster,
feeding the learner in this (the driver) process.

It is the second implementation of main_loop.ActorPoolLike (main_loop.ActorPool, spawned
processes, is the first); the learner, the rate limiter, replay, checkpoints and statistics do
not know which one runs. Design:
- Each Ray actor runs the shared actor loop (main_loop.run_actor_loop) in a thread of its own
  and puts its messages in an outbox guarded by credits, as an actor process writes to its
  channel. The driver keeps one `collect` call in flight per actor; the call hands over what
  the outbox holds, and the next call returns those credits. So at most `messages_in_flight`
  messages of an actor exist, and a learner that stops reading holds its actors back.
- Messages travel as pickled bytes, not as objects. Ray would otherwise deserialise a
  message's numpy arrays as views of its object store, and replay, which keeps some of them,
  would pin every message in the store for as long as it holds a sequence.
- Weights are put in the object store once per publication (a dict of flat arrays, one per
  dtype) with a version counter; every `collect` call carries the latest reference, and the
  actor loop fetches it every `actor_update_interval` steps if its version is newer.
- A Ray actor whose call fails (it died, its node was lost, its loop raised) is killed and
  replaced with a fresh seed, against the same restart budget as an actor process.

Ray is imported only when this backend is chosen, so the process backend needs no Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging as std_logging
import os
import pickle
import queue
import signal
import socket
import threading
import time
from typing import Any

import numpy as np
import torch
from absl import logging

from distributed.actors import ActorMessage, PoolFactory, check_restart_budget, run_actor_loop
from distributed.config import ParallelConfig
from distributed.shared_weights import group_by_dtype, load_flat, shared_keys
from experiment.errors import UserError
from experiment.seeding import derive_seed

RAY_REQUIREMENT = "ray==2.60.0"
# Read by Ray when it is imported: "0" makes every node it starts bind to 127.0.0.1 (the name
# is misleading; on Linux it means exactly that). Set only for a local instance.
LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
COLLECT_WAIT_S = 1.0  # How long one `collect` call waits for a message before returning none.
PLACEMENT_TIMEOUT_S = 120.0  # How long the actors of a new run may take to be placed.
CONNECT_TIMEOUT_S = 5.0  # How long a cluster's address may take to answer at all.


class RaySetupError(UserError):
    """Ray cannot be used as asked: not installed, a bad or silent cluster, too few CPUs."""


def import_ray(local: bool):
    """Imports Ray; for a local instance, first makes it bind to the loopback address."""
    if local:
        os.environ.setdefault(LOOPBACK_VARIABLE, "0")
        # Ray's default for a new instance, said explicitly so that it does not warn about it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise RaySetupError(
            f"--backend=ray needs Ray, which is not installed: pip install {RAY_REQUIREMENT}"
        ) from None
    return ray


# --------------------------------------------------------------------------------------------------
# Weights through the object store
# --------------------------------------------------------------------------------------------------


def flat_weights(network: torch.nn.Module) -> dict[str, np.ndarray]:
    """The network's acting state (every floating tensor of its state_dict, buffers included)
    as one flat CPU array per dtype, in state_dict order: what SharedWeights shares."""
    state = network.state_dict()
    groups = group_by_dtype(state, shared_keys(network))
    return {
        dtype: torch.cat([state[key].detach().reshape(-1) for key in keys]).cpu().numpy()
        for dtype, keys in groups.items()
    }


def load_flat_weights(network: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    # Copied: arrays from the object store are read-only views of it.
    tensors = {dtype: torch.from_numpy(np.array(array)) for dtype, array in arrays.items()}
    load_flat(network, tensors, shared_keys(network))


# --------------------------------------------------------------------------------------------------
# The Ray actor
# --------------------------------------------------------------------------------------------------


class RayActorWorker:
    """One actor inside a Ray actor process: the shared actor loop in a thread, its messages
    in an outbox bounded by credits, handed to the driver by `collect`.

    Wrapped with ray.remote by RayActorPool. The weights reference arrives boxed in a list,
    so that Ray passes the reference instead of fetching the weights for every call.
    """

    def __init__(
        self,
        actor_index: int,
        seed: int,
        actor_factory,
        update_interval: int,
        initial_state: dict | None,
        messages_in_flight: int,
        weights_version: int,
        boxed_weights: list,
    ) -> None:
        torch.set_num_threads(1)
        self._weights = (weights_version, boxed_weights[0])
        self._credits = threading.Semaphore(messages_in_flight)
        self._outbox: queue.SimpleQueue[ActorMessage] = queue.SimpleQueue()
        self._handed_out = 0
        self._error: BaseException | None = None
        loop = functools.partial(
            run_actor_loop,
            actor_index,
            seed,
            actor_factory,
            update_interval,
            initial_state,
            self._pull,
            self._post,
            lambda: False,  # It acts until the driver kills it.
        )
        threading.Thread(target=self._act, args=(loop,), name="actor", daemon=True).start()

    def where(self) -> tuple[str, int]:
        """(node id, process id) of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def collect(self, weights_version: int, boxed_weights: list, wait_s: float) -> bytes:
        """The messages waiting in the outbox (waiting up to `wait_s` for one), pickled.

        The driver calls again only once it has read the previous answer, so its messages'
        credits are returned here. Raises what stopped the actor loop, once its last
        messages are out."""
        if self._handed_out:
            self._credits.release(self._handed_out)
        self._weights = (weights_version, boxed_weights[0])
        messages = []
        with contextlib.suppress(queue.Empty):
            messages.append(self._outbox.get(timeout=wait_s))
            while True:
                messages.append(self._outbox.get_nowait())
        if not messages and self._error is not None:
            raise self._error
        self._handed_out = len(messages)
        return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)

    def _act(self, loop) -> None:
        try:
            loop()
        except BaseException as error:  # Raised to the driver by the next `collect`.
            self._error = error

    def _pull(self, network: torch.nn.Module, known_version: int) -> int:
        import ray

        version, reference = self._weights
        if version == known_version:
            return known_version
        load_flat_weights(network, ray.get(reference))
        return version

    def _post(self, message: ActorMessage) -> bool:
        self._credits.acquire()  # Returned by the `collect` call after the one that took it.
        self._outbox.put(message)
        return True


# --------------------------------------------------------------------------------------------------
# The pool of Ray actors, in the driver
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _RaySlot:
    handle: Any
    restarts: int
    pending: Any = None  # The reference of its `collect` call in flight.
    death: str | None = None  # How it died, once noticed; check_health replaces it.
    node_id: str = ""
    pid: int = 0


class RayActorPool:
    """Starts, supervises, restarts and stops the Ray actors of a run (ActorPoolLike).

    Ray must be initialised: by `session`, which `stop` then closes, or by the caller. Called
    from two threads: the intake thread receives and checks health, the learner thread
    publishes.
    """

    def __init__(
        self,
        config: ParallelConfig,
        actor_factory,
        network: torch.nn.Module,
        seed: int,
        cpus_per_actor: float = 1.0,
        session: RaySession | None = None,
        log=logging.info,
    ) -> None:
        self.ray = import_ray(local=False)
        self.session = session  # Closed by `stop`; None when the caller manages Ray.
        self.config = config
        self.actor_factory = actor_factory
        self.seed = seed
        self.log = log
        self.slots: list[_RaySlot] = []
        self.total_restarts = 0
        self.resume_point = 0  # Agent steps at the checkpoint a resumed run started from.
        # Each actor's latest reported own state, handed to its replacement or a resumed run.
        self.actor_states: dict[int, dict] = {}
        # Our own restarts, with fresh seeds: Ray's would replay the dead actor's stream.
        self._remote = self.ray.remote(
            num_cpus=cpus_per_actor, max_restarts=0, scheduling_strategy="SPREAD"
        )(RayActorWorker)
        self._weights: tuple[int, Any] = (0, None)
        self.publish(network)

    @property
    def actor_restarts(self) -> list[int]:
        return [slot.restarts for slot in self.slots]

    def publish(self, network: torch.nn.Module) -> None:
        """One object in the store per publication, whatever the number of actors."""
        reference = self.ray.put(flat_weights(network))
        self._weights = (self._weights[0] + 1, reference)  # One assignment: thread-safe.

    def start(self) -> None:
        try:
            for index in range(self.config.num_actors):
                self.slots.append(self._create(index, restarts=0))
            self._wait_until_placed()
            for slot in self.slots:
                self._ask(slot)
        except BaseException:
            self.stop()
            raise

    def _create(self, index: int, restarts: int) -> _RaySlot:
        # A restarted actor must not replay its predecessor's random stream, nor a resumed
        # run the streams of the run it continues.
        seed = derive_seed(self.seed, "actor", self.resume_point, index, restarts)
        version, reference = self._weights
        handle = self._remote.remote(
            index,
            seed,
            self.actor_factory,
            self.config.actor_update_interval,
            self.actor_states.get(index),
            self.config.messages_in_flight,
            version,
            [reference],
        )
        return _RaySlot(handle, restarts)

    def _wait_until_placed(self) -> None:
        """Waits for every actor to start somewhere, and says where they run."""
        where = {slot.handle.where.remote(): slot for slot in self.slots}
        ready, missing = self.ray.wait(
            list(where), num_returns=len(where), timeout=PLACEMENT_TIMEOUT_S
        )
        if missing:
            raise RaySetupError(
                f"{len(missing)} of {len(self.slots)} Ray actors found no place in "
                f"{PLACEMENT_TIMEOUT_S:.0f} s: the cluster lacks free CPUs (or the resources "
                "it has are taken by other work)"
            )
        for reference in ready:
            slot = where[reference]
            try:
                slot.node_id, slot.pid = self.ray.get(reference)
            except self.ray.exceptions.RayError as error:
                slot.death = _cause(error)  # check_health restarts it.
        nodes = {slot.node_id for slot in self.slots if slot.node_id}
        self.log(f"Ray: {len(self.slots)} actors on {len(nodes)} node(s)")

    def _ask(self, slot: _RaySlot) -> None:
        version, reference = self._weights
        slot.pending = slot.handle.collect.remote(version, [reference], COLLECT_WAIT_S)

    def receive(self, timeout: float) -> list[ActorMessage]:
        """Messages from every actor with some ready, waiting at most `timeout` seconds."""
        waiting = {slot.pending: slot for slot in self.slots if slot.pending is not None}
        if not waiting:
            time.sleep(timeout)  # Every actor is dead: check_health replaces them.
            return []
        references = list(waiting)
        ready, _ = self.ray.wait(references, num_returns=1, timeout=timeout)
        if ready:  # Then everything else that is ready too.
            ready, _ = self.ray.wait(references, num_returns=len(references), timeout=0)
        messages = []
        for reference in ready:
            slot = waiting[reference]
            slot.pending = None
            try:
                pickled = self.ray.get(reference)
            except self.ray.exceptions.RayError as error:
                slot.death = _cause(error)
                continue
            messages.extend(pickle.loads(pickled))
            self._ask(slot)
        return messages

    def check_health(self) -> list[str]:
        """Replaces actors found dead; raises ActorFailure past the restart budget."""
        events = []
        for index, slot in enumerate(self.slots):
            if slot.death is None:
                continue
            check_restart_budget(
                index, slot.restarts, self.config.max_actor_restarts, f"last error: {slot.death}"
            )
            self._kill(slot)
            replacement = self._create(index, slot.restarts + 1)
            self.slots[index] = replacement
            self._ask(replacement)
            self.total_restarts += 1
            events.append(f"actor {index} died ({slot.death}); restarted")
        return events

    def stop(self) -> None:
        """Kills every actor: they hold nothing that must be saved (the learner has it)."""
        for slot in self.slots:
            self._kill(slot)
        self._weights = (self._weights[0], None)
        if self.session is not None:
            self.session.close()

    def _kill(self, slot: _RaySlot) -> None:
        with contextlib.suppress(Exception):  # Already dead, or its node is gone.
            self.ray.kill(slot.handle, no_restart=True)
        slot.pending = None


def _cause(error: BaseException) -> str:
    """A one-line cause of a failed Ray call: the actor's own exception when it raised one
    (a RayTaskError's `cause`), else the kind of Ray failure (ActorDiedError: the process or
    its node is gone)."""
    cause = getattr(error, "cause", None)
    if not isinstance(cause, BaseException):
        return type(error).__name__
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


def ray_pool_factory(address: str, cpus_per_actor: float) -> PoolFactory:
    """The Ray backend's PoolFactory: connects to Ray (RaySession) when the trainer builds its
    pool, which closes the connection when it stops."""

    def build(config: ParallelConfig, actor_factory, network, seed: int) -> RayActorPool:
        session = RaySession(address, config.num_actors, cpus_per_actor).open()
        try:
            return RayActorPool(
                config, actor_factory, network, seed, cpus_per_actor, session=session
            )
        except BaseException:
            session.close()
            raise

    return build


# --------------------------------------------------------------------------------------------------
# Connecting to Ray
# --------------------------------------------------------------------------------------------------


class RaySession:
    """The run's connection to Ray; closing it shuts down a Ray instance it started itself.

    address '' starts a local instance bound to the loopback address; 'auto' or host:port
    joins a running cluster, which is left running. Opening checks that the cluster has the
    CPUs the actors ask for.
    """

    def __init__(self, address: str, num_actors: int, cpus_per_actor: float) -> None:
        self.address = address
        self.num_actors = num_actors
        self.cpus_per_actor = cpus_per_actor
        self.connected = False
        self.ray = None

    def open(self) -> RaySession:
        if not self.address:  # Checked before a local instance takes seconds to start.
            require_cpus(len(os.sched_getaffinity(0)), self.num_actors, self.cpus_per_actor)
        self.ray = import_ray(local=not self.address)
        if self.address:
            self._check_answers()
        if self.ray.is_initialized():  # Someone else's connection: not ours to use or close.
            raise RaySetupError("Ray is already initialised in this process")
        try:
            self._connect()
            have = float(self.ray.cluster_resources().get("CPU", 0.0))
            require_cpus(have, self.num_actors, self.cpus_per_actor)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.connected:
            self.connected = False
            self.ray.shutdown()  # Disconnects; stops the instance only if this run started it.

    def _connect(self) -> None:
        # Ray replaces the SIGTERM handler when it connects; the run's (a checkpoint, then a
        # clean stop) must stay.
        sigterm = signal.getsignal(signal.SIGTERM)
        quiet = {"logging_level": std_logging.WARNING, "log_to_driver": False}
        try:
            if not self.address:
                cpus = len(os.sched_getaffinity(0))
                self.ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
                self.connected = True
                logging.info("Ray: started a local instance (stopped at the end of the run)")
            else:
                self.ray.init(address=self.address, **quiet)
                self.connected = True
                logging.info("Ray: joined the cluster at %s", self.address)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RaySetupError(
                f"cannot connect to Ray at --ray_address={self.address or '(local)'}: "
                f"{_first_line(error)}"
            ) from None
        finally:
            signal.signal(signal.SIGTERM, sigterm)

    def _check_answers(self) -> None:
        """Fails in one line when nothing listens at the cluster's address: Ray itself would
        retry for minutes."""
        address = self.address
        if address == "auto":
            address = _auto_address()
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
                pass
        except OSError as error:
            raise RaySetupError(
                f"no Ray cluster answers at {address} (--ray_address={self.address}): "
                f"{error.strerror or error}; start one with `ray start --head` or fix the address"
            ) from None


def require_cpus(have: float, num_actors: int, cpus_per_actor: float) -> None:
    """Fails in one line when `have` CPUs cannot hold the actors: Ray would leave the ones
    that do not fit waiting for ever."""
    need = num_actors * cpus_per_actor
    if need > have + 1e-9:
        raise RaySetupError(
            f"the Ray cluster has {have:g} CPUs but {num_actors} actors x "
            f"--ray_cpus_per_actor={cpus_per_actor:g} need {need:g}; lower --num_actors or "
            "--ray_cpus_per_actor, or add machines"
        )


def _auto_address() -> str:
    """The address 'auto' stands for: RAY_ADDRESS, or the cluster `ray start` last started
    on this machine."""
    from ray._private import services  # Ray's own lookup; pinned version.

    try:
        return services.canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError:
        raise RaySetupError(
            "--ray_address=auto found no running Ray cluster on this machine; start one with "
            "`ray start --head`, or leave --ray_address empty for a local instance"
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
