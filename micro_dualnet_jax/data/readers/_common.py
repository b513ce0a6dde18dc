"""Helpers shared by the readers: person selection, file loading, uniqueness checks."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from typing import Any

import numpy as np

from micro_dualnet_jax.data.clip import DataFormatError


def best_person(scores: np.ndarray) -> int:
  """Index of the person with the highest total score (docs/data_formats.md, PYSKL).

  Args:
    scores: (M, ...) per-person scores (any trailing shape, summed). Non-finite values count 0 so
      that a NaN cannot win the vote; the chosen person is still checked for finiteness later.

  Returns:
    The person index; ties go to the first person.
  """
  totals = np.where(np.isfinite(scores), scores, 0.0).reshape(scores.shape[0], -1).sum(-1)
  return int(np.argmax(totals))


def presence_confidence(keypoints: np.ndarray) -> np.ndarray:
  """(T, V) float32 confidence for 3D data: 1 where a joint is not all-zero, else 0.

  Args:
    keypoints: (T, V, C) coordinates; a missing joint holds zeros in every channel.
  """
  return np.any(keypoints != 0, axis=-1).astype(np.float32)


def first_non_finite(array: np.ndarray) -> tuple[int, ...] | None:
  """Index of the first NaN/inf entry of `array`, or None when all entries are finite."""
  bad = np.argwhere(~np.isfinite(array))
  return tuple(int(i) for i in bad[0]) if len(bad) else None


def load_pickle(path: str | os.PathLike[str]) -> Any:
  """Unpickles `path`; a missing, truncated or corrupt file raises DataFormatError naming it."""
  if not os.path.isfile(path):
    raise DataFormatError(f'{path}: file not found')
  try:
    with open(path, 'rb') as f:
      return pickle.load(f)
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
          ValueError, TypeError) as e:
    raise DataFormatError(f'{path}: not a readable pickle (truncated or corrupt?): {e}') from e


def check_unique(ids: Iterable[str], where: str) -> None:
  """Raises DataFormatError naming the first duplicated clip id in `ids` and both positions."""
  seen: dict[str, int] = {}
  for i, clip_id in enumerate(ids):
    if clip_id in seen:
      raise DataFormatError(
          f'{where}: duplicate clip id {clip_id!r} (entries {seen[clip_id]} and {i})')
    seen[clip_id] = i


def as_int(value: Any, where: str, what: str = 'label') -> int:
  """`value` as a Python int; floats with a fraction, strings, bools and None raise."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise DataFormatError(f'{where}: {what} must be an integer, got {value!r}')
  return int(value)
