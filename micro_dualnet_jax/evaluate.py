"""Evaluation: one pass over the eval split, its metrics, and the files a run directory gets.

The training loop calls `evaluate` and `write_outputs` at its evaluation points; `--mode=eval`
(`evaluate_workdir`) reads the run's own config.json, restores its parameters alone
(`inference.restore_model`) and never imports the training loop.

An unlabelled split (every label -1: the MA-52 test split, a challenge test set) is scored
without metrics: the predictions and the submission file (`submission.py`) are written, and the
result says `labelled: False`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from micro_dualnet_jax import atomic, dirlock, inference, report, sharding, steps, submission
from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.errors import OutputWriteError
from micro_dualnet_jax.pipeline import datasets
from micro_dualnet_jax.pipeline.loader import Loader
from micro_dualnet_jax.rundir import (EVAL_METRICS_FILE, EVAL_OUTPUTS_FILE, METRICS_FILE,
                                      RunDir, RunDirError, seed_dir_name)


@dataclasses.dataclass
class EvalResult:
  """One model's scores on an eval split, in source order.

  metrics: scalars + confusion matrix (None for an unlabelled split); logits (N, num_classes);
  routing_weights (N, K, 2); labels (N,) (-1 everywhere when unlabelled); indices (N,) source
  indices.
  """
  metrics: dict[str, Any] | None
  logits: np.ndarray
  routing_weights: np.ndarray
  labels: np.ndarray
  indices: np.ndarray

  @property
  def labelled(self) -> bool:
    return self.metrics is not None

  def scalars(self) -> dict[str, Any]:
    """The scalar metrics, or {'labelled': False, 'num_clips': N}."""
    if self.metrics is None:
      return {'labelled': False, 'num_clips': int(len(self.labels))}
    return metrics_lib.scalar_metrics(self.metrics)


def evaluate(eval_step, state: Any, loader: Loader, mesh: jax.sharding.Mesh, num_classes: int,
             *, scorer: str = 'classification', num_seeds: int | None = None
             ) -> list[EvalResult]:
  """One pass over `loader`'s split; every clip counted exactly once (padding rows dropped).
  num_classes: C, checked against the logits; scorer: a key of `metrics.SCORERS` (the
  dataset's `DatasetSpec.scorer`).

  num_seeds: the eval step has a seeds axis (`steps.make_eval_step(seeds_axis=True)`): one
  result per seed. Without it, a list of one result.
  """
  batch_sharding = sharding.batch_sharding(mesh)
  seeds = num_seeds or 1
  keep: dict[str, list] = {'logits': [], 'routing_weights': [], 'labels': [], 'indices': []}
  for batch in loader.eval_batches():
    out = eval_step(state, sharding.to_global(batch, batch_sharding, loader.global_batch_size))
    logits = sharding.fetch_global(out['logits'])
    routing = sharding.fetch_global(out['routing_weights'])
    if num_seeds is None:
      logits, routing = logits[None], routing[None]
    host = {k: sharding.fetch_global(v) for k, v in sharding.to_global(
        {k: batch[k] for k in ('label', 'weight', 'index')}, batch_sharding,
        loader.global_batch_size).items()} if jax.process_count() > 1 else batch
    valid = host['weight'] > 0
    keep['logits'].append(logits[:, valid])
    keep['routing_weights'].append(routing[:, valid])
    keep['labels'].append(host['label'][valid])
    keep['indices'].append(host['index'][valid])
  arrays = {k: np.concatenate(v, axis=1 if k in ('logits', 'routing_weights') else 0)
            for k, v in keep.items()}
  if len(arrays['indices']) != len(loader):
    raise RuntimeError(f'evaluation saw {len(arrays["indices"])} clips, the split has '
                       f'{len(loader)}')
  if arrays['logits'].shape[-1] != num_classes:
    raise ValueError(f'the model gives {arrays["logits"].shape[-1]} classes, expected '
                     f'{num_classes}')
  labels = arrays['labels']
  unlabelled = labels < 0
  if unlabelled.any() and not unlabelled.all():
    raise DataFormatError(f'{loader.name}: {int(unlabelled.sum())} of {len(labels)} clips are '
                          'unlabelled (label -1); a split is either labelled or not')
  results = []
  for s in range(seeds):
    metrics = None
    if not unlabelled.any():
      metrics = metrics_lib.SCORERS[scorer](arrays['logits'][s], labels)
    results.append(EvalResult(metrics, arrays['logits'][s], arrays['routing_weights'][s],
                              labels, arrays['indices']))
  return results


def in_release_order(result: EvalResult, splits: datasets.Splits) -> EvalResult:
  """`result` with its clips in the order of the released list file, where the dataset keeps
  one (MA-52's `list_line`): the order the benchmark's prediction.csv must have."""
  if not len(result.indices) or 'list_line' not in splits.eval[int(result.indices[0])]:
    return result
  order = np.argsort([int(splits.eval[int(i)]['list_line']) for i in result.indices],
                     kind='stable')
  return dataclasses.replace(result, logits=result.logits[order],
                             routing_weights=result.routing_weights[order],
                             labels=result.labels[order], indices=result.indices[order])


def write_outputs(config: RunConfig, folder: str, result: EvalResult, splits: datasets.Splits,
                  summary: dict[str, Any] | None = None, *, checkpoint: dict[str, Any],
                  verbose: bool = True) -> None:
  """Predictions, the submission file (+ zip), eval_outputs.npz, eval_metrics.json, plots,
  and summary.json when given, into `folder` (process 0). Rows are in the released order
  (`in_release_order`), else the split's. checkpoint: what was scored, {'step', 'which'},
  recorded with the test-time views in eval_metrics.json. summary.json, which marks a run
  finished, is written last: a run stopped before it writes its outputs again."""
  os.makedirs(folder, exist_ok=True)
  result = in_release_order(result, splits)
  probs = metrics_lib.softmax(result.logits)
  clip_ids = [splits.clip_id(splits.eval, i) for i in result.indices]
  submission.write_run_outputs(config.data.spec.submission, folder, clip_ids, probs,
                               result.labels if result.labelled else None)
  views = config.test_time
  with atomic.atomic_path(os.path.join(folder, EVAL_OUTPUTS_FILE)) as path:
    np.savez_compressed(path, logits=result.logits, routing_weights=result.routing_weights,
                        labels=result.labels, clip_ids=np.asarray(clip_ids, dtype=str),
                        eval_split=config.data.eval_split, test_time_clips=views.num_clips,
                        test_time_flip=views.flip)
  atomic.write_json(os.path.join(folder, EVAL_METRICS_FILE),
                    {**result.scalars(), 'checkpoint': checkpoint,
                     'eval_split': config.data.eval_split,
                     'test_time': dataclasses.asdict(views)})
  if verbose:
    if result.labelled:
      print(metrics_lib.format_metrics_table(result.metrics, title='Evaluation'))
    else:
      print(f'{config.data.name}/{config.data.eval_split} is unlabelled ({len(result.labels)} '
            'clips): no metrics; predictions and the submission file are written', flush=True)
  entity_names = list(config.model.entity_names)
  try:
    if os.path.exists(os.path.join(folder, METRICS_FILE)):
      report.plot_training_curves(os.path.join(folder, METRICS_FILE),
                                  os.path.join(folder, 'training_curves.png'))
    if result.labelled:
      report.plot_confusion_matrix(result.metrics['confusion_matrix'], splits.class_names,
                                   os.path.join(folder, 'confusion_matrix.png'))
    report.plot_routing_weights(result.routing_weights, entity_names,
                                os.path.join(folder, 'routing_weights.png'),
                                class_names=splits.class_names if result.labelled else None,
                                labels=result.labels if result.labelled else None)
  except ValueError as error:   # a plot must never cost the run its results
    logging.warning('plotting failed: %s', error)
  if summary is not None:
    RunDir(folder).write_summary(summary)


# The settings --mode=eval takes from the command line over the run's own: how to score, not
# what model.
EVAL_SETTINGS = ('test_time', 'eval_batch_size', 'data.eval_split', 'data.data_dir',
                 'data.manual_dir')


def eval_config(trained: RunConfig, given: RunConfig | None = None,
                overrides: dict[str, Any] | None = None) -> RunConfig:
  """The run's config with EVAL_SETTINGS replaced: from `overrides` (dotted key -> value, the
  values given explicitly on the command line) when given, else from the config `given`."""

  def covered(key: str) -> bool:
    return any(key == s or key.startswith(s + '.') for s in EVAL_SETTINGS)

  if overrides is not None:
    items = {k: v for k, v in overrides.items() if covered(k)}
  elif given is not None:
    values = given.to_dict()
    items = {}
    for key in EVAL_SETTINGS:
      node = values
      for part in key.split('.'):
        node = node.get(part) if isinstance(node, dict) else None
      if node is not None:
        items[key] = node
  else:
    items = {}
  return trained.replace(**items) if items else trained


def evaluate_workdir(workdir: str, config: RunConfig | None = None, *,
                     overrides: dict[str, Any] | None = None, checkpoint: str = 'best',
                     output_dir: str | None = None, verbose: bool = True) -> dict[str, Any]:
  """--mode=eval: scores the best (checkpoint='best', else the latest) or the latest
  checkpoint of `workdir` on its eval split and writes the outputs.

  The model, loss and augmentation are the run's (config.json). EVAL_SETTINGS come from
  `overrides` (the command line's explicit --config.* values) when given, else from `config`; a
  `config` whose model differs is noted. The outputs go to `output_dir` when given, so that
  scoring a finished run another way (e.g. with test-time views) keeps its own results; else to
  the run directory. A run of several seeds is scored seed by seed (`<output>/seed_<s>/`), with
  the mean and standard deviation over them (written to `<output>/eval_seeds.json` with
  --output). A missing work directory is refused and nothing is created. Outputs are written
  under the lock of their folder: a training run writing the run directory, or another command
  writing the output folder, refuses this one with DirectoryInUseError.
  """
  run = RunDir(workdir)
  run.run_info()   # a missing or foreign directory is refused before it is locked
  sharding.maybe_initialize_distributed()
  if output_dir is not None:   # another command writing there is refused (dirlock.py)
    with dirlock.output_folder(output_dir, 'evaluating', acquire=sharding.acquire_on_process_0,
                               main=jax.process_index() == 0):
      return _evaluate_workdir(run, config, overrides=overrides, checkpoint=checkpoint,
                               output_dir=output_dir, verbose=verbose)
  lock = run.lock('evaluating')
  try:
    try:
      sharding.acquire_on_process_0(lock)
    except OutputWriteError as error:   # a read-only run directory
      raise OutputWriteError(f'{error}; write the outputs elsewhere with --output') from None
    return _evaluate_workdir(run, config, overrides=overrides, checkpoint=checkpoint,
                             output_dir=None, verbose=verbose)
  finally:
    lock.release()


def _evaluate_workdir(run: RunDir, config: RunConfig | None, *,
                      overrides: dict[str, Any] | None, checkpoint: str,
                      output_dir: str | None, verbose: bool) -> dict[str, Any]:
  """evaluate_workdir's body (the lock, where needed, is held)."""
  if run.kind == 'seeds':
    per_seed = {}
    for seed, seed_run in zip(run.seeds(), run.seed_runs()):
      per_seed[seed] = _evaluate_workdir(
          seed_run, config, overrides=overrides, checkpoint=checkpoint, verbose=verbose,
          output_dir=os.path.join(output_dir, seed_dir_name(seed)) if output_dir else None)
    result = {'seeds': per_seed, **seed_statistics(list(per_seed.values()))}
    if output_dir and jax.process_index() == 0:
      atomic.write_json(os.path.join(output_dir, 'eval_seeds.json'), result)
    return result
  trained = inference.run_config(run, config, verbose=verbose)
  settings = eval_config(trained, config, overrides)   # a bad setting fails here, before reading
  sharding.maybe_initialize_distributed()
  mesh = sharding.make_mesh()
  sharding.check_batch_size(settings.run.eval_batch_size, mesh, 'eval_batch_size')
  model = inference.restore_model(run, which=checkpoint, mesh=mesh, config=settings)
  splits = datasets.load_eval_split(settings)
  loader = datasets.make_loader(settings, splits.eval, settings.run.eval_batch_size, 'eval')
  (result,) = evaluate(steps.make_eval_step(model.graphdef, settings, mesh), model.state,
                       loader, mesh, settings.model.num_classes,
                       scorer=settings.data.spec.scorer)
  if jax.process_index() == 0:
    folder = output_dir or run.path
    write_outputs(settings, folder, result, splits, verbose=verbose,
                  checkpoint={'step': model.step, 'which': model.which})
    if verbose:
      print(f'evaluated checkpoint step {model.step} ({model.which}) of {run.path}: {folder}',
            flush=True)
  return {'step': model.step, 'checkpoint': model.which, **result.scalars()}


def seed_statistics(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """{'mean': {metric: m}, 'std': {metric: s}} over seeds, for every numeric metric they share
  (std: the sample standard deviation, ddof 1; 0 for one seed)."""
  keys = [k for k, v in results[0].items() if isinstance(v, (int, float))
          and not isinstance(v, bool) and k not in ('step', 'num_samples', 'num_clips')
          and all(k in r for r in results)]
  values = {k: np.array([float(r[k]) for r in results]) for k in keys}
  return {'mean': {k: float(v.mean()) for k, v in values.items()},
          'std': {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}}


__all__ = ['EvalResult', 'EVAL_SETTINGS', 'RunDirError', 'eval_config', 'evaluate',
           'evaluate_workdir', 'seed_statistics', 'write_outputs']
