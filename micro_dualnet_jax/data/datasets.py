"""From a run config to loaders: prepare the dataset if needed, open its splits.

config.data: name ('synthetic' | 'imigue' | 'ma52' | 'nwucla' | 'folder'), data_dir (TFDS
array_record files), manual_dir (the released files; None: searched, see prepare.py),
train_split, eval_split, max_frames (host padding length L), options (builder options, e.g.
synthetic sizes; a folder dataset's class names and layout).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from micro_dualnet_jax.data import builders, prepare
from micro_dualnet_jax.data.loader import Loader
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


def class_names(name: str, options: Any = None) -> list[str]:
  """The class names of dataset `name`; a folder dataset's are its `options['classes']`
  (`config.data.options`)."""
  if name == 'synthetic':
    from micro_dualnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.class_names()
  if name == 'folder':
    return list((options or {}).get('classes') or [])
  return list(builders.BUILDERS[name].CLASS_NAMES)


def _load(config: ml_collections.ConfigDict, split: str):
  d = config.data
  return prepare.load_split(d.name, split, os.path.expanduser(d.data_dir),
                            manual_dir=d.manual_dir or None, **d.options.to_dict())


def _ensure_prepared(config: ml_collections.ConfigDict, split: str) -> None:
  """Prepares the dataset if `split` cannot be opened yet (process 0 prepares, the others
  wait)."""
  d = config.data
  try:
    _load(config, split)
  except prepare.DatasetNotFoundError:
    if jax.process_index() == 0:
      logging.info('preparing dataset %s in %s', d.name, d.data_dir)
      for stats in prepare.prepare_dataset(d.name, d.manual_dir or None,
                                           os.path.expanduser(d.data_dir), **d.options.to_dict()):
        print(json.dumps(stats), flush=True)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices('dataset prepared')


def _check_classes(config: ml_collections.ConfigDict) -> list[str]:
  names = class_names(config.data.name, config.data.options)
  if len(names) != config.model.num_classes:
    raise ValueError(f'dataset {config.data.name!r} has {len(names)} classes but '
                     f'model.num_classes is {config.model.num_classes}')
  return names


def load_splits(config: ml_collections.ConfigDict) -> Splits:
  """Opens the train and eval splits, preparing the dataset first if it is not prepared yet."""
  _ensure_prepared(config, config.data.train_split)
  names = _check_classes(config)
  return Splits(train=_load(config, config.data.train_split),
                eval=_load(config, config.data.eval_split), class_names=names)


def load_eval_split(config: ml_collections.ConfigDict) -> Splits:
  """The eval split alone (Splits.train empty), preparing the dataset if needed: what
  --mode=eval reads, so an unlabelled test split is scored without the training data."""
  _ensure_prepared(config, config.data.eval_split)
  names = _check_classes(config)
  return Splits(train=[], eval=_load(config, config.data.eval_split), class_names=names)


def make_loader(config: ml_collections.ConfigDict, source: Sequence[dict[str, Any]],
                batch_size: int, split: str, *, seed: int | None = None) -> Loader:
  """A Loader for this process, checking every record against the model's layout and classes.

  split: 'train' (shuffled by `seed`, default config.seed; labels required) or 'eval' (source
  order; unlabelled clips, label -1, accepted)."""
  layout = get_layout(config.model.layout)
  return Loader(source, global_batch_size=batch_size, max_frames=config.data.max_frames,
                num_joints=layout.num_joints, coord_dims=layout.coord_dims,
                seed=config.seed if seed is None else seed,
                process_index=jax.process_index(), process_count=jax.process_count(),
                num_classes=config.model.num_classes, unlabelled=split == 'eval',
                name=f'{config.data.name}/{split}')
