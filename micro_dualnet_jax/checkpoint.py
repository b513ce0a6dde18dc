"""Checkpoints: orbax `CheckpointManager` behind one small class (DESIGN.md Section 2).

A checkpoint holds the whole train state pytree (parameters, other model state, optimizer state,
step, RNG key, non-finite counter) and a JSON record of where the run was (step, epoch, data
position, model config). The data position is a function of the step (see data/loader.py), so a
restored run reads exactly the batches it would have read.

Layout of the work directory:
  checkpoints/<step>/  the last `keep` checkpoints
  best/<step>/         the single best one by the validation metric
Orbax writes each checkpoint into a temporary folder (`<step>.orbax-checkpoint-tmp`) and renames
it when complete, so a run killed mid-save leaves the previous checkpoints intact; such leftover
folders are deleted when the next training run starts. The JSON record carries a sha256 of the
whole state: a latest checkpoint that fails to restore or to match it (a corrupted disk, say) is
reported and the previous one is used. A failed write (full disk, lost permissions) raises
`CheckpointWriteError`, naming the last checkpoint that is intact.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from micro_dualnet_jax import sharding

CHECKSUM_KEY = 'state_checksum'


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (full disk, unwritable directory, ...)."""


def tree_checksum(tree: Any) -> str:
  """sha256 over the bytes of every leaf in tree order: equal iff the trees are bit-identical."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    digest.update(np.ascontiguousarray(sharding.fetch_global(leaf)).tobytes())
  return digest.hexdigest()[:16]


class Checkpointer:
  """Saves and restores train states under `workdir`.

  `cleanup=True` (the training run, the only writer) deletes the temporary folders of saves that
  a killed run left behind; readers (evaluation, prediction) leave them alone, since a training
  run may be writing them.
  """

  def __init__(self, workdir: str, *, keep: int = 3, best_metric: str | None = 'top1',
               best_mode: str = 'max', async_save: bool = True, cleanup: bool = False):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=cleanup)
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)
    self.best_metric = best_metric
    self.best = None
    if best_metric:
      best_options = ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode,
          enable_async_checkpointing=async_save, cleanup_tmp_directories=cleanup)
      self.best = ocp.CheckpointManager(
          os.path.join(os.path.abspath(workdir), 'best'), options=best_options)

  @staticmethod
  def _args(state, meta):
    meta = {**meta, CHECKSUM_KEY: tree_checksum(state)}
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

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

  def save(self, step: int, state: Any, meta: dict[str, Any], *, force: bool = False) -> bool:
    """Saves `state` at `step` (asynchronously where enabled)."""
    return self._write(self.latest, step, lambda: self.latest.save(
        step, args=self._args(state, meta), force=force))

  def save_best(self, step: int, state: Any, meta: dict[str, Any],
                metrics: dict[str, float]) -> None:
    """Offers `state` to the best-checkpoint slot; kept only if it beats the one there."""
    if self.best is not None and self.best_metric in metrics:
      self._write(self.best, step, lambda: self.best.save(
          step, args=self._args(state, meta),
          metrics={self.best_metric: float(metrics[self.best_metric])}, force=True))

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore(self, abstract_state: Any, *, best: bool = False
              ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest readable checkpoint -> (step, state, meta), or None if there is none.

    A checkpoint that fails to restore, or whose state does not match the checksum saved with
    it, is logged with its error and the previous one is tried. All processes fall back together.
    """
    manager = self.best if best else self.latest
    if manager is None:
      return None
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
      error = None
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        saved = restored['meta'].get(CHECKSUM_KEY)
        if saved is not None and saved != (actual := tree_checksum(restored['state'])):
          error = ValueError(f'state checksum {actual} differs from the {saved} saved with it')
      except Exception as restore_error:  # pylint: disable=broad-except
        error = restore_error
      if sharding.any_process(error is not None):
        reason = (f'{type(error).__name__}: {error}' if error is not None else
                  'unreadable on another process')
        logging.warning('checkpoint %s/%d could not be restored (%s); falling back to the '
                        'previous one', manager.directory, step, reason)
        print(f'WARNING: checkpoint at step {step} in {manager.directory} is unreadable '
              f'({reason.splitlines()[0][:300]}); falling back to the previous one', flush=True)
        continue
      return step, restored['state'], dict(restored['meta'])
    if steps:
      raise RuntimeError(f'no checkpoint in {manager.directory} could be restored '
                         f'(tried steps {steps}); see the warnings above')
    return None

  def read_meta(self, step: int | None = None) -> dict[str, Any] | None:
    """The JSON record of checkpoint `step` (default: latest) without restoring arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self.latest.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
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


def abstract_like(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `state`, for restoring into the same layout."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      state)
