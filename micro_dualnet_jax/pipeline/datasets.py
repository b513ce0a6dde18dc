"""From a run config to loaders: prepare the dataset if needed, open its splits.

The `data` section (`config.DataConfig`) names the dataset (`data/registry.py`), where its
array_record files are (data_dir) and its released files (manual_dir), the splits and the host
padding length; the model section fixes the joint layout and the number of classes checked.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from micro_dualnet_jax.config import DataConfig, RunConfig
from micro_dualnet_jax.data import prepare
from micro_dualnet_jax.pipeline.loader import Loader
from micro_dualnet_jax.errors import ConfigError
from micro_dualnet_jax.skeleton import get_layout


@dataclasses.dataclass
class Splits:
  train: Sequence[dict[str, Any]]
  eval: Sequence[dict[str, Any]]
  class_names: list[str]

  @staticmethod
  def clip_id(source: Sequence[dict[str, Any]], index: int) -> str:
    clip_id = source[int(index)]['clip_id']
    return clip_id.decode() if isinstance(clip_id, bytes) else str(clip_id)


def _load(data: DataConfig, split: str):
  return prepare.load_split(data.name, split, data.data_path, data.manual_path, **data.options)


def _ensure_prepared(data: DataConfig, split: str) -> None:
  """Prepares the dataset if `split` cannot be opened yet (process 0 prepares, the others
  wait)."""
  try:
    _load(data, split)
  except prepare.DatasetNotFoundError:
    if jax.process_index() == 0:
      logging.info('preparing dataset %s in %s', data.name, data.data_dir)
      for stats in prepare.prepare_dataset(data.name, data.manual_path, data.data_path,
                                           **data.options):
        print(json.dumps(stats), flush=True)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices('dataset prepared')


def _check_classes(config: RunConfig) -> list[str]:
  names = list(config.data.class_names)
  if len(names) != config.model.num_classes:
    raise ConfigError(f'dataset {config.data.name!r} has {len(names)} classes but '
                     f'model.num_classes is {config.model.num_classes}')
  return names


def load_splits(config: RunConfig) -> Splits:
  """Opens the train and eval splits, preparing the dataset first if it is not prepared yet."""
  _ensure_prepared(config.data, config.data.train_split)
  names = _check_classes(config)
  return Splits(train=_load(config.data, config.data.train_split),
                eval=_load(config.data, config.data.eval_split), class_names=names)


def load_eval_split(config: RunConfig) -> Splits:
  """The eval split alone (Splits.train empty), preparing the dataset if needed: what
  --mode=eval reads, so an unlabelled test split is scored without the training data."""
  _ensure_prepared(config.data, config.data.eval_split)
  names = _check_classes(config)
  return Splits(train=[], eval=_load(config.data, config.data.eval_split), class_names=names)


def make_loader(config: RunConfig, source: Sequence[dict[str, Any]], batch_size: int,
                split: str, *, seed: int | None = None) -> Loader:
  """A Loader for this process, checking every record against the model's layout and classes.

  split: 'train' (shuffled by `seed`, default the run's first seed; labels required) or 'eval'
  (source order; unlabelled clips, label -1, accepted)."""
  layout = get_layout(config.model.layout)
  return Loader(source, global_batch_size=batch_size, max_frames=config.data.max_frames,
                num_joints=layout.num_joints, coord_dims=layout.coord_dims,
                seed=config.run.seed if seed is None else seed,
                process_index=jax.process_index(), process_count=jax.process_count(),
                num_classes=config.model.num_classes, unlabelled=split == 'eval',
                name=f'{config.data.name}/{split}')
