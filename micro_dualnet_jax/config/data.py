"""Which data a run reads: the dataset, where its files are, its splits and the padding length."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.dicts import dataclass_kwargs
from micro_dualnet_jax.data import registry
from micro_dualnet_jax.errors import ConfigError

PIPELINES = ('auto', 'device', 'host')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The `data` section of a run config.

  Attributes:
    name: the dataset (`data/registry.py`: 'synthetic', 'imigue', 'ma52', 'nwucla', ...).
    data_dir: the TFDS data directory its array_record files are written to and read from.
    manual_dir: the folder of its released files ('': searched, `data/prepare.py`).
    train_split, eval_split: split names ('train', 'validation' or 'test'; TFDS slices such as
      'train[:90%]' select part of a split).
    max_frames: L, the host padding length; longer clips are uniformly subsampled to L.
    options: the dataset's own options (`DatasetSpec.options`, e.g. the synthetic sizes).
    pipeline: how training batches reach the devices: 'device' (the split is packed once and
      placed on every device; batches are drawn inside the jitted step, `pipeline/device_data.py`),
      'host' (the host loader, `pipeline/loader.py`), or 'auto' (device when the packed split fits
      the budget).
    device_memory_budget_mb: the most device memory a packed split may take (0: a quarter of
      the device's memory where it reports it, else 2048 MB).
  """
  name: str = 'synthetic'
  data_dir: str = '~/micro_dualnet_data'
  manual_dir: str = ''
  train_split: str = 'train'
  eval_split: str = 'test'
  max_frames: int = 150
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  pipeline: str = 'auto'
  device_memory_budget_mb: int = 0

  def __post_init__(self):
    with check.section('data config'):
      for name in ('name', 'data_dir', 'train_split', 'eval_split'):
        if not isinstance(getattr(self, name), str) or not getattr(self, name):
          raise ConfigError(f'{name} must be a non-empty string, got {getattr(self, name)!r}')
      if self.manual_dir is None:
        object.__setattr__(self, 'manual_dir', '')
      if not isinstance(self.manual_dir, str):
        raise ConfigError(f'manual_dir must be a folder name or \'\', got {self.manual_dir!r}')
      check.positive_int('max_frames', self.max_frames)
      if not isinstance(self.options, Mapping):
        raise ConfigError(f'options must be a mapping, got {self.options!r}')
      object.__setattr__(self, 'options', dict(self.options))
      self.spec.check_options(self.options)
      check.one_of('pipeline', self.pipeline, PIPELINES)
      check.integer('device_memory_budget_mb', self.device_memory_budget_mb, minimum=0)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
    return cls(**dataclass_kwargs(cls, values, 'data config keys'))

  @property
  def spec(self) -> registry.DatasetSpec:
    return registry.get_spec(self.name)

  @property
  def class_names(self) -> list[str]:
    """The dataset's class names in label order."""
    return list(self.spec.classes(self.options))

  @property
  def data_path(self) -> str:
    """data_dir with '~' expanded."""
    return os.path.expanduser(self.data_dir)

  @property
  def manual_path(self) -> str | None:
    """manual_dir with '~' expanded, None when not given."""
    return os.path.expanduser(self.manual_dir) if self.manual_dir else None
