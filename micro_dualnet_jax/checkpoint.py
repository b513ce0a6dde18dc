"""Checkpoints: orbax `CheckpointManager` behind one small class.

A checkpoint of one run holds its train state (`steps.TrainState`) as separate orbax items, so
that inference restores the parameters alone, without building an optimizer:

  <step>/params       the model parameters
  <step>/model_state  the model's other variables (the dropout RNG streams)
  <step>/opt_state    the optimizer state
  <step>/loop         step, augmentation RNG key, non-finite counter
  <step>/meta         JSON: step, epoch, data position, best metrics, seed, a sha256 per item

The data position is a function of the step (see pipeline/loader.py), so a restored run reads
exactly the batches it would have read.

Layout of a run directory (`rundir.py`):
  checkpoints/<step>/  the last `keep` checkpoints
  best/<step>/         the single best one by the validation metric
Orbax writes each checkpoint into a temporary folder (`<step>.orbax-checkpoint-tmp`) and renames
it when complete, so a run killed mid-save leaves the previous checkpoints intact; such leftover
folders are deleted when the next training run starts. A checkpoint whose items fail to restore
or to match the checksums saved with them (a corrupted disk, say) is reported and the previous
one is used. A failed write (full disk, lost permissions) raises `CheckpointWriteError`, naming
the last checkpoint that is intact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from micro_dualnet_jax import sharding
from micro_dualnet_jax.errors import CheckpointReadError, CheckpointWriteError
from micro_dualnet_jax.rundir import BEST_DIR, CHECKPOINTS_DIR

CHECKSUMS_KEY = 'checksums'
STATE_ITEMS = ('params', 'model_state', 'opt_state', 'loop')
LOOP_KEYS = ('step', 'rng', 'nonfinite')




def tree_checksum(tree: Any) -> str:
  """sha256 over the bytes of every leaf in tree order: equal iff the trees are bit-identical."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if jax.dtypes.issubdtype(getattr(leaf, 'dtype', None), jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    digest.update(np.ascontiguousarray(sharding.fetch_global(leaf)).tobytes())
  return digest.hexdigest()[:16]


def state_items(state: dict[str, Any]) -> dict[str, Any]:
  """A train state as the checkpoint's items."""
  return {'params': state['params'], 'model_state': state['model_state'],
          'opt_state': state['opt_state'], 'loop': {k: state[k] for k in LOOP_KEYS}}


def items_state(items: dict[str, Any]) -> dict[str, Any]:
  """The inverse of `state_items`."""
  return {'params': items['params'], 'model_state': items['model_state'],
          'opt_state': items['opt_state'], **items['loop']}


class Checkpointer:
  """Saves and restores the train state of one run directory.

  `cleanup=True` (the training run, the only writer) deletes the temporary folders of saves that
  a killed run left behind; readers (evaluation, prediction) leave them alone, since a training
  run may be writing them.
  """

  def __init__(self, workdir: str, *, keep: int = 3, best_metric: str | None = 'top1',
               best_mode: str = 'max', async_save: bool = True, cleanup: bool = False,
               create: bool = True):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=create, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=cleanup)
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR), options=options)
    self.best_metric = best_metric
    self.best = None
    if best_metric:
      best_options = ocp.CheckpointManagerOptions(
          max_to_keep=1, create=create, best_fn=lambda m: m[best_metric], best_mode=best_mode,
          enable_async_checkpointing=async_save, cleanup_tmp_directories=cleanup)
      self.best = ocp.CheckpointManager(
          os.path.join(os.path.abspath(workdir), BEST_DIR), options=best_options)

  @staticmethod
  def _args(state, meta):
    items = state_items(state)
    meta = {**meta, CHECKSUMS_KEY: {name: tree_checksum(item) for name, item in items.items()}}
    return ocp.args.Composite(meta=ocp.args.JsonSave(meta), **{
        name: ocp.args.StandardSave(item) for name, item in items.items()})

  def _write(self, manager: ocp.CheckpointManager, step: int | None, write) -> Any:
    """Runs `write`; its error (or an earlier asynchronous save's) -> CheckpointWriteError."""
    try:
      return write()
    except Exception as error:  # pylint: disable=broad-except
      committed = [int(p.name) for p in manager.directory.iterdir()
                   if p.name.isdigit()] if manager.directory.is_dir() else []
      where = f'the checkpoint of step {step}' if step is not None else 'a checkpoint'
      intact = (f'the checkpoints already there are intact (latest: step {max(committed)})'
                if committed else 'no earlier checkpoint exists')
      raise CheckpointWriteError(
          f'writing {where} to {manager.directory} failed ({type(error).__name__}: {error}); '
          f'{intact}. Free disk space or fix the directory, then run the same command again to '
          'resume.') from error

  @staticmethod
  def _replace(manager: ocp.CheckpointManager, step: int) -> None:
    """A step trained again (a run resumed from an older checkpoint than some of its seeds,
    say) replaces the checkpoint of the same step instead of failing on it."""
    manager.wait_until_finished()
    if step in manager.all_steps():
      manager.delete(step)

  def save(self, step: int, state: Any, meta: dict[str, Any], *, force: bool = False) -> None:
    """Saves `state` at `step` (asynchronously where enabled)."""
    def write():
      self._replace(self.latest, step)
      if not self.latest.save(step, args=self._args(state, meta), force=force):
        raise RuntimeError(f'orbax did not save step {step} (it holds steps '
                           f'{self.latest.all_steps()})')
    self._write(self.latest, step, write)

  def delete_after(self, step: int) -> list[int]:
    """Deletes the checkpoints (latest and best) newer than `step`: a run restarted from `step`
    trains those steps again, and must not leave a newer one to shadow what it saves."""
    deleted = []
    for manager in (self.latest, self.best):
      if manager is None:
        continue
      manager.wait_until_finished()
      for old in manager.all_steps():
        if old > step:
          manager.delete(old)
          deleted.append(old)
    return deleted

  def save_best(self, step: int, state: Any, meta: dict[str, Any],
                metrics: dict[str, float]) -> None:
    """Puts `state` in the best-checkpoint slot (the caller decides that it is the best)."""
    if self.best is not None and self.best_metric in metrics:
      def write():
        self._replace(self.best, step)
        self.best.save(step, args=self._args(state, meta),
                       metrics={self.best_metric: float(metrics[self.best_metric])}, force=True)
      self._write(self.best, step, write)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def steps(self, *, best: bool = False) -> list[int]:
    manager = self.best if best else self.latest
    return sorted(manager.all_steps()) if manager is not None else []

  def restore(self, abstract: dict[str, Any], *, best: bool = False,
              steps: Sequence[int] | None = None) -> tuple[int, dict[str, Any], dict] | None:
    """Restores the newest readable checkpoint -> (step, items, meta), or None if there is none.

    abstract: ShapeDtypeStructs (`abstract_like`) of the items to read, a subset of
      STATE_ITEMS (e.g. {'params': ...} for inference); only those are read and checked.
    steps: the candidate steps (default: every checkpoint there), newest first.

    A checkpoint that fails to restore, or whose items do not match the checksums saved with
    them, is logged with its error and the previous candidate is tried. All processes fall back
    together.
    """
    manager = self.best if best else self.latest
    if manager is None:
      return None
    candidates = sorted(manager.all_steps() if steps is None else steps, reverse=True)
    failures = []
    for step in candidates:
      error = None
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore(),
            **{name: ocp.args.StandardRestore(item) for name, item in abstract.items()}))
        saved = restored['meta'].get(CHECKSUMS_KEY)
        if saved is None:
          error = ValueError('no checksums saved with it (not a checkpoint of this format)')
        else:
          for name in abstract:
            if saved.get(name) != (actual := tree_checksum(restored[name])):
              error = ValueError(f'{name} checksum {actual} differs from the {saved.get(name)} '
                                 'saved with it')
              break
      except Exception as restore_error:  # pylint: disable=broad-except
        error = restore_error
      if sharding.any_process(error is not None):
        reason = (f'{type(error).__name__}: {error}' if error is not None else
                  'unreadable on another process')
        logging.warning('checkpoint %s/%d could not be restored (%s); falling back to the '
                        'previous one', manager.directory, step, reason)
        short = (reason.strip().splitlines() or [''])[0][:300]
        failures.append((f'{manager.directory}/{step}', short))
        print(f'WARNING: checkpoint at step {step} in {manager.directory} is unreadable '
              f'({short}); falling back to the previous one', flush=True)
        continue
      return step, {name: restored[name] for name in abstract}, dict(restored['meta'])
    if candidates:
      raise CheckpointReadError(
          f'no checkpoint in {manager.directory} could be restored: '
          + '; '.join(f'{path} ({why})' for path, why in failures), failures)
    return None

  def read_meta(self, step: int | None = None, *, best: bool = False) -> dict[str, Any] | None:
    """The JSON record of checkpoint `step` (default: the newest) without restoring arrays."""
    manager = self.best if best else self.latest
    if manager is None:
      return None
    step = manager.latest_step() if step is None else step
    if step is None:
      return None
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored['meta'])

  def wait(self) -> None:
    """Blocks until asynchronous saves are committed (CheckpointWriteError if one failed)."""
    for manager in (self.latest, self.best):
      if manager is not None:
        self._write(manager, None, manager.wait_until_finished)

  def close(self) -> None:
    self.wait()
    self.latest.close()
    if self.best is not None:
      self.best.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, for restoring into the same layout."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      tree)
