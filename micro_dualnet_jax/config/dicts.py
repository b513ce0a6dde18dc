"""Building the frozen config dataclasses from plain mappings, and dotted-key access."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.errors import ConfigError


def dataclass_kwargs(cls: type, values: Mapping[str, Any] | Any, what: str) -> dict[str, Any]:
  """`values` (a ConfigDict or mapping) as a dict of `cls`'s fields; unknown keys are refused.

  Raises ValueError('unknown <what> [...]; known: [...]') naming the unknown keys, so a typo in a
  config never silently falls back to a default.
  """
  values = dict(values.to_dict() if hasattr(values, 'to_dict') else values)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ConfigError(f'unknown {what} {unknown}; known: {sorted(known)}')
  return values


def field_defaults(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
  """{field: default} of a config dataclass: configs/default.py builds its sections from these,
  so every default lives in its dataclass."""
  return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in exclude}


def set_path(config: Any, key: str, value: Any) -> None:
  """config['a']['b'] = value for key 'a.b' (a ConfigDict or nested dicts)."""
  *parents, leaf = key.split('.')
  for part in parents:
    config = config[part]
  config[leaf] = value
