"""What main.py's modes do: kept here so main.py stays a thin flag parser."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import logging

from micro_dualnet_jax import interrupts
from micro_dualnet_jax.config import RunConfig, RunSettings
from micro_dualnet_jax.errors import InputError, UserError

MODES = ('train', 'eval', 'prepare', 'predict', 'export', 'ensemble')


def fail(message: str) -> None:
  """A user error: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def run(mode: str, config: RunConfig, workdir: str | None, *,
        input_path: str | None = None, output_dir: str | None = None,
        checkpoint: str = 'best', config_given: bool = True,
        overrides: dict[str, Any] | None = None, fit_weights_on: str | None = None,
        export_format: str = 'jax') -> None:
  """Runs `mode`; a `UserError` (bad data, config, work directory or argument) exits 2 with one
  line, anything else is a bug and keeps its traceback.

  config: the command line's config (its file with the --config.* overrides, or the default
  file). config_given: whether --config (or a --config.* override) was on the command line.
  eval, predict and export read the model from the run's config.json; a config given is compared
  with it (a differing model is noted and ignored). overrides: the --config.* values given
  explicitly; eval takes its evaluation settings (evaluate.EVAL_SETTINGS) from these alone.
  fit_weights_on: ensemble only, the held-out members the stream weights are fitted on
  (micro_dualnet_jax/ensemble.py). export_format: export only, 'jax' or 'onnx'.
  """
  # Library warnings (TFDS on every dataset it opens) would bury the run's own output; what a
  # user must see is printed.
  logging.set_verbosity(logging.ERROR)
  if mode in ('train', 'eval', 'predict', 'export'):
    _compilation_cache(config.run.compilation_cache_dir if config is not None else
                       RunSettings.compilation_cache_dir)
  try:
    _run(mode, config, workdir, input_path=input_path, output_dir=output_dir,
         checkpoint=checkpoint, given=config if config_given else None,
         overrides=overrides or {}, fit_weights_on=fit_weights_on, export_format=export_format)
  except UserError as error:
    fail(str(error))


def _compilation_cache(folder: str) -> None:
  """JAX's persistent compilation cache in `folder` ('': off). A cache folder set in the
  environment (JAX_COMPILATION_CACHE_DIR) wins over the config's."""
  import jax  # pylint: disable=g-import-not-at-top
  if not folder:
    jax.config.update('jax_enable_compilation_cache', False)
    return
  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(folder))
  # Every program, however fast it compiled: an eval or export compiles a few small ones.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _run(mode: str, config: RunConfig, workdir: str | None, *, input_path: str | None,
         output_dir: str | None, checkpoint: str, given: RunConfig | None,
         overrides: dict[str, Any], fit_weights_on: str | None, export_format: str) -> None:
  # Imported per mode so `--help` and flag errors stay fast; only training imports train.py.
  # pylint: disable=g-import-not-at-top
  if mode == 'prepare':
    from micro_dualnet_jax.data import prepare
    d = config.data
    for stats in prepare.prepare_dataset(d.name, d.manual_path, d.data_path, **d.options):
      print(json.dumps(stats), flush=True)
    return
  if not workdir:
    raise InputError(f'--workdir is required for --mode={mode}')
  if fit_weights_on and mode != 'ensemble':
    raise InputError(f'--fit_weights_on is for --mode=ensemble, not --mode={mode}')
  if export_format not in ('jax', 'onnx'):
    raise InputError(f"export format must be 'jax' or 'onnx', got {export_format!r}")
  if export_format != 'jax' and mode != 'export':
    raise InputError(f'--export_format is for --mode=export, not --mode={mode}')
  if mode == 'train':
    from micro_dualnet_jax import train
    result = train.train_and_evaluate(config, workdir, exit_on_second_signal=True)
    if result.get('signal') == 'SIGINT':   # stopped by Ctrl-C, after saving a checkpoint
      sys.exit(interrupts.CTRL_C_STATUS)
  elif mode == 'eval':
    from micro_dualnet_jax import evaluate
    if checkpoint not in ('best', 'latest'):
      raise InputError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    print(json.dumps(evaluate.evaluate_workdir(workdir, given, overrides=overrides,
                                               checkpoint=checkpoint, output_dir=output_dir)),
          flush=True)
  elif mode == 'predict':
    from micro_dualnet_jax import predict
    predict.run_predict(config, workdir, input_path, output_dir, compare_model=given is not None)
  elif mode == 'export':
    if export_format == 'onnx':
      from micro_dualnet_jax import export_onnx as exporter
    else:
      from micro_dualnet_jax import export as exporter
    exporter.run_export(given, workdir, output_dir)
  elif mode == 'ensemble':
    from micro_dualnet_jax import ensemble
    members = ensemble.parse_members(input_path, weighted=not fit_weights_on)
    heldout = ensemble.parse_heldout(fit_weights_on) if fit_weights_on else None
    # The members' own dataset (their config.json); folders of eval outputs alone take the
    # config's.
    spec = ensemble.member_dataset(members)
    if spec is None:
      spec = config.data.spec
    elif given is not None and given.data.name != spec.name:
      raise InputError(f'--config is a {given.data.name!r} config, the ensemble members were '
                       f'trained on {spec.name!r}; leave --config out (the members\' dataset '
                       'is used) or give a config of their dataset')
    summary = ensemble.run_ensemble(
        members, output_dir or workdir, spec=spec, heldout=heldout,
        class_names=ensemble.member_class_names(members, config.data))
    print(json.dumps(summary), flush=True)
