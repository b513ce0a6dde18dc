"""Argument checks shared by the config dataclasses and the module constructors (no JAX).

Each check raises `ConfigError` (a ValueError and a `UserError`) naming the argument and the value it got, e.g.
`width must be a positive integer, got 0`. `section` prefixes every message raised inside it
with what is being checked (`invalid model config: width must be ...`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from micro_dualnet_jax.errors import ConfigError


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  """A finite real number (not a bool; NaN and inf are not settings)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(name: str, value: Any, minimum: int | None = None) -> int:
  """An int (not a bool, not 2.5), >= minimum when given."""
  if not _is_int(value) or (minimum is not None and value < minimum):
    bound = '' if minimum is None else f' >= {minimum}'
    raise ConfigError(f'{name} must be an integer{bound}, got {value!r}')
  return int(value)


def positive_int(name: str, value: Any) -> int:
  if not _is_int(value) or value < 1:
    raise ConfigError(f'{name} must be a positive integer, got {value!r}')
  return int(value)


def number_in(name: str, value: Any, low: float | None = None, high: float | None = None, *,
              low_open: bool = False, high_open: bool = False) -> float:
  """A finite real number in the interval [low, high] (ends open where asked; None:
  unbounded)."""
  ok = _is_number(value)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    interval = ('(' if low_open else '[') + ('-inf' if low is None else f'{low:g}') + ', ' + (
        'inf' if high is None else f'{high:g}') + (')' if high_open or high is None else ']')
    raise ConfigError(f'{name} must be a number in {interval}, got {value!r}')
  return float(value)


def positive(name: str, value: Any) -> float:
  if not _is_number(value) or not value > 0:
    raise ConfigError(f'{name} must be a number > 0, got {value!r}')
  return float(value)


def non_negative(name: str, value: Any) -> float:
  if not _is_number(value) or not value >= 0:
    raise ConfigError(f'{name} must be a number >= 0, got {value!r}')
  return float(value)


def boolean(name: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise ConfigError(f'{name} must be True or False, got {value!r}')
  return value


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
  choices = tuple(choices)
  if value not in choices:
    raise ConfigError(f'{name} must be one of {choices}, got {value!r}')
  return value


def divisible(name: str, value: int, by_name: str, by: int) -> None:
  if value % by:
    raise ConfigError(f'{name} ({value}) must be divisible by {by_name} ({by})')


@contextlib.contextmanager
def section(what: str) -> Iterator[None]:
  """Prefixes ValueErrors raised inside with `invalid <what>: `."""
  try:
    yield
  except ValueError as error:
    message = str(error)
    if message.startswith('invalid '):
      raise
    raise ConfigError(f'invalid {what}: {message}') from None
