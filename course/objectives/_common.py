"""Small argument helpers shared by the objectives (not public)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from course.errors import ConfigError

IGNORE_INDEX = -100  # label that takes no loss (PyTorch / Hugging Face convention)

RngLike = np.random.Generator | int


def as_id_list(ids: Any, name: str = "ids") -> list[int]:
    """A 1-D sequence of token ids (list, tuple, NumPy array or tensor) as a list of ints."""
    if torch.is_tensor(ids) or isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ConfigError(f"{name} must be 1-D (one sequence of token ids), got shape "
                              f"{tuple(ids.shape)}; pass one row at a time")
        if ids.dtype == torch.bool or ids.dtype == np.bool_ or not (
            (torch.is_tensor(ids) and not ids.dtype.is_floating_point and not ids.dtype.is_complex)
            or (isinstance(ids, np.ndarray) and np.issubdtype(ids.dtype, np.integer))
        ):
            raise ConfigError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        return [int(i) for i in ids.tolist()]
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ConfigError(f"{name} must be a sequence of token ids, got {type(ids).__name__}; "
                          "encode text with a tokenizer first")
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ConfigError(f"{name} must hold integer token ids, found {i!r}")
        out.append(int(i))
    return out


def as_rng(rng: RngLike, name: str = "rng") -> np.random.Generator:
    """A NumPy Generator from a Generator or an int seed (every random choice is seeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"{name} must be a numpy.random.Generator or an int seed, got "
                      f"{type(rng).__name__}; e.g. rng=np.random.default_rng(0) or rng=0")


def distinct_ids(ids: Sequence[int], name: str) -> list[int]:
    """Check that special ids are distinct non-negative ints; returns them as a list."""
    out = as_id_list(ids, name)
    if any(i < 0 for i in out):
        raise ConfigError(f"{name} must be token ids >= 0, got {out}")
    if len(set(out)) != len(out):
        raise ConfigError(f"{name} must be distinct, got {out}: every special token needs its own id")
    return out


def check_probability(name: str, value: Any, *, allow_one: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0) or (value == 1.0 and not allow_one):
        upper = "1]" if allow_one else "1)"
        raise ConfigError(f"{name} must be in [0, {upper}, got {value}")
    return value
