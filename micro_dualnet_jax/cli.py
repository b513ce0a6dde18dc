"""What main.py's modes do: kept here so main.py stays a thin flag parser."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import ml_collections
from absl import logging

MODES = ('train', 'eval', 'prepare', 'predict', 'export', 'ensemble')


def fail(message: str) -> None:
  """A user error: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def run(mode: str, config: ml_collections.ConfigDict, workdir: str | None, *,
        input_path: str | None = None, output_dir: str | None = None,
        checkpoint: str = 'best', config_given: bool = True,
        overrides: dict[str, Any] | None = None) -> None:
  """Runs `mode`; user errors (bad data, bad config, bad work directory) exit 2 with one line.

  config_given: whether --config (or a --config.* override) was on the command line. eval,
  predict and export read the model from the run's config.json; a config given is compared with
  it (a differing model is noted and ignored). overrides: the --config.* values given
  explicitly; eval takes its evaluation settings (evaluate.EVAL_SETTINGS) from these alone.
  """
  # Imported here so `--help` and flag errors stay fast; only training imports train.py.
  from micro_dualnet_jax.data import prepare  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.data.clip import DataFormatError  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.errors import (  # pylint: disable=g-import-not-at-top
      CheckpointReadError, DirectoryInUseError, OutputWriteError, TrainingError)

  # Library warnings (TFDS on every dataset it opens) would bury the run's own output; what a
  # user must see is printed.
  logging.set_verbosity(logging.ERROR)
  try:
    if mode == 'prepare':
      d = config.data
      for stats in prepare.prepare_dataset(d.name, d.manual_dir or None,
                                           os.path.expanduser(d.data_dir), **d.options.to_dict()):
        print(json.dumps(stats), flush=True)
      return
    if not workdir:
      raise ValueError(f'--workdir is required for --mode={mode}')
    if mode == 'train':
      from micro_dualnet_jax import train  # pylint: disable=g-import-not-at-top
      train.train_and_evaluate(config, workdir)
    elif mode == 'eval':
      from micro_dualnet_jax import evaluate  # pylint: disable=g-import-not-at-top
      if checkpoint not in ('best', 'latest'):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
      print(json.dumps(evaluate.evaluate_workdir(
          workdir, config if config_given else None, overrides=overrides or {},
          checkpoint=checkpoint, output_dir=output_dir)), flush=True)
    elif mode == 'predict':
      from micro_dualnet_jax import predict  # pylint: disable=g-import-not-at-top
      predict.run_predict(config, workdir, input_path, output_dir,
                          compare_model=config_given)
    elif mode == 'export':
      from micro_dualnet_jax import export  # pylint: disable=g-import-not-at-top
      export.run_export(config if config_given else None, workdir, output_dir)
    elif mode == 'ensemble':
      from micro_dualnet_jax import ensemble  # pylint: disable=g-import-not-at-top
      from micro_dualnet_jax.data import datasets  # pylint: disable=g-import-not-at-top
      members = ensemble.parse_members(input_path)
      # Without --config the dataset is the members' own (their config.json).
      dataset = config.data.name if config_given else ensemble.member_dataset(members[0][0])
      summary = ensemble.run_ensemble(members, output_dir or workdir, dataset=dataset,
                                      class_names=datasets.class_names(dataset))
      print(json.dumps(summary), flush=True)
  except (DataFormatError, prepare.DatasetNotFoundError, TrainingError, CheckpointReadError,
          DirectoryInUseError, OutputWriteError, ValueError) as error:
    fail(str(error))
