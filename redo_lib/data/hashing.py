"""Counter-based random numbers: uniforms that depend only on (seed, stream, index).

Procedural data sets must give the same item for the same ``(seed, split, index)`` in
any order, in any ``DataLoader`` worker, one at a time or in batches. Instead of one
``numpy.random.Generator`` per item (slow to create), every random number is a hash of
its coordinates: SplitMix64 (Steele et al., 2014) applied to ``key ^ mix(counter)``,
vectorised over whole batches with wrapping uint64 arithmetic.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

__all__ = ["splitmix64", "stream_key", "uniforms"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
#: counters per item: a draw may use at most this many numbers per stream
MAX_DRAWS = 1 << 12


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser applied element-wise to a uint64 array (wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> _S30)) * _MUL1
        z = (z ^ (z >> _S27)) * _MUL2
        return z ^ (z >> _S31)


def stream_key(*parts: Union[int, str]) -> np.uint64:
    """A 64-bit key from integers and short strings (e.g. ``seed, "train", "object0"``)."""
    key = np.zeros(1, dtype=np.uint64)
    for part in parts:
        if isinstance(part, str):
            value = int.from_bytes(part.encode("utf-8")[:8].ljust(8, b"\0"), "little")
        else:
            value = int(part) % (1 << 64)
        key = splitmix64(key ^ np.array([value], dtype=np.uint64))
    return key[0]


def uniforms(key: np.uint64, indices: Sequence[int], n: int) -> np.ndarray:
    """``(len(indices), n)`` float64 uniforms in [0, 1), a pure function of ``(key, index, j)``."""
    if n > MAX_DRAWS:
        raise ValueError(f"at most {MAX_DRAWS} numbers per item, asked for {n}")
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        counters = idx * np.uint64(MAX_DRAWS) + np.arange(n, dtype=np.uint64)
        bits = splitmix64(splitmix64(counters) ^ np.uint64(key))
    return (bits >> _S11).astype(np.float64) * (1.0 / (1 << 53))
