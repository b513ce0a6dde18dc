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

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from micro_dualnet_jax import __version__, atomic, evaluate, interrupts, rundir, sharding, steps
from micro_dualnet_jax.checkpoint import (Checkpointer, abstract_like, items_state, state_items,
                                          tree_checksum)
from micro_dualnet_jax.config import RunConfig, RunSettings
from micro_dualnet_jax.dirlock import LOCK_FILE
from micro_dualnet_jax.errors import (CheckpointReadError, CheckpointWriteError, ConfigError,
                                      DirectoryInUseError, OutputWriteError, RunDirError,
                                      TrainingError)
from micro_dualnet_jax.pipeline import datasets, device_data
from micro_dualnet_jax.pipeline.loader import Loader
from micro_dualnet_jax.rundir import METRICS_FILE, RunDir, seed_dir_name

Hook = Callable[[str, int], None]
HOOK_EVENTS = ('train_start', 'step', 'checkpoint', 'final_eval')
# steps_per_call = 0: calls of about this long, of at most this many steps (device / host data).
AUTO_CALL_SECONDS = 1.0
AUTO_MAX_STEPS = {'device': 1000, 'host': 8}


# ----------------------------------------------------------------------------- checks


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


def _check_workdir(run: RunDir, config: RunConfig) -> None:
  """A work directory that holds a run: the same format, kind, seeds and model."""
  if not run.exists():
    if os.path.isdir(run.path) and os.listdir(run.path):
      # Write probes of other processes (or of a killed one), the lock and empty orbax folders
      # are fine; checkpoints without the run.json and config.json that say what they are are
      # not.
      leftovers = sorted(p for p in os.listdir(run.path)
                         if not p.startswith('.write_test.') and p != LOCK_FILE)
      if set(leftovers) - {rundir.CHECKPOINTS_DIR, rundir.BEST_DIR} or run.has_checkpoints():
        raise RunDirError(f'work directory {run.path!r} is not empty and holds no run '
                          f'(no run.json or config.json; it holds {leftovers[:5]}); use an empty '
                          'or new --workdir')
    return
  info = run.run_info()
  kind = 'seeds' if config.run.num_seeds > 1 else 'run'
  if info['kind'] != kind or run.seeds() != config.seeds:
    raise RunDirError(f'work directory {run.path!r} holds a run of seeds {run.seeds()}; this '
                      f'config trains seeds {config.seeds} (seed, num_seeds): use a new '
                      '--workdir or the same seeds')
  for seed_run in run.seed_runs():
    seed_run.check_same_model(config)
  old = run.raw_config() or {}
  best_metric = config.run.best_metric
  if old.get('best_metric', best_metric) != best_metric:
    raise RunDirError(f'work directory {run.path!r} keeps its best checkpoint by best_metric '
                      f'{old.get("best_metric")!r}, this config by {best_metric!r}: use '
                      'the same best_metric or a new --workdir')


# ----------------------------------------------------------------------------- one seed's files


class _MetricsLog:
  """metrics.jsonl writer (process 0 only), plus TensorBoard event files in <workdir>/tensorboard
  when the optional `tensorboardX` package is installed.

  A run that resumes from step S first drops the records of steps after S: the steps are
  trained again from the checkpoint, so the log keeps one record per step (and loses a line that
  a crash cut short). With `evaluates_again` (S is the last step: a run stopped after its final
  checkpoint evaluates S once more), the evaluation record of S goes too.
  """

  def __init__(self, workdir: str, enabled: bool, resume_step: int = 0,
               evaluates_again: bool = False):
    self.path, self.enabled = os.path.join(workdir, METRICS_FILE), enabled
    self.tensorboard = None
    if enabled:
      self._drop_after(resume_step, evaluates_again)
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        return
      self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _drop_after(self, step: int, drop_eval_at_step: bool) -> None:
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
        if isinstance(record, dict) and isinstance(record.get('step'), int) and (
            record['step'] > step or (drop_eval_at_step and record['step'] == step
                                      and any(k.startswith('eval_') for k in record))):
          dropped += 1
          continue
        kept.append(line if line.endswith('\n') else line + '\n')
    if dropped:
      atomic.write_text(self.path, ''.join(kept))
      logging.info('metrics.jsonl: dropped %d record(s) of steps trained or evaluated again '
                   '(resuming at step %d)', dropped, step)

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    try:
      with open(self.path, 'a') as f:
        f.write(json.dumps(record) + '\n')
    except OSError as error:   # a line cut short is dropped when the run resumes
      raise OutputWriteError(f'appending to {self.path} failed ({error.strerror or error})') \
          from error
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
  """The newest step every seed has a readable checkpoint of -> (step, states, metas); None
  when there is no checkpoint at all.

  Raises CheckpointReadError, naming every checkpoint and why it failed, when there are
  checkpoints and none restores (another JAX_ENABLE_X64 or library version, an I/O error, a
  damaged disk): the run must not start from scratch over them, which would delete them.
  """
  found = {s.seed: s.ckpt.steps() for s in seeds}
  if not any(found.values()):
    return None
  common = set.intersection(*(set(steps) for steps in found.values()))
  failures = []
  for step in sorted(common, reverse=True):
    states, metas = [], []
    try:
      for s in seeds:
        restored = s.ckpt.restore(abstract, steps=[step])
        states.append(items_state(restored[1]))
        metas.append(restored[2])
    except CheckpointReadError as error:
      failures += [f'{path} ({why})' for path, why in error.failures]
      continue
    return step, states, metas
  for s in seeds:
    failures += [f'{s.ckpt.latest.directory}/{step} (not every seed has step {step})'
                 for step in found[s.seed] if step not in common]
  raise CheckpointReadError(
      'none of the checkpoints could be restored, so the run did not start and nothing was '
      'deleted: ' + '; '.join(failures) + '. Run with the settings that wrote them (e.g. the '
      'same JAX_ENABLE_X64 and package versions), or move them away to start from scratch')


def improves_on_best(scalars: dict[str, Any], best: dict[str, Any], metric: str) -> bool:
  """Whether an evaluation scoring `scalars` becomes the best one, given `best`, the metrics of
  the best evaluation so far ({} before the first). Strictly higher `metric` only: of tied
  evaluations the first stays best, here and in best/."""
  return not best or scalars[metric] > best.get(metric, -1)


def _seed_config(config: RunConfig, seed: int) -> RunConfig:
  """The config of one seed's run directory: a run of that seed alone."""
  return config.replace(seed=seed, num_seeds=1)


# What fixes a run's number of steps: when none of these differ from the run's config.json, a
# finished run is recognised without opening its data.
_BUDGET_KEYS = ('num_train_steps', 'num_epochs', 'batch_size', 'data.name', 'data.train_split',
                'data.options')


def _finished_as_configured(run: RunDir, config: RunConfig) -> dict[str, Any] | None:
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


class Trainer:
  """One run of `config` in `workdir`: its phases are methods, what they share is attributes.

  `train_and_evaluate` runs the phases in order:
    check()   every check; nothing is written. Returns the summary of a run found finished.
    start()   the run directories, the train state (restored from the newest checkpoint every
              seed has), the jitted steps.
    train()   the loop to the step budget; False when it stopped early (a signal, or
              max_steps_per_run), after saving a checkpoint. Signals: interrupts.StopSignals.
    finish()  the final evaluation, the outputs and the summary.

  The run holds the work directory's lock (`RunDir.lock`; process 0, from the checks to the end)
  and handles SIGTERM / SIGINT from the multi-process start on; `close` releases both.
  """

  def __init__(self, config: RunConfig, workdir: str, *, hooks: Sequence[Hook] = (),
               exit_on_second_signal: bool = False):
    self.config, self.settings, self.hooks = config, config.run, tuple(hooks)
    self.exit_on_second_signal = exit_on_second_signal
    self.stopped_by: str | None = None   # the signal that stopped train() early, e.g. 'SIGINT'
    self.run = RunDir(workdir)
    self.lock = self.run.lock('training')
    self.stop = interrupts.StopSignals(exit_at_once=exit_on_second_signal)
    self.seeds = config.seeds
    self.multi = len(self.seeds) > 1
    self.is_main = True
    self.step = 0
    self.saved_step = 0
    self._model_dict = rundir.config_dict(config)['model']   # what every checkpoint's meta holds

  # ------------------------------------------------------------------- 1. checks

  def check(self) -> dict[str, Any] | None:
    """Every check before anything is written; the summary of a run that is done, else None."""
    settings, workdir = self.settings, self.run.path
    sharding.maybe_initialize_distributed()
    self.stop.install()   # after jax.distributed, which installs a SIGTERM handler of its own
    self.is_main = jax.process_index() == 0
    self.mesh = sharding.make_mesh()
    sharding.check_batch_size(settings.batch_size, self.mesh)
    sharding.check_batch_size(settings.eval_batch_size, self.mesh, 'eval_batch_size')
    _check_writable(workdir)
    # An existing work directory is checked under its lock (another run may be writing it); a
    # new one is locked when it is created, after the checks.
    locked_early = sharding.any_process(self.is_main and os.path.isdir(self.lock.folder))
    if locked_early:
      self._take_lock()
    _check_workdir(self.run, self.config)
    done = _finished_as_configured(self.run, self.config)
    if done is not None:   # a requeued finished run: nothing read, nothing written
      return done
    self.splits = datasets.load_splits(self.config)
    self.loaders = [datasets.make_loader(self.config, self.splits.train, settings.batch_size,
                                         'train', seed=s) for s in self.seeds]
    self.eval_loader = datasets.make_loader(self.config, self.splits.eval,
                                            settings.eval_batch_size, 'eval')
    self.pipeline, self.packed = self._choose_pipeline()
    self.steps_per_epoch = self.loaders[0].steps_per_epoch
    self.total_steps = (settings.num_train_steps
                        or int(settings.num_epochs * self.steps_per_epoch))
    if self.total_steps < 1:
      raise ConfigError(f'invalid run config: num_epochs {settings.num_epochs} of '
                        f'{self.steps_per_epoch} steps each is less than one step')
    done = _finished(self.run, self.total_steps)
    if done is not None:
      return done
    self.seed_runs = [RunDir(os.path.join(workdir, seed_dir_name(s))) if self.multi else self.run
                      for s in self.seeds]
    newest = max((max(r.checkpoint_steps(), default=0) for r in self.seed_runs), default=0)
    if newest > self.total_steps:
      raise RunDirError(f'work directory {workdir!r} holds checkpoints up to step {newest}, '
                        f'beyond this config\'s {self.total_steps} steps: raise num_train_steps '
                        '/ num_epochs, or use a new --workdir')
    if not locked_early:
      self._take_lock()
      if sharding.any_process(self.is_main and (self.run.exists() or self.run.has_checkpoints())):
        raise DirectoryInUseError(f'work directory {workdir!r} was written by another run while '
                                  'this command checked it; run the command again')
    # Every process has passed every check before any of them writes.
    sharding.barrier('run checks passed')
    return None

  def _take_lock(self) -> None:
    """Process 0 creates the work directory if needed and takes its lock (a collective)."""
    if self.is_main:
      os.makedirs(self.lock.folder, exist_ok=True)
    sharding.acquire_on_process_0(self.lock)

  def close(self) -> None:
    """Puts the signal handlers back and releases the lock, however the run ended."""
    self.stop.restore()
    self.lock.release()

  def _choose_pipeline(self) -> tuple[str, device_data.PackedSplit | None]:
    """'device' (with the packed training split, every record read and checked) or 'host'."""
    data = self.config.data
    if data.pipeline == 'host':
      return 'host', None
    packed = device_data.pack_split(self.loaders[0])
    budget = device_data.budget_bytes(data.device_memory_budget_mb)
    if packed.nbytes <= budget:
      return 'device', packed
    if data.pipeline == 'device':
      raise ConfigError(f'data.pipeline=device: the packed {data.name}/{data.train_split} split '
                        f'takes {packed.nbytes / 2**20:.0f} MB, over the device memory budget of '
                        f'{budget / 2**20:.0f} MB (data.device_memory_budget_mb); raise the '
                        'budget or use data.pipeline=host (or auto)')
    return 'host', None

  # ------------------------------------------------------------------- 2. start

  def start(self) -> None:
    """Builds the state and the steps, restores the newest checkpoint every seed has, writes
    the run directories (after the restore: a run whose checkpoints cannot be read keeps its
    config.json)."""
    config, settings = self.config, self.settings
    class_names = self.splits.class_names
    self.tx, self.schedule = steps.make_optimizer(config.optim, self.total_steps)
    graphdef, self.state = steps.create_train_states(config.model, self.tx, self.mesh,
                                                     self.seeds)
    self.max_steps_per_call = settings.steps_per_call or AUTO_MAX_STEPS[self.pipeline]
    self.train_loop = steps.make_train_loop(graphdef, self.tx, config, self.mesh,
                                            max_steps=self.max_steps_per_call,
                                            data_on_device=self.pipeline == 'device')
    self.seed_array = sharding.replicate_host_value(np.asarray(self.seeds, np.int32), self.mesh)
    if self.pipeline == 'device':
      self.source = device_data.place(self.packed, self.mesh)
    self.packed = None   # the host copy is not needed any more
    self.eval_step = steps.make_eval_step(graphdef, config, self.mesh, seeds_axis=True)
    self.per_seed = [_Seed(s, seed_run, Checkpointer(
        seed_run.path, keep=settings.keep_checkpoints, best_metric=settings.best_metric,
        async_save=settings.async_checkpoints, cleanup=True), loader)
                     for s, seed_run, loader in zip(self.seeds, self.seed_runs, self.loaders)]
    abstract = abstract_like(state_items(steps.replica(self.state, 0, self.mesh)))
    restored = _restore(self.per_seed, abstract)
    start_step, elapsed = 0, 0.0
    if restored is not None:
      start_step, states, metas = restored
      self.state = steps.replicate_stacked(states, self.mesh)
      for s, meta in zip(self.per_seed, metas):
        s.best.update(meta.get('best', {}))
      elapsed = float(metas[0].get('elapsed_s', 0.0))
      logging.info('resumed from step %d', start_step)
      print(f'Resuming from checkpoint at step {start_step}', flush=True)
    self._write_run_directories(class_names, start_step)
    # Steps after the start are trained again: checkpoints of them (a seed saved ahead of the
    # others, a best checkpoint of a later evaluation) must not shadow the new ones.
    for s in self.per_seed:
      if self.is_main:
        s.ckpt.delete_after(start_step)
      best_meta = s.ckpt.read_meta(best=True)
      if best_meta is not None:   # the best/ checkpoint knows the best so far
        s.best.clear()
        s.best.update(best_meta.get('best', {}))
    sharding.barrier('stale checkpoints removed')
    self.start_step = self.step = self.saved_step = start_step
    self.history_start = time.time() - elapsed
    for s in self.per_seed:
      s.log = _MetricsLog(s.run.path, self.is_main, resume_step=start_step,
                          evaluates_again=start_step == self.total_steps)

    self.num_params = sum(x.size for x in jax.tree.leaves(self.state['params'])) // len(self.seeds)
    seeds_note = (f' x {len(self.seeds)} seeds ({self.seeds[0]}..{self.seeds[-1]})'
                  if self.multi else '')
    calls = (f'{settings.steps_per_call} steps per call' if settings.steps_per_call else
             f'up to {self.max_steps_per_call} steps per call (about {AUTO_CALL_SECONDS:.0f} s)')
    where = ('training data on the devices' if self.pipeline == 'device' else
             'training data from the host loader')
    print(f'Micro-DualNet: {self.num_params:,} parameters{seeds_note}; '
          f'{len(self.splits.train)} train / {len(self.eval_loader)} eval clips; '
          f'{self.total_steps} steps of batch {settings.batch_size} on {jax.device_count()} '
          f'device(s), {jax.process_count()} process(es); {where}; {calls}', flush=True)

  def _write_run_directories(self, class_names: Sequence[str], start_step: int) -> None:
    """run.json and config.json of the run and of each seed (process 0); a resume from
    `start_step` under a changed config keeps the config it replaces (rundir.RunDir.write)."""
    config = self.config
    if self.is_main:
      changes = self.run.write(config, kind='seeds' if self.multi else 'run', seeds=self.seeds,
                               package_version=__version__, class_names=class_names,
                               trained_steps=start_step, data_pipeline=self.pipeline)
      if self.multi:
        for s, seed_run in zip(self.seeds, self.seed_runs):
          seed_run.write(_seed_config(config, s), kind='run', seeds=[s],
                         package_version=__version__, class_names=class_names,
                         trained_steps=start_step, data_pipeline=self.pipeline)
      if changes:
        print(f'note: this config differs from the one that trained {self.run.path} up to '
              f'step {start_step} ({"; ".join(changes)}); that one is kept in '
              f'{rundir.CONFIG_HISTORY_FILE}', flush=True)
    sharding.barrier('run directories written')

  # ------------------------------------------------------------------- what the loop does

  def _hooks(self, event: str, step: int) -> None:
    for hook in self.hooks:
      hook(event, step)

  def _meta(self, step: int, seed: _Seed) -> dict[str, Any]:
    epoch, offset = divmod(step, self.steps_per_epoch)
    # Copies: an asynchronous save serialises the meta later, after `best` may have changed.
    return {'step': step, 'epoch': epoch, 'batch_in_epoch': offset, 'best': dict(seed.best),
            'model': self._model_dict, 'seed': seed.seed,
            'elapsed_s': round(time.time() - self.history_start, 1)}

  def _check_finite(self, step: int) -> None:
    nonfinite = np.asarray(jax.device_get(self.state['nonfinite']))
    if nonfinite.any():
      bad = ', '.join(f'seed {s.seed}: {int(n)}' for s, n in zip(self.per_seed, nonfinite) if n)
      raise TrainingError(
          f'training steps up to step {step} had a NaN or inf loss or gradient ({bad}); '
          'those updates were skipped and no checkpoint was written after them. Lower '
          'optim.learning_rate, check the data for NaN keypoints, or set optim.clip_norm.')

  def save(self, step: int, force: bool = False) -> None:
    """Checkpoints of every seed at `step` (once per step)."""
    if self.saved_step == step:
      return
    self._check_finite(step)
    for i, s in enumerate(self.per_seed):
      _checkpoint_io(s.ckpt.save, step, steps.replica(self.state, i, self.mesh),
                     self._meta(step, s), force=force)
    self.saved_step = step
    print(f'Checkpoint at step {step} ' + ('written in the background'
                                           if self.settings.async_checkpoints else 'saved'),
          flush=True)
    self._hooks('checkpoint', step)

  def evaluate(self, step: int) -> list[evaluate.EvalResult]:
    """Scores every seed on the eval split, logs it, keeps the best checkpoint."""
    results = evaluate.evaluate(self.eval_step, self.state, self.eval_loader, self.mesh,
                                self.config.model.num_classes,
                                scorer=self.config.data.spec.scorer, num_seeds=len(self.seeds))
    finite = not np.asarray(jax.device_get(self.state['nonfinite'])).any()
    best_metric = self.settings.best_metric
    for i, (s, result) in enumerate(zip(self.per_seed, results)):
      scalars = result.scalars()
      s.log.write({'step': step, **{f'eval_{k}': v for k, v in scalars.items()}})
      if result.labelled and improves_on_best(scalars, s.best, best_metric):
        s.best.clear()
        s.best.update({**scalars, 'step': step})
        if finite:
          _checkpoint_io(s.ckpt.save_best, step, steps.replica(self.state, i, self.mesh),
                         self._meta(step, s), scalars)
    shown = [k for k in ('top1', 'top5', 'f1_macro') if results[0].labelled]
    print(f'[eval step {step}] ' + ', '.join(
        f'{k} ' + ' / '.join(f'{r.scalars()[k]:.2f}' for r in results) for k in shown)
          + ('' if shown else 'unlabelled split: no metrics'), flush=True)
    return results

  def _close(self) -> None:
    for s in self.per_seed:
      _checkpoint_io(s.ckpt.close)
      s.log.close()

  def _log(self, step: int, values: dict[str, np.ndarray], rate: float) -> None:
    """Logs step `step`'s metrics, values[key]: (S,), one per seed."""
    self._check_finite(step)
    samples_per_step = self.settings.batch_size * len(self.seeds)
    eta = (self.total_steps - step) * samples_per_step / max(rate, 1e-9)
    learning_rate = float(self.schedule(step - 1))
    for i, s in enumerate(self.per_seed):
      s.log.write({'step': step, **{f'train_{k}': float(v[i]) for k, v in values.items()},
                   'train_learning_rate': learning_rate, 'samples_per_s': rate})
    mean = {k: float(v.mean()) for k, v in values.items()}
    print(f'step {step}/{self.total_steps} loss {mean["loss"]:.4f} (ce {mean["ce"]:.4f} '
          f'mac {mean["mac"]:.4f}) acc {mean["accuracy"]:.3f} lr {learning_rate:.2e} | '
          f'{rate:.1f} samples/s | ETA {eta / 60:.1f} min', flush=True)

  # ------------------------------------------------------------------- 3. the loop

  def _call_end(self, step: int) -> int:
    """The step the call from `step` must stop at: the next evaluation, checkpoint, the
    max_steps_per_run stop or the end of training (each acts between calls)."""
    settings = self.settings
    ends = [self.total_steps, (step // settings.checkpoint_every_steps + 1)
            * settings.checkpoint_every_steps]
    if settings.eval_every_steps:
      ends.append((step // settings.eval_every_steps + 1) * settings.eval_every_steps)
    if settings.max_steps_per_run:
      ends.append(self.start_step + settings.max_steps_per_run)
    return min(e for e in ends if e > step)

  def train(self) -> bool:
    """Trains to the step budget, `steps_per_call` steps per jitted call; False when it stopped
    early after saving a checkpoint. Each call is waited for before the next is dispatched, so
    a signal stops the loop at the end of the call that was running when it came."""
    settings = self.settings
    samples_since, t_last = 0, time.time()
    per_call = settings.steps_per_call or 1   # auto: one step until a call has been timed
    self.train_calls = 0
    stop = self.stop
    # A signal during the checks, the restore or the data loading: nothing was trained since the
    # checkpoint of start_step, so the run stops before compiling its first call.
    if sharding.any_process(stop.signal is not None):
      self._close()
      if stop.signal is not None:
        self.stopped_by = signal.Signals(stop.signal).name
      print(f'Stopping early (a signal came before the first step): nothing trained since step '
            f'{self.start_step}; run the same command again to resume.', flush=True)
      return False
    streams = ([s.loader.train_batches(self.start_step) for s in self.per_seed]
               if self.pipeline == 'host' else [])
    try:
      self._hooks('train_start', self.start_step)
      while self.step < self.total_steps:
        first = self.step
        count = min(per_call, self._call_end(first) - first)
        start = time.time()
        if self.pipeline == 'device':
          source = self.source
        else:
          source = steps.stack_host_batches(
              [[next(it) for it in streams] for _ in range(count)], self.mesh,
              settings.batch_size, self.max_steps_per_call)
        self.state, call_metrics = self.train_loop(
            self.state, source, self.seed_array,
            sharding.replicate_host_value(np.int32(count), self.mesh))
        self.train_calls += 1
        self.step = step = first + count
        stop.can_save = True   # a signal from now on stops after this call, with a checkpoint
        jax.block_until_ready(self.state['step'])
        call_seconds = time.time() - start
        samples_since += count * settings.batch_size * len(self.seeds)
        logged = [s for s in range(first + 1, step + 1)
                  if s % settings.log_every_steps == 0 or s == self.total_steps]
        if logged:
          values = {k: np.asarray(v, np.float64)
                    for k, v in jax.device_get(call_metrics).items()}
          now = time.time()
          rate = samples_since / max(now - t_last, 1e-9)
          for s in logged:
            self._log(s, {k: v[s - first - 1] for k, v in values.items()}, rate)
          samples_since, t_last = 0, now
        if not settings.steps_per_call and self.train_calls > 1:   # the first call compiled
          per_step = call_seconds / count
          per_call = int(min(max(AUTO_CALL_SECONDS / per_step, 1), self.max_steps_per_call))
        self._hooks('step', step)
        if settings.eval_every_steps and step % settings.eval_every_steps == 0 \
            and step < self.total_steps:
          self.evaluate(step)
        if step % settings.checkpoint_every_steps == 0 or step == self.total_steps:
          self.save(step)
        # Processes stop at the same step even when the signal reaches only some of them.
        signalled = sharding.any_process(stop.signal is not None)
        if signalled or (step - self.start_step == settings.max_steps_per_run
                         and step < self.total_steps):
          self.save(step, force=True)
          self._close()
          if stop.signal is not None:
            self.stopped_by = signal.Signals(stop.signal).name
          reason = (f'received signal {stop.signal}' if stop.signal is not None else
                    'another process received a signal' if signalled else
                    f'max_steps_per_run={settings.max_steps_per_run} reached')
          print(f'Stopping early ({reason}): saved checkpoint at step {step}; run the same '
                'command again to resume.', flush=True)
          return False
      # The final checkpoint is committed before the final evaluation: a Ctrl-C there loses
      # no training.
      for s in self.per_seed:
        _checkpoint_io(s.ckpt.wait)
    finally:
      for stream in streams:
        stream.close()
    return True

  # ------------------------------------------------------------------- 4. finish

  def finish(self) -> dict[str, Any]:
    """The final evaluation, every seed's outputs and the summary (written to summary.json)."""
    step = self.step
    # The final checkpoint is committed: Ctrl-C interrupts the evaluation (the same command does
    # it again); SIGTERM lets it write its outputs first.
    self.stop.can_save, self.stop.finishing = False, True
    self._check_finite(step)
    self._hooks('final_eval', step)
    results = self.evaluate(step)
    if self.stop.signal is not None:
      # The checkpoint of the last step is saved and the evaluation is done: writing its outputs
      # takes seconds, and stopping here would leave a finished run without them.
      print(f'Received signal {self.stop.signal} during the final evaluation: writing its '
            'outputs, then exiting.', flush=True)
    self._close()
    wall = round(time.time() - self.history_start, 1)
    common = {'num_params': int(self.num_params), 'devices': jax.device_count(),
              'device': device_name(), 'processes': jax.process_count()}
    summaries = []
    for i, (s, result) in enumerate(zip(self.per_seed, results)):
      summaries.append({
          'final': result.scalars(), 'best': s.best, 'step': step, 'seed': s.seed,
          'wall_time_s': wall,
          'param_checksum': tree_checksum(steps.replica(self.state, i, self.mesh)['params']),
          **common})
    if not self.multi:
      summary = summaries[0]
    else:
      stats = evaluate.seed_statistics([x['final'] for x in summaries])
      summary = {'seeds': {str(x['seed']): {k: x[k] for k in ('final', 'best', 'param_checksum')}
                           for x in summaries},
                 'final_mean': stats['mean'], 'final_std': stats['std'], 'step': step,
                 'wall_time_s': wall, 'num_seeds': len(self.seeds), **common}
    if self.is_main:
      for s, result, seed_summary in zip(self.per_seed, results, summaries):
        evaluate.write_outputs(self.config, s.run.path, result, self.splits, seed_summary,
                               verbose=not self.multi,
                               checkpoint={'step': step, 'which': 'latest'})
      if self.multi:
        self.run.write_summary(summary)
        print(_seed_table(summaries, results[0].labelled), flush=True)
      print(f'summary: {self.run.file("summary.json")}', flush=True)
    return summary


def train_and_evaluate(config: RunConfig, workdir: str, *, hooks: Sequence[Hook] = (),
                       exit_on_second_signal: bool = False) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its checkpoints) and evaluates; returns the
  summary written to summary.json, or, when stopped early, {'interrupted_at_step': step} (with
  'signal': 'SIGINT' or 'SIGTERM' when a signal to this process stopped it).

  hooks: callables `hook(event, step)` run on the host, in order, at fixed points of the loop:
    'train_start' once the run directory is written and the state built or restored, before the
    first call of steps (and its compilation); 'step' after the call of steps that reached step
    `step` (every step with steps_per_call=1) ran and was logged, before its checkpoint and the
    signal check; 'checkpoint' after the checkpoints of `step` were written (started, with
    async_checkpoints); 'final_eval' before the final evaluation. For progress reporting,
    profiling windows, or tests that stop a run at an exact point.
  exit_on_second_signal: a second SIGINT/SIGTERM during the loop ends the process at once
    (main.py); False raises KeyboardInterrupt instead (interrupts.StopSignals).
  """
  trainer = Trainer(config, workdir, hooks=hooks, exit_on_second_signal=exit_on_second_signal)
  try:
    done = trainer.check()
    if done is not None:
      return _report_finished(trainer.run, done)
    trainer.start()
    if not trainer.train():
      stopped = {'interrupted_at_step': trainer.step}
      return stopped if trainer.stopped_by is None else {**stopped, 'signal': trainer.stopped_by}
    return trainer.finish()
  except OutputWriteError as error:   # a full or read-only disk mid-run
    raise TrainingError(f'{error}. {_intact_checkpoints(workdir)}. Free disk space or fix the '
                        'directory, then run the same command again to resume.') from error
  finally:
    trainer.close()


def _intact_checkpoints(workdir: str) -> str:
  """Which checkpoint a run stopped by an error resumes from: the newest every seed has."""
  run = RunDir(workdir)
  try:
    runs = run.seed_runs()
  except RunDirError:   # run.json not written yet
    runs = [run]
  common = set.intersection(*(set(r.checkpoint_steps()) for r in runs))
  return (f'The checkpoints are intact (latest: step {max(common)})' if common else
          'No checkpoint was written yet')


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


__all__ = ['HOOK_EVENTS', 'Hook', 'RunSettings', 'Trainer', 'TrainingError',
           'train_and_evaluate']
