"""Checks, before any work, that every output path of a run can be created and written.

A bad `--checkpoint_dir` (a file, a read-only mount, a typo under /) would otherwise surface
only when the first checkpoint is written, after a whole iteration of training. Each check
creates what is missing, writes and removes a probe file, then removes the directories it
created, so a run that fails later for another reason leaves nothing behind.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from experiment.errors import UserError


class OutputPathError(UserError):
    """An output path cannot be created or written."""


def check_writable_directory(path: pathlib.Path, flag: str) -> None:
    """Raises OutputPathError unless `path` is (or can become) a writable directory."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag}: {path} is not a directory")
    created = _make_directories(path, flag)
    try:
        _probe(path, flag)
    finally:
        _remove_directories(created)


def check_writable_file(path: pathlib.Path, flag: str) -> None:
    """Raises OutputPathError unless the file `path` can be created or overwritten.

    Files are replaced by renaming a temporary file of the same directory over them, so the
    directory must be writable, not only the file.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a directory, not a file")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{flag}: {parent} is not a directory")
    created = _make_directories(parent, flag)
    try:
        _probe(parent, flag)
        if path.exists() and not os.access(path, os.R_OK):
            raise OutputPathError(f"{flag}: {path} exists but cannot be read")
    finally:
        _remove_directories(created)


def _make_directories(path: pathlib.Path, flag: str) -> list[pathlib.Path]:
    """Creates `path` and its missing parents; returns those created, deepest first."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OutputPathError(f"{flag}: {candidate} (in {path}) is not a directory")
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except OSError as error:
            _remove_directories([d for d in missing if d.exists()])
            raise OutputPathError(
                f"{flag}: cannot create {directory} ({error.strerror or error})"
            ) from None
    return missing


def _probe(directory: pathlib.Path, flag: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe_") as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as error:
        raise OutputPathError(
            f"{flag}: cannot write in {directory} ({error.strerror or error})"
        ) from None


def _remove_directories(directories: list[pathlib.Path]) -> None:
    for directory in directories:  # Deepest first.
        try:
            directory.rmdir()
        except OSError:
            return  # Something else wrote there meanwhile: leave it.
