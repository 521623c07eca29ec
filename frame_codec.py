"""The frame codec of both replays: how one observation frame is stored.

A frame is stored as its raw bytes (C order), except a bool frame, which is bit-packed first
(`np.packbits`, 8 values a byte, the last byte padded): MinAtar's 10 x 10 x 10 object planes take
125 bytes instead of 1,000. Then, where the replay compresses, snappy. `compress_frame` and
`decompress_frame` are the whole codec; `frame_to_bytes`, `pack_frames`, `frame_nbytes` and
`frames_from_rows` are the packing alone, for uncompressed storage and for decoding many frames
into one buffer (the sequence replay's decoding processes hand back packed rows).
"""

from __future__ import annotations

import collections.abc

import numpy as np
import snappy

__all__ = [
    "SMALL_FRAME_BYTES",
    "compress_frame",
    "decompress_frame",
    "frame_nbytes",
    "frame_to_bytes",
    "frames_from_rows",
    "is_small_frame",
    "pack_frames",
]

SMALL_FRAME_BYTES = 128
"""Frames of at most this many stored bytes (MinAtar's planes, bit-packed: 50 to 125) are kept
as packed rows of one array, not snappy-compressed: snappy saves little on them, and sampling
then gathers and unpacks a batch in two numpy calls instead of decoding each frame."""


def frame_nbytes(shape: collections.abc.Sequence[int], dtype: np.dtype | type) -> int:
    """Bytes of one stored frame before compression: bool frames bit-packed (one bit a value,
    the last byte padded), any other dtype its raw bytes."""
    size = int(np.prod(shape))
    dtype = np.dtype(dtype)
    return -(-size // 8) if dtype == np.bool_ else size * dtype.itemsize


def is_small_frame(shape: collections.abc.Sequence[int], dtype: np.dtype | type) -> bool:
    """Whether a frame of `shape` and `dtype` is stored uncompressed (see SMALL_FRAME_BYTES)."""
    return frame_nbytes(shape, dtype) <= SMALL_FRAME_BYTES


def pack_frames(frames: np.ndarray) -> np.ndarray:
    """Frames [N, ...] -> uint8 rows [N, frame_nbytes], as stored: bit-packed if bool
    (np.packbits, C order), else their raw bytes."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype == np.bool_:
        return np.packbits(frames.reshape(frames.shape[0], -1), axis=-1)
    return frames.reshape(frames.shape[0], -1).view(np.uint8)


def frame_to_bytes(frame: np.ndarray) -> bytes:
    """One frame as stored (see `pack_frames`)."""
    return pack_frames(np.asarray(frame)[None]).tobytes()


def frames_from_rows(
    rows: np.ndarray, shape: collections.abc.Sequence[int], dtype: np.dtype | type
) -> np.ndarray:
    """Stored frames, uint8 rows [..., frame_nbytes] (C-contiguous) -> [..., *shape] of
    `dtype`: unpacked bits for bool (a new array), a view of the rows otherwise."""
    dtype, shape = np.dtype(dtype), tuple(shape)
    lead = rows.shape[:-1]
    if dtype == np.bool_:
        bits = np.unpackbits(rows, axis=-1, count=int(np.prod(shape)))
        return bits.view(np.bool_).reshape(*lead, *shape)
    return rows.view(dtype).reshape(*lead, *shape)


def compress_frame(frame: np.ndarray) -> bytes:
    """Snappy-compresses one frame (any shape and dtype) as `frame_to_bytes` stores it."""
    return snappy.compress(frame_to_bytes(frame))


def decompress_frame(
    data: bytes, shape: collections.abc.Sequence[int], dtype: np.dtype | type
) -> np.ndarray:
    """Inverse of `compress_frame`; returns a writable array of `shape` and `dtype`."""
    rows = np.frombuffer(snappy.decompress(data), dtype=np.uint8)[None]
    return frames_from_rows(rows, shape, dtype)[0].copy()
