"""Atomic, safely loadable checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings and nested dicts/lists, written with
`torch.save` to a temp file that is then renamed over the target (a crash never leaves a torn
file), and read back with `torch.load(weights_only=True)` so loading never unpickles code.
Every checkpoint carries a `metadata` dict naming the agent, the game and the shapes; loading
compares it with what the caller expects and raises `CheckpointError` with one line otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from absl import logging

from experiment.errors import UserError

FORMAT_VERSION = 1
_ITERATION_FILE = re.compile(r"^iteration_(\d+)(\.partial)?\.ckpt$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another agent, game or shape."""


def atomic_write(path: pathlib.Path, write_fn) -> None:
    """Calls write_fn(temp_path) then renames the temp file to `path`, in the same directory."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(temp_name)
        with open(temp_name, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        pathlib.Path(temp_name).unlink(missing_ok=True)
        raise


def save(path: pathlib.Path, state: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Atomically writes `state` with `metadata` (agent, game, shapes...) to `path`."""
    payload = {"metadata": {**metadata, "format_version": FORMAT_VERSION}, "state": state}
    # Serialised in memory first: torch's own file writer reports a full disk as a
    # RuntimeError from C++, a plain file write as the OSError callers can tell apart.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda temp: pathlib.Path(temp).write_bytes(buffer.getbuffer()))


def load(path: pathlib.Path, expected_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Loads the state saved at `path`, checking each key of `expected_metadata` matches."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols; the CLIs must print one line only.
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files.
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({_load_failure(error)})"
        ) from None
    if not isinstance(payload, dict) or "metadata" not in payload or "state" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this library")
    check_metadata(path, payload["metadata"], expected_metadata)
    return _StrictState.wrap(payload["state"], str(path))


def _load_failure(error: Exception) -> str:
    """The informative line of a torch.load error. A weights_only refusal starts with advice to
    load unsafely and hides its reason further down; report that reason instead."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].startswith("Weights only load failed"):
        reasons = [
            line
            for line in lines[1:]
            if not line.startswith(("Please file an issue", "Check the documentation"))
        ]
        detail = reasons[0] if reasons else "unsupported content"
        return f"not plain tensors and numbers, refused by safe loading: {detail}"
    return lines[0]


class _StrictState(dict):
    """A loaded state whose missing keys raise a one-line CheckpointError, not a KeyError
    traceback (a checkpoint from an older or foreign version of an agent)."""

    path = ""

    @classmethod
    def wrap(cls, value: Any, path: str, depth: int = 2) -> Any:
        if not isinstance(value, dict) or depth == 0:
            return value
        strict = cls({k: cls.wrap(v, path, depth - 1) for k, v in value.items()})
        strict.path = path
        return strict

    def __missing__(self, key: str) -> Any:
        raise CheckpointError(
            f"checkpoint {self.path} lacks {key!r}; it is not a checkpoint of this agent version"
        )


def check_metadata(
    path: pathlib.Path, found: Mapping[str, Any], expected: Mapping[str, Any]
) -> None:
    if found.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {found.get('format_version')}, "
            f"expected {FORMAT_VERSION}"
        )
    for key, value in expected.items():
        if _normalise(found.get(key)) != _normalise(value):
            raise CheckpointError(
                f"checkpoint {path} is for {key}={found.get(key)!r}, not {value!r}"
            )


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def iteration_path(directory: pathlib.Path, iteration: int, partial: bool = False) -> pathlib.Path:
    """`iteration_0003.ckpt` after iteration 3; `iteration_0004.partial.ckpt` for an
    interrupted iteration 4 (newer than 3, older than a finished 4)."""
    suffix = ".partial.ckpt" if partial else ".ckpt"
    return pathlib.Path(directory) / f"iteration_{iteration:04d}{suffix}"


def latest_path(directory: pathlib.Path) -> pathlib.Path | None:
    """The checkpoint with the highest iteration number in `directory`, or None."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    found = [
        (int(m.group(1)), m.group(2) is None, p)
        for p in directory.iterdir()
        if (m := _ITERATION_FILE.match(p.name))
    ]
    return max(found)[2] if found else None


_RUN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_run_label(label: str) -> str:
    """The label, or a one-line CheckpointError: it names a directory, so no path parts."""
    if label and not _RUN_LABEL.fullmatch(label):
        raise CheckpointError(
            f"--run_label must be up to 64 letters, digits, '_', '-' or '.', starting with a "
            f"letter or digit (it names a directory), got {label!r}"
        )
    return label


def run_directory(
    root: pathlib.Path, agent: str, environment_name: str, seed: int, label: str = ""
) -> pathlib.Path:
    """Where one run's checkpoints live: <root>/<agent>[-<label>]/<game>/seed_<seed>/, so that
    several seeds (and labelled configurations) of one agent and game train side by side
    without touching each other's files."""
    variant = f"{agent}-{check_run_label(label)}" if label else agent
    return pathlib.Path(root) / variant / environment_name / f"seed_{seed}"


def load_module_state(module: torch.nn.Module, state: Mapping[str, Any], what: str) -> None:
    """load_state_dict that turns a shape or key mismatch into a one-line CheckpointError."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"checkpoint {what} does not fit this network: {detail}") from None


# --- RNG states as weights_only-loadable values --------------------------------------------------


def numpy_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as nested plain dicts (ints and strings only)."""
    return rng.bit_generator.state


def restore_numpy_rng(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    rng.bit_generator.state = dict(state)


def torch_rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def restore_torch_rng(state: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class RunCheckpointer:
    """Saves iteration checkpoints of one run and finds the one to resume from.

    A fresh run refuses to start over an existing run's checkpoints (that would overwrite
    saved work): the user must pass --resume or pick another --checkpoint_dir.
    """

    def __init__(self, run_dir: pathlib.Path, metadata: Mapping[str, Any], resume: bool) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.metadata = dict(metadata)
        self.resume = resume
        latest = latest_path(self.run_dir)
        if latest is not None and not resume:
            raise UserError(
                f"{self.run_dir} already holds checkpoints (latest {latest.name}); pass --resume "
                "to continue that run or choose another --checkpoint_dir"
            )
        self.resume_path = latest if resume else None

    def load_latest(self) -> dict[str, Any] | None:
        if self.resume_path is None:
            if self.resume:
                logging.info("--resume: no checkpoint in %s, starting a new run", self.run_dir)
            return None
        logging.info("Resuming from %s", self.resume_path)
        return load(self.resume_path, self.metadata)

    def save(
        self, iteration: int, state: Mapping[str, Any], steps_into_next: int = 0
    ) -> pathlib.Path:
        """Saves after `iteration` completed iterations, or `steps_into_next` steps into the
        next one (a partial checkpoint, written when a run is interrupted)."""
        partial = steps_into_next > 0
        path = iteration_path(self.run_dir, iteration + partial, partial)
        with self._failed_write_is_one_line(path):
            save(path, {**state, "steps_into_iteration": steps_into_next}, self.metadata)
        if not partial:
            # The finished iteration supersedes a partial checkpoint of it.
            iteration_path(self.run_dir, iteration, True).unlink(missing_ok=True)
        return path

    @property
    def replay_path(self) -> pathlib.Path:
        return self.run_dir / "replay.npz"

    def save_replay(self, arrays: Mapping[str, np.ndarray], iteration: int) -> None:
        """Writes replay as of the end of `iteration`. Call it before that iteration's
        checkpoint: the file is tagged with the iteration, and `load_replay` uses it only with
        the checkpoint it belongs to."""
        tagged = {**arrays, _REPLAY_ITERATION: np.array(iteration, np.int64)}
        with self._failed_write_is_one_line(self.replay_path):
            atomic_write(self.replay_path, lambda temp: _savez(temp, tagged))

    @contextlib.contextmanager
    def _failed_write_is_one_line(self, path: pathlib.Path):
        """A full disk (or any write error) stops the run with one line. The write went to a
        temp file that atomic_write removed, so the previous checkpoint is untouched."""
        try:
            yield
        except OSError as error:
            previous = latest_path(self.run_dir)
            kept = f"; {previous.name} is intact" if previous is not None else ""
            raise CheckpointError(
                f"cannot write {path} ({error.strerror or error}){kept}"
            ) from None

    def load_replay(self, iteration: int) -> dict[str, np.ndarray] | None:
        """The replay saved at the end of `iteration` (the resumed checkpoint's), or None when
        there is none or it belongs to another iteration (a run killed between the two
        writes): replay is then refilled, which is safe, where a mismatched one is not."""
        if not self.replay_path.exists():
            return None
        try:
            with np.load(self.replay_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as error:
            raise CheckpointError(
                f"replay file {self.replay_path} is corrupt ({type(error).__name__})"
            ) from None
        saved_at = arrays.pop(_REPLAY_ITERATION, None)
        if saved_at is None or int(saved_at) != iteration:
            logging.warning(
                "%s is from iteration %s, not %d; replay will be refilled",
                self.replay_path,
                "?" if saved_at is None else int(saved_at),
                iteration,
            )
            return None
        return arrays


_REPLAY_ITERATION = "saved_at_iteration"


def _savez(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
