"""Prepare step: find a dataset's released files, build its TFDS dataset, report split stats.

`prepare_dataset` looks at what the manual folder holds, picks the
reader that fits (e.g. raw vs processed iMiGUE), runs the TFDS builder (array_record files, no
TensorFlow) and returns one stats dict per split; `main.py --mode=prepare` prints them as JSON
lines. `load_split` opens a prepared split for random access.

One process prepares a data_dir at a time: `prepare_dataset` holds the lock `.prepare.lock` in it
(`dirlock.py`), and a second one waits for the first, then finds the dataset prepared. A
data_dir that is a file is refused by name.

Where the files are looked for, in order:
  manual_dir given:  manual_dir, then manual_dir/<name>
  manual_dir None:   <data_dir>/downloads/manual/<name>, then <data_dir>/downloads/manual,
                     then the spec's own folders (NW-UCLA: ../shared/datasets/nw_ucla from the
                     project root)
What each dataset is (its reader dispatch, options, builder) is its `registry.DatasetSpec`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from micro_dualnet_jax.data import builders, registry
from micro_dualnet_jax.data.registry import imigue_release  # noqa: F401  (re-exported)
from micro_dualnet_jax.dirlock import DirectoryLock, Holder
from micro_dualnet_jax.errors import ConfigError, DatasetNotFoundError, OutputWriteError

PREPARE_LOCK_FILE = '.prepare.lock'

# Canonical split order of the stats; any other split name follows in name order.
SPLIT_ORDER = ('train', 'validation', 'test')
# Split names people use for the same thing.
SPLIT_ALIASES = {'val': 'validation', 'valid': 'validation', 'validate': 'validation'}


def check_data_dir(data_dir: str) -> None:
  """Refuses a data_dir that exists and is not a folder (before TFDS fails on it deep inside)."""
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise ConfigError(f'data.data_dir {data_dir!r} is a file, not a folder: give the folder '
                      'TFDS keeps prepared datasets in (it is created when missing)')


def _is_local(data_dir: str) -> bool:
  return '://' not in data_dir   # gs://, s3://: TFDS's own file systems, not lockable here


def _note_waiting(holder: Holder | None) -> None:
  who = holder.describe() if holder is not None else 'another process'
  print(f'note: waiting for {who}, which is preparing datasets in the same data_dir', flush=True)


def _candidates(spec: registry.DatasetSpec, manual_dir: str | None,
                data_dir: str) -> list[pathlib.Path]:
  if manual_dir is not None:
    return [pathlib.Path(manual_dir), pathlib.Path(manual_dir) / spec.name]
  default = pathlib.Path(data_dir) / 'downloads' / 'manual'
  return [default / spec.name, default, *spec.manual_dirs]


def holds_dataset(name: str, root: pathlib.Path, **options: Any) -> bool:
  """Whether `root` holds released files of dataset `name` (options: e.g. iMiGUE's source)."""
  spec = registry.get_spec(name)
  if spec.find_release is None:
    raise ValueError(f'dataset {name!r} has no released files to look for')
  return root.is_dir() and spec.find_release(root, options)[0]


def find_manual_dir(name: str, manual_dir: str | None, data_dir: str,
                    **options: Any) -> tuple[pathlib.Path, str | None]:
  """The first candidate folder that holds dataset `name`, and the builder config that reads it.

  Args:
    options: the dataset's options (iMiGUE: source, 'raw' or 'processed', to choose when a
      folder holds both).

  Returns:
    (folder, config): config is the builder config reading the folder (the iMiGUE release),
    None for single-config datasets.

  Raises:
    DatasetNotFoundError: nothing recognisable was found; the one-line message lists the folders
      searched and says where to read how to get the data (the spec's `get_data`; the builder's
      MANUAL_DOWNLOAD_INSTRUCTIONS say the same for TFDS).
  """
  spec = registry.get_spec(name)
  searched = _candidates(spec, manual_dir, data_dir)
  for root in searched:
    if root.is_dir():
      found, config = spec.find_release(root, options)
      if found:
        return root, config
  raise DatasetNotFoundError(f'No data of dataset {name!r} found (looked in: '
                             f'{", ".join(str(p) for p in searched)}). {spec.get_data}')


def make_builder(name: str, data_dir: str, config: str | builders.SyntheticConfig | None = None
                 ) -> builders.ClipDatasetBuilder:
  """The TFDS builder of dataset `name` (array_record files under `data_dir`)."""
  builder_class = registry.get_spec(name).builder_class()
  if not isinstance(config, (str, type(None))) and config.name in {
      c.name for c in builder_class.BUILDER_CONFIGS}:
    # TFDS refuses a custom config named like a predefined one; the name encodes every value,
    # so the predefined one is the same dataset (the synthetic set's default sizes).
    config = config.name
  kwargs = {} if config is None else {'config': config}
  return builder_class(data_dir=data_dir, **kwargs)


def _ordered(splits: Sequence[str]) -> list[str]:
  known = [s for s in SPLIT_ORDER if s in splits]
  return known + sorted(s for s in splits if s not in SPLIT_ORDER)


def split_stats(source: Sequence[dict[str, Any]], split: str, num_classes: int) -> dict[str, Any]:
  """Stats of one prepared split: clip count, per-class counts and frame-count summary.

  Args:
    source: the split's records (e.g. a `tfds.data_source`).
    num_classes: length of class_counts. Unlabelled clips (label -1) are counted under
      'unlabelled' (present only when there are some).
  """
  labels = np.array([int(r['label']) for r in source], np.int64)
  frames = np.array([int(r['num_frames']) for r in source], np.int64)
  stats: dict[str, Any] = {
      'split': split, 'clips': len(labels),
      'class_counts': np.bincount(labels[labels >= 0], minlength=num_classes).tolist(),
      'frames': {'min': int(frames.min()), 'median': float(np.median(frames)),
                 'max': int(frames.max())} if len(frames) else {},
  }
  if np.any(labels < 0):
    stats['unlabelled'] = int(np.sum(labels < 0))
  return stats


def prepare_dataset(name: str, manual_dir: str | None, data_dir: str,
                    **options: Any) -> list[dict[str, Any]]:
  """Builds the TFDS dataset `name` from its released files and returns per-split stats.

  Args:
    name: 'imigue', 'ma52', 'nwucla' or 'synthetic'.
    manual_dir: folder holding the released files (see the module docstring for the search
      order when None). Ignored for 'synthetic'.
    data_dir: TFDS data directory the array_record files are written to.
    **options: 'synthetic': num_train, num_test, seed, layout. 'imigue': source ('raw' or
      'processed') only when the folder holds both.

  Returns:
    One dict per split: {"split", "clips", "class_counts", "frames": {"min", "median", "max"}}
    (+ "unlabelled" when a split has unlabelled clips).

  A dataset already prepared in `data_dir` is reused as it is (TFDS semantics); delete
  `<data_dir>/<builder name>/<config>/` to rebuild it from changed files. A second process
  preparing the same data_dir waits for the first (module docstring).
  """
  check_data_dir(data_dir)
  spec = registry.get_spec(name)
  spec.check_options(options)
  # What to read is found (and a missing dataset refused) before data_dir is created.
  if spec.generated_config is not None:
    root, config = None, spec.generated_config(options)
  else:
    root, config = find_manual_dir(name, manual_dir, data_dir, **options)
    if spec.release_config is not None:   # read and check every clip before writing
      config = spec.release_config(root, options, True)
  if not _is_local(data_dir):
    return _prepare(name, root, data_dir, config)
  os.makedirs(data_dir, exist_ok=True)
  lock = DirectoryLock(data_dir, name=PREPARE_LOCK_FILE, what='data_dir',
                       activity='preparing datasets')
  try:
    lock.acquire(wait=True, on_wait=_note_waiting)
  except OutputWriteError:
    pass   # a read-only data_dir: nothing can be prepared into it, a prepared dataset is read
  try:
    return _prepare(name, root, data_dir, config)
  finally:
    lock.release()


def _prepare(name: str, root: pathlib.Path | None, data_dir: str,
             config: Any) -> list[dict[str, Any]]:
  """Builds dataset `name` (builder `config`) from the files in `root` into `data_dir`, and
  returns its split stats (prepare_dataset's body, under the data_dir's lock)."""
  builder = make_builder(name, data_dir, config)
  # TFDS statistics would need TensorFlow; split_stats below reports what matters here.
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=None if root is None else str(root),
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  num_classes = int(builder.info.metadata['num_classes'])
  return [split_stats(builder.as_data_source(split), split, num_classes)
          for split in _ordered(list(builder.info.splits))]


def _prepared_config(spec: registry.DatasetSpec, data_dir: str, manual_dir: str | None,
                     options: dict[str, Any]) -> Any:
  """The builder config a prepared split is read with: the generated dataset's, the one of the
  release in manual_dir (spec.release_config), the one its options choose (spec.config_option),
  or the only one prepared in `data_dir`."""
  if spec.generated_config is not None:
    return spec.generated_config(options)
  if spec.release_config is not None:
    root, _ = find_manual_dir(spec.name, manual_dir, data_dir, **options)
    return spec.release_config(root, options, False)
  names = [c.name for c in spec.builder_class().BUILDER_CONFIGS]
  if not names:
    return None
  if spec.config_option and options.get(spec.config_option) is not None:
    return options[spec.config_option]
  prepared = [n for n in names if make_builder(spec.name, data_dir, n).is_prepared()]
  if not prepared:
    raise DatasetNotFoundError(
        f'{spec.name} is not prepared in {data_dir}; run prepare_dataset({spec.name!r}, '
        f'manual_dir, {data_dir!r}) (main.py --mode=prepare) first')
  if len(prepared) > 1:
    raise ConfigError(f'{data_dir} holds {len(prepared)} prepared {spec.title} configs '
                     f'{prepared}; pass ' + ' or '.join(
                         f'{spec.config_option}="{n}"' for n in prepared))
  return prepared[0]


def load_split(name: str, split: str, data_dir: str, manual_dir: str | None = None,
               **options: Any) -> Sequence[dict[str, Any]]:
  """Random-access records of a prepared split (`tfds.data_source`; records are dicts of numpy).

  Args:
    name: dataset name (as for prepare_dataset).
    split: 'train', 'validation' (aliases 'val', 'valid', 'validate') or 'test'.
    data_dir: the TFDS data directory prepare_dataset wrote to.
    manual_dir: where the release is, for a dataset whose prepared data depends on it (your own
      folder dataset).
    **options: the same options prepare_dataset got ('synthetic': sizes, seed, layout; 'imigue':
      source, needed only when both configs were prepared).
  """
  check_data_dir(data_dir)
  spec = registry.get_spec(name)
  spec.check_options(options)
  builder = make_builder(name, data_dir, _prepared_config(spec, data_dir, manual_dir, options))
  if not builder.is_prepared():
    raise DatasetNotFoundError(
        f'{name} ({builder.info.full_name}) is not prepared in {data_dir}; run '
        f'prepare_dataset({name!r}, manual_dir, {data_dir!r}) (main.py --mode=prepare) first')
  # TFDS slicing ('train[:90%]', 'train[90%:]') selects a held-out part of a split, e.g. for
  # model selection without touching the test split.
  base, bracket, rest = split.partition('[')
  base = SPLIT_ALIASES.get(base, base)
  if base not in builder.info.splits:
    raise ConfigError(
        f'{name} has no split {base!r}; prepared splits: {_ordered(list(builder.info.splits))}')
  return builder.as_data_source(base + bracket + rest)
