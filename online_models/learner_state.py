"""Learned state as plain data: the pieces every learner's ``to_state`` / ``from_state`` uses.

A learner exports its hyper-parameters and learned state as a msgspec struct of str, int,
float, lists, and numpy arrays carried as raw bytes with an explicit dtype and shape
(:class:`ArrayState`); random generators as their bit-generator state (:class:`RngState`).
Nothing here can run code when decoded, unlike pickle.

Import is the border for learned state: ``from_state`` gets values from a decoder that
checked only their types, so every size, dtype, index and finiteness that a learner relies
on is checked here or in the learner's ``from_state``, and any violation is one
:class:`StateError`. A restored learner must never fail later on an index it was handed.

>>> import numpy as np
>>> state = ArrayState.of(np.arange(6, dtype=np.float32).reshape(2, 3))
>>> state.to_array("<f4", ndim=2).tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import math
from typing import Sequence

import msgspec
import numpy as np

# Hyper-parameters that size what a learner allocates while learning: bounded on import,
# so a snapshot cannot make the next micro-batch allocate without limit.
MAX_COUNT_PARAMETER = 1 << 24
_MAX_NDIM = 4
# Largest magnitude a learned weight (embedding, bias, FM weight or factor) may have on
# import. Trained values stay within a few units (L2-regularised SGD); a tampered snapshot
# with finite but huge values (1e30) would overflow float32 dot products into inf and NaN
# scores instead of failing on import. At 1e4, a dot product of 1,024 factors stays
# below 1e12, far inside float32's range.
MAX_LEARNED_MAGNITUDE = 1e4
# Largest learning rate, L2 strength or initial scale accepted on import (defaults: 0.01-0.1).
MAX_STEP_SIZE = 10.0
_PCG64_STATE_LIMIT = 1 << 128


class StateError(ValueError):
    """Exported learner state that is inconsistent, out of range or of the wrong type."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`StateError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise StateError(message)


class ArrayState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A numpy array as data: dtype string (``np.dtype.str``), shape and raw C-order bytes."""

    dtype: str
    shape: list[int]
    # Decoded as a view into the message (no copy); ``to_array`` copies once.
    data: memoryview

    @classmethod
    def of(cls, array: np.ndarray) -> "ArrayState":
        """A view of ``array``'s bytes (encode it before the learner changes the array)."""
        contiguous = np.ascontiguousarray(array)
        raw = contiguous.reshape(-1).view(np.uint8)
        return cls(contiguous.dtype.str, list(contiguous.shape), raw.data)

    def to_array(self, dtype: str, ndim: int, finite: bool = False,
                 max_abs: float | None = None) -> np.ndarray:
        """A fresh, writable array; ``dtype`` and ``ndim`` must be what the learner keeps.

        The byte count is checked against the shape before anything is allocated, so the
        array is never larger than the bytes that came in. ``finite``: no NaN or infinity;
        ``max_abs``: every value within ``[-max_abs, max_abs]`` (implies finite).
        """
        require(self.dtype == dtype, f"array of dtype {self.dtype!r}, expected {dtype!r}")
        require(len(self.shape) == ndim <= _MAX_NDIM,
                f"array of {len(self.shape)} dimensions, expected {ndim}")
        require(all(isinstance(n, int) and 0 <= n < 1 << 40 for n in self.shape),
                f"array shape {self.shape} out of range")
        itemsize = np.dtype(dtype).itemsize
        require(math.prod(self.shape) * itemsize == len(self.data),
                f"array of shape {self.shape} and dtype {dtype} needs "
                f"{math.prod(self.shape) * itemsize} bytes, got {len(self.data)}")
        array = np.frombuffer(self.data, dtype=np.dtype(dtype)).reshape(self.shape).copy()
        if array.dtype == np.bool_:  # any byte but 0 and 1 is no bool numpy can reason about
            require(array.size == 0 or int(array.view(np.uint8).max()) <= 1,
                    "bool array holds bytes other than 0 and 1")
        if finite or max_abs is not None:
            require(bool(np.isfinite(array).all()), "array holds NaN or infinity")
        if max_abs is not None and array.size:
            largest = float(np.abs(array).max())
            require(largest <= max_abs,
                    f"array holds a value of magnitude {largest:.3g}, above {max_abs:g}")
        return array


class RngState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``np.random.Generator`` on PCG64 as data (128-bit integers as decimal strings)."""

    state: str
    inc: str
    has_uint32: int
    uinteger: int

    @classmethod
    def of(cls, rng: np.random.Generator) -> "RngState":
        raw = rng.bit_generator.state
        require(raw["bit_generator"] == "PCG64", f"cannot export a {raw['bit_generator']} rng")
        return cls(str(raw["state"]["state"]), str(raw["state"]["inc"]), int(raw["has_uint32"]),
                   int(raw["uinteger"]))

    def to_rng(self) -> np.random.Generator:
        words = []
        for name, text in (("state", self.state), ("inc", self.inc)):
            require(0 < len(text) <= 40 and text.isascii() and text.isdigit(),
                    f"rng {name} is not a decimal integer")
            words.append(int(text))
            require(words[-1] < _PCG64_STATE_LIMIT, f"rng {name} out of range")
        require(self.has_uint32 in (0, 1) and 0 <= self.uinteger < 1 << 32,
                "rng buffered word out of range")
        bit_generator = np.random.PCG64()
        bit_generator.state = {"bit_generator": "PCG64",
                               "state": {"state": words[0], "inc": words[1]},
                               "has_uint32": self.has_uint32, "uinteger": self.uinteger}
        return np.random.Generator(bit_generator)


def finite(value: float, name: str) -> float:
    require(math.isfinite(value), f"{name} must be finite, got {value!r}")
    return value


def step_size(value: float, name: str) -> float:
    """A learning rate, L2 strength or initial scale: finite and within ``[0, MAX_STEP_SIZE]``.

    Trained values are fractions; a tampered 1e30 would pass ``finite`` yet blow every
    weight to infinity on the next update.
    """
    require(math.isfinite(value) and 0.0 <= value <= MAX_STEP_SIZE,
            f"{name} must be within [0, {MAX_STEP_SIZE:g}], got {value!r}")
    return value


def weight(value: float, name: str) -> float:
    """A fusion weight or similar scale: finite and of magnitude at most ``MAX_LEARNED_MAGNITUDE``."""
    require(math.isfinite(value) and abs(value) <= MAX_LEARNED_MAGNITUDE,
            f"{name} must be within ±{MAX_LEARNED_MAGNITUDE:g}, got {value!r}")
    return value


def count(value: int, name: str, low: int = 0, high: int = MAX_COUNT_PARAMETER) -> int:
    require(low <= value <= high, f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def slots(array: np.ndarray, high: int, name: str) -> np.ndarray:
    """``array`` (integer) if every value is a valid index below ``high``."""
    require(array.size == 0 or (int(array.min()) >= 0 and int(array.max()) < high),
            f"{name} holds an index outside [0, {high})")
    return array


def distinct(ids: Sequence[str], name: str) -> dict[str, int]:
    """id -> position for a list of ids that must not repeat."""
    index = {item: n for n, item in enumerate(ids)}
    require(len(index) == len(ids), f"{name} repeats an id")
    return index
