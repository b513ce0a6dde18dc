"""Helpers shared by the readers: person selection, file loading, uniqueness checks."""

from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Iterable
from typing import Any, BinaryIO

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


# What a released pickle (PYSKL, MA-52, iMiGUE labels) may name: containers, scalars, numpy
# arrays, dtypes and scalars, and the functions numpy's own pickling rebuilds them with (numpy 1
# writes numpy.core, numpy 2 numpy._core; protocol 5 uses _frombuffer; protocols 0-2 name the
# Python 2 `__builtin__` module and encode bytes with _codecs.encode). Unpickling anything else
# could run code, so it is refused.
# (dict, list, tuple, str, bytes, int, float, bool and None have opcodes of their own.)
_BUILTIN_TYPES = ('set', 'frozenset', 'bytearray', 'complex')
SAFE_PICKLE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    *((module, name) for module in ('builtins', '__builtin__') for name in _BUILTIN_TYPES),
    ('_codecs', 'encode'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    *((f'{core}.multiarray', name) for core in ('numpy.core', 'numpy._core')
      for name in ('_reconstruct', 'scalar')),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
})


class RefusedPickleError(pickle.UnpicklingError):
  """A pickle names a global outside SAFE_PICKLE_GLOBALS."""


class _RestrictedUnpickler(pickle.Unpickler):
  """pickle.Unpickler that resolves only SAFE_PICKLE_GLOBALS."""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in SAFE_PICKLE_GLOBALS:
      raise RefusedPickleError(f'{module}.{name}')
    return super().find_class(module, name)


def load_pickle(path: str | os.PathLike[str]) -> Any:
  """Unpickles `path`, admitting only the types the released formats hold (SAFE_PICKLE_GLOBALS).

  A missing, truncated or corrupt file, or one that names any other global (a class or function
  whose loading could run code), raises DataFormatError naming the file (and the global); no
  code from the file runs.
  """
  with open_file(path) as f:
    try:
      return _RestrictedUnpickler(f).load()
    except RefusedPickleError as e:
      raise DataFormatError(
          f'{path}: refused to unpickle {e}: the released formats hold only dicts, lists, '
          'tuples, strings, numbers and numpy arrays, and loading any other type could run '
          'code from the file') from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            ValueError, TypeError, KeyError, RecursionError) as e:
      raise DataFormatError(f'{path}: not a readable pickle (truncated or corrupt?): {e}') from e
    except OSError as e:
      raise DataFormatError(f'{path}: cannot read the file: {e.strerror or e}') from None


def open_file(path: str | os.PathLike[str], what: str = 'file') -> BinaryIO:
  """`path` opened for reading bytes; a missing file, a folder, a symlink loop or an unreadable
  file raise DataFormatError naming it."""
  path = pathlib.Path(path)
  try:
    if path.is_dir():
      raise IsADirectoryError
    return open(path, 'rb')   # pylint: disable=consider-using-with
  except FileNotFoundError:
    raise DataFormatError(f'{path}: {what} not found') from None
  except IsADirectoryError:
    raise DataFormatError(f'{path}: is a folder, expected a {what}') from None
  except OSError as e:   # a symlink loop, no permission, an I/O error
    raise DataFormatError(f'{path}: cannot read the {what}: {e.strerror or e}') from None


def read_text(path: str | os.PathLike[str], what: str = 'file') -> str:
  """`path` decoded as UTF-8 (errors as `open_file`); bytes that are not UTF-8 raise
  DataFormatError naming the file and the offset."""
  with open_file(path, what) as f:
    try:
      data = f.read()
    except OSError as e:
      raise DataFormatError(f'{path}: cannot read the {what}: {e.strerror or e}') from None
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise DataFormatError(f'{path}: not a UTF-8 text {what} (byte {e.start} is '
                          f'{data[e.start:e.start + 1]!r})') from None


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
