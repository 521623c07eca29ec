"""Snappy frame decoding in a worker process, into shared memory.

Why a process: decoding a batch is thousands of small calls, one per distinct frame of its
sequences. cramjam releases the GIL inside each one, but the Python loop around them holds it,
so decoding threads of one process serialise: two threads are no faster than one
(benchmarks/bench_prefetch.py; see docs/results.md). A process per prefetch thread runs its
loop on its own core.

What crosses between the processes per batch: the distinct frames' compressed bytes and their
lengths through a pipe (a few MB), and the decoded frames back through a shared buffer
allocated once (no copy, no pickling). The worker imports only numpy and cramjam.

A dead worker is noticed (an error naming it, never a hang), and `close()` stops the process
and unlinks the shared buffer. A worker also exits when its parent's end of the pipe closes,
so a killed learner leaves no decoder behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import weakref
from collections.abc import Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Protocol

import cramjam
import numpy as np

__all__ = ["FrameDecoder", "ProcessFrameDecoder", "decode_frames_into"]

_MISSING = -1  # length of a frame that is None (decoded as zeros)


class FrameDecoder(Protocol):
    def decode(self, payloads: Sequence[bytes | None]) -> np.ndarray:
        """Snappy frames [F] -> uint8 [F + 1, frame_bytes], row 0 zero, row i + 1 frame i (None
        gives zeros); the result may be the decoder's own buffer, reused by its next call."""
        ...

    def close(self) -> None: ...


def decode_frames_into(payloads: Sequence[bytes | None], out: np.ndarray) -> None:
    """Decodes snappy frames into rows 1.. of `out` (uint8 [>= F + 1, frame_bytes]); a None
    frame gives a zero row. Row 0 is left as it is (callers keep it zero for padding)."""
    for row, payload in enumerate(payloads, start=1):
        _decode_one(payload, out[row])


def _decode_one(payload, row: np.ndarray) -> None:
    if payload is None:
        row[:] = 0
    elif cramjam.snappy.decompress_raw_into(payload, row) != row.size:
        raise ValueError(f"a stored frame does not decode to {row.size} bytes")


class ProcessFrameDecoder:
    """One worker process decoding batches of frames into a shared buffer.

    `decode(payloads)` returns uint8 [F + 1, frame_bytes] with a zero row 0: a view of the
    shared buffer, valid until the next `decode`. One caller at a time (give each prefetch
    thread its own decoder).

    Args:
        frame_bytes: bytes of one decoded frame.
        max_frames: the most frames one call decodes (sets the shared buffer's size).
        timeout_s: the longest wait for one batch before the worker counts as hung.
    """

    def __init__(self, frame_bytes: int, max_frames: int, timeout_s: float = 120.0) -> None:
        self.frame_bytes = int(frame_bytes)
        self.max_frames = int(max_frames)
        self.timeout_s = timeout_s
        self._shm = shared_memory.SharedMemory(create=True, size=(max_frames + 1) * frame_bytes)
        self._out = np.ndarray((max_frames + 1, frame_bytes), np.uint8, buffer=self._shm.buf)
        self._out[0] = 0
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_end, self._shm.name, self.frame_bytes, self.max_frames),
            name="frame-decoder",
            daemon=True,  # never outlives an interpreter that forgot to close it
        )
        self._process.start()
        child_end.close()
        self._finalizer = weakref.finalize(self, _shut_down, self._conn, self._process, self._shm)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def decode(self, payloads: Sequence[bytes | None]) -> np.ndarray:
        if len(payloads) > self.max_frames:
            raise ValueError(f"{len(payloads)} frames exceed the decoder's {self.max_frames}")
        lengths = np.fromiter(
            (_MISSING if p is None else len(p) for p in payloads), np.int64, len(payloads)
        )
        try:
            self._conn.send_bytes(lengths.tobytes())
            self._conn.send_bytes(b"".join(p for p in payloads if p is not None))
        except (BrokenPipeError, ConnectionResetError, OSError) as error:
            raise self._died() from error
        error = self._reply()
        if error is not None:
            raise ValueError(f"frame decoding process: {error}")
        return self._out[: len(payloads) + 1]

    def _reply(self):
        deadline = time.monotonic() + self.timeout_s
        while not self._conn.poll(0.5):
            if not self._process.is_alive():
                raise self._died()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"frame decoding process {self.pid} sent no batch for {self.timeout_s:.0f} s"
                )
        try:
            return self._conn.recv()
        except (EOFError, OSError) as error:
            raise self._died() from error

    def _died(self) -> RuntimeError:
        self._process.join(timeout=1.0)
        return RuntimeError(
            f"frame decoding process {self.pid} died (exit code {self._process.exitcode})"
        )

    def close(self) -> None:
        """Stops the worker and frees the shared buffer (idempotent)."""
        self._out = None
        self._finalizer()


def _shut_down(conn: Connection, process, shm: shared_memory.SharedMemory) -> None:
    conn.close()  # the worker sees end-of-file and returns
    process.join(timeout=5.0)
    if process.is_alive():
        process.kill()
        process.join(timeout=5.0)
    with contextlib.suppress(BufferError):  # a batch still views it: it goes with the batch
        shm.close()
    shm.unlink()


def _serve(conn: Connection, shm_name: str, frame_bytes: int, max_frames: int) -> None:
    """The worker: decode each request into the shared buffer until the pipe closes."""
    # Ctrl-C reaches the whole process group: the parent handles it and closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shm = shared_memory.SharedMemory(name=shm_name)
    out = np.ndarray((max_frames + 1, frame_bytes), np.uint8, buffer=shm.buf)
    try:
        while True:
            try:
                lengths = np.frombuffer(conn.recv_bytes(), np.int64)
                blob = memoryview(conn.recv_bytes())
            except (EOFError, OSError):
                return
            conn.send(_decode_request(lengths, blob, out))
    finally:
        del out
        shm.close()


def _decode_request(lengths: np.ndarray, blob: memoryview, out: np.ndarray) -> str | None:
    """Decodes the frames packed in `blob` into rows 1.. of `out`; returns an error or None."""
    offset = 0
    try:
        for row, length in enumerate(lengths.tolist(), start=1):
            if length == _MISSING:
                _decode_one(None, out[row])
                continue
            _decode_one(blob[offset : offset + length], out[row])
            offset += length
    except Exception as error:  # reported to the caller, which raises it there
        return f"{type(error).__name__}: {error}"
    return None
