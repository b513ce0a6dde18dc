"""Checkpoints: orbax `CheckpointManager` behind one small class (DESIGN.md Section 2).

A checkpoint holds the whole train state pytree (parameters, other model state, optimizer state,
step, RNG key, non-finite counter) and a JSON record of where the run was (step, epoch, data
position, model config). The data position is a function of the step (see data/loader.py), so a
restored run reads exactly the batches it would have read.

Layout of the work directory:
  checkpoints/<step>/  the last `keep` checkpoints
  best/<step>/         the single best one by the validation metric
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact. A latest checkpoint that still fails to restore
(a corrupted disk, say) is reported and the previous one is used.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Saves and restores train states under `workdir`."""

  def __init__(self, workdir: str, *, keep: int = 3, best_metric: str | None = 'top1',
               best_mode: str = 'max', async_save: bool = True):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)
    self.best_metric = best_metric
    self.best = None
    if best_metric:
      best_options = ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode,
          enable_async_checkpointing=async_save)
      self.best = ocp.CheckpointManager(
          os.path.join(os.path.abspath(workdir), 'best'), options=best_options)

  @staticmethod
  def _args(state, meta):
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  def save(self, step: int, state: Any, meta: dict[str, Any], *, force: bool = False) -> bool:
    """Saves `state` at `step` (asynchronously where enabled)."""
    return self.latest.save(step, args=self._args(state, meta), force=force)

  def save_best(self, step: int, state: Any, meta: dict[str, Any],
                metrics: dict[str, float]) -> None:
    """Offers `state` to the best-checkpoint slot; kept only if it beats the one there."""
    if self.best is not None and self.best_metric in metrics:
      self.best.save(step, args=self._args(state, meta),
                     metrics={self.best_metric: float(metrics[self.best_metric])}, force=True)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore(self, abstract_state: Any, *, best: bool = False
              ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest readable checkpoint -> (step, state, meta), or None if there is none.

    A checkpoint that fails to restore is logged with its error and the previous one is tried.
    """
    manager = self.best if best else self.latest
    if manager is None:
      return None
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as error:  # pylint: disable=broad-except
        logging.warning('checkpoint %s/%d could not be restored (%s: %s); falling back to the '
                        'previous one', manager.directory, step, type(error).__name__, error)
        print(f'WARNING: checkpoint at step {step} in {manager.directory} is unreadable '
              f'({type(error).__name__}); falling back to the previous one', flush=True)
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
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

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
