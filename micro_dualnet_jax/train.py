"""The training loop: `train_and_evaluate(config, workdir)` (docs/workdir.md).

The jitted steps are `steps.py`'s; this module owns what happens around them: the checks made
before anything is written, the run directories (`rundir.py`), checkpoints, logs, signals,
evaluation points and the final outputs (`evaluate.py`). The host touches device values only at
logging, evaluation and checkpoint points.

**Lifecycle.** Every check (config values, batch and eval batch against the devices, the work
directory's format and model, the data) runs before anything is written, so a refused command
leaves the work directory as it was. A run started again in its work directory resumes from the
last checkpoint (every seed from the same step); a finished one prints its summary and exits (0),
unless its step budget was raised, when it trains on.

**Seeds.** `config.num_seeds` = N > 1 trains seeds `seed .. seed + N - 1` in one jit
(`steps.py`); each gets its own run directory `seed_<s>/` (config, checkpoints, logs, outputs),
and the work directory gets the summary over them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from micro_dualnet_jax import __version__, evaluate, rundir, sharding, steps
from micro_dualnet_jax.checkpoint import (Checkpointer, CheckpointWriteError, abstract_like,
                                          items_state, state_items, tree_checksum)
from micro_dualnet_jax.data import datasets
from micro_dualnet_jax.data.loader import Loader
from micro_dualnet_jax.errors import TrainingError
from micro_dualnet_jax.losses import LossConfig
from micro_dualnet_jax.rundir import METRICS_FILE, RunDir, RunDirError, seed_dir_name
from micro_dualnet_jax.settings import RunSettings

Hook = Callable[[str, int], None]
HOOK_EVENTS = ('step', 'checkpoint', 'final_eval')


# ----------------------------------------------------------------------------- checks


def check_config(config: ml_collections.ConfigDict) -> RunSettings:
  """Builds every config dataclass from `config` (each checks its values) -> the run settings.

  Raises ValueError naming the section, the field and the value.
  """
  settings = RunSettings.from_config(config)
  steps.model_config(config)
  steps.augment_config(config)
  LossConfig.from_dict(config.loss)
  steps.OptimConfig.from_dict(config.optim)
  steps.test_time_config(config)
  if config.best_metric in ('f1_mean', 'body_top1') and config.data.name != 'ma52':
    raise ValueError(f"invalid run config: best_metric {config.best_metric!r} exists for MA-52 "
                     f"only (data.name is {config.data.name!r})")
  return settings


def _check_writable(path: str) -> None:
  """The work directory, or the nearest folder above it that exists, takes a file (a probe,
  removed at once: a full disk or a read-only mount fails here, before any work)."""
  folder = os.path.abspath(path)
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  # One probe per process: processes sharing a work directory must not remove each other's.
  probe = os.path.join(folder, f'.write_test.{jax.process_index()}.{os.getpid()}')
  try:
    if not os.path.isdir(folder):
      raise NotADirectoryError(f'{folder!r} is not a folder')
    with open(probe, 'w') as f:
      f.write('ok')
      f.flush()
      os.fsync(f.fileno())
    os.remove(probe)
  except OSError as error:
    if os.path.exists(probe):
      os.remove(probe)
    raise TrainingError(f'work directory {path!r} is not writable: {error}') from None


def _check_workdir(run: RunDir, settings: RunSettings,
                   config: ml_collections.ConfigDict) -> None:
  """A work directory that holds a run: the same format, kind, seeds and model."""
  if not run.exists():
    if os.path.isdir(run.path) and os.listdir(run.path):
      # Write probes of other processes (or of a killed one) and empty orbax folders are fine.
      leftovers = sorted(p for p in os.listdir(run.path) if not p.startswith('.write_test.'))
      if set(leftovers) - {'checkpoints', 'best'}:
        raise RunDirError(f'work directory {run.path!r} is not empty and holds no run '
                          f'({leftovers[:5]}); use an empty or new --workdir')
    return
  info = run.run_info()
  kind = 'seeds' if settings.num_seeds > 1 else 'run'
  if info['kind'] != kind or run.seeds() != settings.seeds:
    raise RunDirError(f'work directory {run.path!r} holds a run of seeds {run.seeds()}; this '
                      f'config trains seeds {settings.seeds} (seed, num_seeds): use a new '
                      '--workdir or the same seeds')
  for seed_run in run.seed_runs():
    seed_run.check_same_model(config)
  old = run.raw_config() or {}
  if old.get('best_metric', config.best_metric) != config.best_metric:
    raise RunDirError(f'work directory {run.path!r} keeps its best checkpoint by best_metric '
                      f'{old.get("best_metric")!r}, this config by {config.best_metric!r}: use '
                      'the same best_metric or a new --workdir')


# ----------------------------------------------------------------------------- one seed's files


class _MetricsLog:
  """metrics.jsonl writer (process 0 only), plus TensorBoard event files in <workdir>/tensorboard
  when the optional `tensorboardX` package is installed.

  A run that resumes from step S first drops the records of steps after S: the steps are
  trained again from the checkpoint, so the log keeps one record per step (and loses a line that
  a crash cut short).
  """

  def __init__(self, workdir: str, enabled: bool, resume_step: int = 0):
    self.path, self.enabled = os.path.join(workdir, METRICS_FILE), enabled
    self.tensorboard = None
    if enabled:
      self._drop_after(resume_step)
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        return
      self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _drop_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    kept, dropped = [], 0
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          dropped += 1
          continue
        if isinstance(record, dict) and isinstance(record.get('step'), int) \
            and record['step'] > step:
          dropped += 1
          continue
        kept.append(line if line.endswith('\n') else line + '\n')
    if dropped:
      with open(self.path + '.tmp', 'w') as f:
        f.writelines(kept)
      os.replace(self.path + '.tmp', self.path)
      logging.info('metrics.jsonl: dropped %d record(s) after step %d (trained again)', dropped,
                   step)

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self.tensorboard is not None:
      for key, value in record.items():
        if key != 'step' and isinstance(value, (int, float)):
          self.tensorboard.add_scalar(key, value, record['step'])
      self.tensorboard.flush()

  def close(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()


@dataclasses.dataclass
class _Seed:
  """What the loop keeps per seed: its run directory, checkpoints, log, best metrics, data."""
  seed: int
  run: RunDir
  ckpt: Checkpointer
  loader: Loader
  best: dict[str, Any] = dataclasses.field(default_factory=dict)
  log: _MetricsLog | None = None


def _checkpoint_io(write: Callable[..., Any], *args, **kwargs) -> Any:
  """Runs a checkpoint write; a failed one stops the run with a TrainingError (its message says
  which checkpoints are intact and how to resume)."""
  try:
    return write(*args, **kwargs)
  except CheckpointWriteError as error:
    raise TrainingError(str(error)) from error


def _restore(seeds: Sequence[_Seed], abstract: dict[str, Any]
             ) -> tuple[int, list[dict[str, Any]], list[dict]] | None:
  """The newest step every seed has a readable checkpoint of -> (step, states, metas)."""
  common = set.intersection(*(set(s.ckpt.steps()) for s in seeds))
  if not common and not any(s.ckpt.steps() for s in seeds):
    return None
  for step in sorted(common, reverse=True):
    states, metas = [], []
    try:
      for s in seeds:
        restored = s.ckpt.restore(abstract, steps=[step])
        states.append(items_state(restored[1]))
        metas.append(restored[2])
    except RuntimeError:
      continue
    return step, states, metas
  found = {s.seed: s.ckpt.steps() for s in seeds}
  print(f'WARNING: no step has a readable checkpoint for every seed ({found}); starting from '
        'scratch', flush=True)
  return None


class _Stop:
  """SIGTERM/SIGINT flag: the loop saves a checkpoint and returns at the next step boundary."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def improves_on_best(scalars: dict[str, Any], best: dict[str, Any], metric: str) -> bool:
  """Whether an evaluation scoring `scalars` becomes the best one, given `best`, the metrics of
  the best evaluation so far ({} before the first). Strictly higher `metric` only: of tied
  evaluations the first stays best, here and in best/."""
  return not best or scalars[metric] > best.get(metric, -1)


def _seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """The config of one seed's run directory: a run of that seed alone."""
  seed_config = copy.deepcopy(config)
  with seed_config.unlocked():
    seed_config.seed = seed
    seed_config.num_seeds = 1
  return seed_config


# What fixes a run's number of steps: when none of these differ from the run's config.json, a
# finished run is recognised without opening its data.
_BUDGET_KEYS = ('num_train_steps', 'num_epochs', 'batch_size', 'data.name', 'data.train_split',
                'data.options')


def _finished_as_configured(run: RunDir, config: ml_collections.ConfigDict
                            ) -> dict[str, Any] | None:
  """The summary of a finished run whose step budget `config` leaves as it was, else None."""
  old = run.raw_config() if run.exists() else None
  summary = run.summary() if old is not None else None
  if summary is None:
    return None
  new = rundir.config_dict(config)

  def value(tree, key):
    for part in key.split('.'):
      tree = tree.get(part) if isinstance(tree, dict) else None
    return tree

  if any(value(old, k) != value(new, k) for k in _BUDGET_KEYS):
    return None
  return summary


def _report_finished(run: RunDir, summary: dict[str, Any]) -> dict[str, Any]:
  print(f'{run.path} already holds this run, finished at step {summary["step"]}; nothing to '
        f'do. Summary: {run.file("summary.json")}', flush=True)
  print(json.dumps(summary.get('final', summary.get('final_mean', {}))), flush=True)
  return summary


def _finished(run: RunDir, total_steps: int) -> dict[str, Any] | None:
  """The summary of a run that already trained `total_steps` (or more) steps, else None."""
  summary = run.summary() if run.exists() else None
  if summary and summary.get('step', -1) >= total_steps:
    return summary
  return None


# ----------------------------------------------------------------------------- the run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       hooks: Sequence[Hook] = ()) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its checkpoints) and evaluates; returns the
  summary written to summary.json (a dict with 'interrupted_at_step' when stopped early).

  hooks: callables `hook(event, step)` run on the host, in order, at fixed points of the loop:
    'step' after training step `step` was dispatched and logged, before its checkpoint and the
    signal check; 'checkpoint' after the checkpoints of `step` were written (started, with
    async_checkpoints); 'final_eval' before the final evaluation. For progress reporting,
    profiling windows, or tests that stop a run at an exact point.
  """
  # 1. Checks: nothing is written until all of them pass.
  settings = check_config(config)
  sharding.maybe_initialize_distributed()
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh()
  sharding.check_batch_size(settings.batch_size, mesh)
  sharding.check_batch_size(settings.eval_batch_size, mesh, 'eval_batch_size')
  run = RunDir(workdir)
  _check_writable(workdir)
  _check_workdir(run, settings, config)
  done = _finished_as_configured(run, config)
  if done is not None:   # a requeued finished run: nothing read, nothing written
    return _report_finished(run, done)
  splits = datasets.load_splits(config)
  seeds = settings.seeds
  loaders = [datasets.make_loader(config, splits.train, settings.batch_size, 'train', seed=s)
             for s in seeds]
  eval_loader = datasets.make_loader(config, splits.eval, settings.eval_batch_size, 'eval')
  steps_per_epoch = loaders[0].steps_per_epoch
  total_steps = settings.num_train_steps or int(settings.num_epochs * steps_per_epoch)
  if total_steps < 1:
    raise ValueError(f'invalid run config: num_epochs {settings.num_epochs} of '
                     f'{steps_per_epoch} steps each is less than one step')
  done = _finished(run, total_steps)
  if done is not None:
    return _report_finished(run, done)
  multi = settings.num_seeds > 1
  seed_runs = [RunDir(os.path.join(workdir, seed_dir_name(s))) if multi else run for s in seeds]
  newest = max((max(r.checkpoint_steps(), default=0) for r in seed_runs), default=0)
  if newest > total_steps:
    raise RunDirError(f'work directory {workdir!r} holds checkpoints up to step {newest}, beyond '
                      f'this config\'s {total_steps} steps: raise num_train_steps / num_epochs, '
                      'or use a new --workdir')
  # Every process has passed every check before any of them writes.
  sharding.barrier('run checks passed')

  # 2. The run directories.
  if is_main:
    run.write(config, kind='seeds' if multi else 'run', seeds=seeds, package_version=__version__)
    if multi:
      for s, seed_run in zip(seeds, seed_runs):
        seed_run.write(_seed_config(config, s), kind='run', seeds=[s],
                       package_version=__version__)
  sharding.barrier('run directories written')

  tx, schedule = steps.make_optimizer(steps.OptimConfig.from_dict(config.optim), total_steps)
  graphdef, state = steps.create_train_states(config, tx, mesh, seeds)
  train_step = steps.make_train_step(graphdef, tx, config, mesh, seeds_axis=True)
  eval_step = steps.make_eval_step(graphdef, config, mesh, seeds_axis=True)
  per_seed = [_Seed(s, seed_run, Checkpointer(
      seed_run.path, keep=settings.keep_checkpoints, best_metric=settings.best_metric,
      async_save=settings.async_checkpoints, cleanup=True), loader)
              for s, seed_run, loader in zip(seeds, seed_runs, loaders)]
  abstract = abstract_like(state_items(steps.replica(state, 0, mesh)))
  restored = _restore(per_seed, abstract)
  start_step, elapsed = 0, 0.0
  if restored is not None:
    start_step, states, metas = restored
    state = steps.replicate_stacked(states, mesh)
    for s, meta in zip(per_seed, metas):
      s.best.update(meta.get('best', {}))
    elapsed = float(metas[0].get('elapsed_s', 0.0))
    logging.info('resumed from step %d', start_step)
    print(f'Resuming from checkpoint at step {start_step}', flush=True)
  # Steps after the start are trained again: checkpoints of them (a seed saved ahead of the
  # others, a best checkpoint of a later evaluation) must not shadow the new ones.
  for s in per_seed:
    if is_main:
      s.ckpt.delete_after(start_step)
    best_meta = s.ckpt.read_meta(best=True)
    if best_meta is not None:   # the best/ checkpoint knows the best so far
      s.best.clear()
      s.best.update(best_meta.get('best', {}))
  sharding.barrier('stale checkpoints removed')
  history_start = time.time() - elapsed
  for s in per_seed:
    s.log = _MetricsLog(s.run.path, is_main, resume_step=start_step)

  n_params = sum(x.size for x in jax.tree.leaves(state['params'])) // len(seeds)
  seeds_note = f' x {len(seeds)} seeds ({seeds[0]}..{seeds[-1]})' if multi else ''
  print(f'Micro-DualNet: {n_params:,} parameters{seeds_note}; {len(splits.train)} train / '
        f'{len(eval_loader)} eval clips; {total_steps} steps of batch {settings.batch_size} on '
        f'{jax.device_count()} device(s), {jax.process_count()} process(es)', flush=True)

  def meta_for(step, seed):
    epoch, offset = divmod(step, steps_per_epoch)
    # Copies: an asynchronous save serialises the meta later, after `best` may have changed.
    return {'step': step, 'epoch': epoch, 'batch_in_epoch': offset, 'best': dict(seed.best),
            'model': config.model.to_dict(), 'seed': seed.seed,
            'elapsed_s': round(time.time() - history_start, 1)}

  saved = {'step': start_step}

  def call_hooks(event, step):
    for hook in hooks:
      hook(event, step)

  def check_finite(step):
    nonfinite = np.asarray(jax.device_get(state['nonfinite']))
    if nonfinite.any():
      bad = ', '.join(f'seed {s.seed}: {int(n)}' for s, n in zip(per_seed, nonfinite) if n)
      raise TrainingError(
          f'training steps up to step {step} had a NaN or inf loss or gradient ({bad}); '
          'those updates were skipped and no checkpoint was written after them. Lower '
          'optim.learning_rate, check the data for NaN keypoints, or set optim.clip_norm.')

  def save(step, force=False):
    if saved['step'] == step:
      return
    check_finite(step)
    for i, s in enumerate(per_seed):
      _checkpoint_io(s.ckpt.save, step, steps.replica(state, i, mesh), meta_for(step, s),
                     force=force)
    saved['step'] = step
    print(f'Checkpoint at step {step} ' + ('written in the background'
                                           if settings.async_checkpoints else 'saved'),
          flush=True)
    call_hooks('checkpoint', step)

  def run_eval(step):
    results = evaluate.evaluate(eval_step, state, eval_loader, mesh, config.model.num_classes,
                                ma52=config.data.name == 'ma52', num_seeds=len(seeds))
    finite = not np.asarray(jax.device_get(state['nonfinite'])).any()
    for i, (s, result) in enumerate(zip(per_seed, results)):
      scalars = result.scalars()
      s.log.write({'step': step, **{f'eval_{k}': v for k, v in scalars.items()}})
      if result.labelled and improves_on_best(scalars, s.best, settings.best_metric):
        s.best.clear()
        s.best.update({**scalars, 'step': step})
        if finite:
          _checkpoint_io(s.ckpt.save_best, step, steps.replica(state, i, mesh),
                         meta_for(step, s), scalars)
    shown = [k for k in ('top1', 'top5', 'f1_macro') if results[0].labelled]
    print(f'[eval step {step}] ' + ', '.join(
        f'{k} ' + ' / '.join(f'{r.scalars()[k]:.2f}' for r in results) for k in shown)
          + ('' if shown else 'unlabelled split: no metrics'), flush=True)
    return results

  def close_all():
    for s in per_seed:
      _checkpoint_io(s.ckpt.close)
      s.log.close()

  step = start_step
  samples_since, t_last = 0, time.time()
  with _Stop() as stop:
    streams = [s.loader.train_batches(start_step) for s in per_seed]
    while step < total_steps:
      batch = steps.host_batches_to_global([next(it) for it in streams], mesh,
                                           settings.batch_size)
      state, step_metrics = train_step(state, batch)
      step += 1
      samples_since += settings.batch_size * len(seeds)
      if step % settings.log_every_steps == 0 or step == total_steps:
        values = {k: np.asarray(v, np.float64) for k, v in jax.device_get(step_metrics).items()}
        check_finite(step)
        now = time.time()
        rate = samples_since / max(now - t_last, 1e-9)
        eta = (total_steps - step) * settings.batch_size * len(seeds) / max(rate, 1e-9)
        learning_rate = float(schedule(step - 1))
        for i, s in enumerate(per_seed):
          s.log.write({'step': step, **{f'train_{k}': float(v[i]) for k, v in values.items()},
                       'train_learning_rate': learning_rate, 'samples_per_s': rate})
        mean = {k: float(v.mean()) for k, v in values.items()}
        print(f'step {step}/{total_steps} loss {mean["loss"]:.4f} (ce {mean["ce"]:.4f} '
              f'mac {mean["mac"]:.4f}) acc {mean["accuracy"]:.3f} lr {learning_rate:.2e} | '
              f'{rate:.1f} samples/s | ETA {eta / 60:.1f} min', flush=True)
        samples_since, t_last = 0, now
      call_hooks('step', step)
      if settings.eval_every_steps and step % settings.eval_every_steps == 0 \
          and step < total_steps:
        run_eval(step)
      if step % settings.checkpoint_every_steps == 0 or step == total_steps:
        save(step)
      # Processes stop at the same step even when the signal reaches only some of them.
      signalled = sharding.any_process(stop.signal is not None)
      if signalled or (step - start_step == settings.max_steps_per_run and step < total_steps):
        save(step, force=True)
        close_all()
        reason = (f'received signal {stop.signal}' if stop.signal is not None else
                  'another process received a signal' if signalled else
                  f'max_steps_per_run={settings.max_steps_per_run} reached')
        print(f'Stopping early ({reason}): saved checkpoint at step {step}; run the same '
              'command again to resume.', flush=True)
        return {'interrupted_at_step': step}
    for stream in streams:
      stream.close()
  check_finite(step)
  call_hooks('final_eval', step)
  results = run_eval(step)
  close_all()
  wall = round(time.time() - history_start, 1)
  summaries = []
  for i, (s, result) in enumerate(zip(per_seed, results)):
    summaries.append({
        'final': result.scalars(), 'best': s.best, 'step': step, 'seed': s.seed,
        'wall_time_s': wall,
        'param_checksum': tree_checksum(steps.replica(state, i, mesh)['params']),
        'num_params': int(n_params), 'devices': jax.device_count(),
        'device': device_name(), 'processes': jax.process_count()})
  if not multi:
    summary = summaries[0]
  else:
    stats = evaluate.seed_statistics([x['final'] for x in summaries])
    summary = {'seeds': {str(x['seed']): {k: x[k] for k in ('final', 'best', 'param_checksum')}
                         for x in summaries},
               'final_mean': stats['mean'], 'final_std': stats['std'], 'step': step,
               'wall_time_s': wall, 'num_params': int(n_params), 'num_seeds': len(seeds),
               'devices': jax.device_count(), 'device': device_name(),
               'processes': jax.process_count()}
  if is_main:
    for s, result, seed_summary in zip(per_seed, results, summaries):
      evaluate.write_outputs(config, s.run.path, result, splits, seed_summary, verbose=not multi)
    if multi:
      run.write_summary(summary)
      print(_seed_table(summaries, results[0].labelled), flush=True)
    print(f'summary: {run.file("summary.json")}', flush=True)
  return summary


def device_name() -> str:
  """What the run trained on, e.g. 'cpu' or 'NVIDIA H200' (jax's device kind)."""
  return f'{jax.default_backend()}: {jax.devices()[0].device_kind}'


def _seed_table(summaries: Sequence[dict[str, Any]], labelled: bool) -> str:
  """The final metrics of each seed and their mean +- std."""
  if not labelled:
    return f'{len(summaries)} seeds evaluated on an unlabelled split: no metrics'
  keys = [k for k in ('top1', 'top5', 'f1_macro', 'f1_mean') if k in summaries[0]['final']]
  stats = evaluate.seed_statistics([s['final'] for s in summaries])
  lines = ['Final evaluation, ' + f'{len(summaries)} seeds:',
           f'  {"seed":<8}' + ''.join(f'{k:>16}' for k in keys)]
  for s in summaries:
    lines.append(f'  {s["seed"]:<8}' + ''.join(f'{s["final"][k]:>16.2f}' for k in keys))
  lines.append(f'  {"mean":<8}' + ''.join(
      f'{stats["mean"][k]:>9.2f} +- {stats["std"][k]:<4.2f}' for k in keys))
  return '\n'.join(lines)


__all__ = ['HOOK_EVENTS', 'Hook', 'RunSettings', 'TrainingError', 'check_config',
           'train_and_evaluate']
