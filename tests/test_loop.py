"""The training loop's wiring, in process and without training: which data each seed reads, where
a resumed run picks the data up, which evaluation the best checkpoint holds.

`train.train_and_evaluate` runs for real (checks, run directories, loaders, the training split
packed on the devices, orbax checkpoints, resume) with four stand-ins: the data are hand-made
records, the train state is a few numbers per seed instead of a model (nothing to compile, little
to checkpoint), the train loop records the source indices of every step's batch instead of
training (the host loader's rows, or the clips the device path draws for (seed, step)), and the
evaluation returns scripted scores (of the final outputs only summary.json is written). The
end-to-end equalities (bit-identical parameters after a resume, a seed of a multi-seed run equal
to its run alone) are the slow tests of test_train.py, test_seeds.py and test_reliability.py.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from support import smoke_config
from micro_dualnet_jax import evaluate, steps, train
from micro_dualnet_jax.data.synthetic import class_names
from micro_dualnet_jax.pipeline import datasets, device_data
from micro_dualnet_jax.rundir import RunDir
from micro_dualnet_jax.skeleton import get_layout

NUM_TRAIN, BATCH = 40, 8          # 5 steps per epoch: 8 steps cross an epoch boundary


def _records(n: int, offset: int) -> list[dict]:
  layout = get_layout('openpose22')
  return [{'keypoints': np.full((4, layout.num_joints, 2), offset + i, np.float32),
           'confidence': np.ones((4, layout.num_joints), np.float32), 'num_frames': 4,
           'label': (offset + i) % 15, 'clip_id': f'clip{offset + i}'} for i in range(n)]


class _Scores:
  """An evaluation result as the loop reads it."""
  labelled = True

  def __init__(self, top1: float):
    self.top1 = top1

  def scalars(self) -> dict[str, float]:
    return {'top1': self.top1, 'top5': 100.0, 'f1_macro': self.top1 / 100}


class LoopProbe:
  """Replaces the data, the train step and the evaluation of `train.train_and_evaluate`.

  batches: per train-step call, the (S, B) source indices the step got (S seeds).
  scores: per seed, the top-1 each evaluation returns in turn (default 50.0 each time).
  """

  def __init__(self, monkeypatch, scores: list[list[float]] | None = None, on_step=None):
    self.batches: list[np.ndarray] = []
    self.scores = scores
    self.evaluations = 0
    self.on_step = on_step or (lambda state: state)
    splits = datasets.Splits(train=_records(NUM_TRAIN, 0), eval=_records(8, 1000),
                             class_names=class_names())
    monkeypatch.setattr(datasets, 'load_splits', lambda config: splits)
    monkeypatch.setattr(steps, 'create_train_states', self._create_train_states)
    monkeypatch.setattr(steps, 'make_train_loop', self._make_train_loop)
    monkeypatch.setattr(evaluate, 'evaluate', self._evaluate)
    monkeypatch.setattr(evaluate, 'write_outputs', self._write_outputs)

  @staticmethod
  def _create_train_states(config, tx, mesh, seeds):
    one = lambda seed: {
        'params': {'w': jnp.full((2,), float(seed))}, 'model_state': {'n': jnp.zeros(())},
        'opt_state': {'m': jnp.zeros((2,))}, 'step': jnp.zeros((), jnp.int32),
        'rng': jnp.zeros((2,), jnp.uint32), 'nonfinite': jnp.zeros((), jnp.int32)}
    return None, steps.replicate_stacked([one(s) for s in seeds], mesh)

  def _make_train_loop(self, graphdef, tx, config, mesh, *, max_steps, data_on_device):
    batch_size = config.run.batch_size

    def record(state, source, seeds, count):
      seeds = np.asarray(seeds)
      for i in range(int(np.asarray(count))):
        if data_on_device:   # the clips the device path draws for (seed, step)
          indices = np.stack([np.asarray(device_data.clip_indices(
              int(seed), int(at), source.num_clips, batch_size))
                              for seed, at in zip(seeds, np.asarray(state['step']))])
        else:                # the host loader's rows of step i of the call
          indices = np.asarray(source['index'])[i]
        self.batches.append(indices)
        state = self.on_step({**state, 'step': state['step'] + 1})
      zeros = jnp.zeros((max_steps, len(seeds)))
      return state, {k: zeros for k in ('loss', 'ce', 'mac', 'accuracy', 'grad_norm',
                                        'router_entropy')}
    return record

  def _evaluate(self, eval_step, state, loader, mesh, num_classes, *, scorer='classification',
                num_seeds=None):
    i, self.evaluations = self.evaluations, self.evaluations + 1
    return [_Scores(self.scores[s][i] if self.scores else 50.0) for s in range(num_seeds)]

  @staticmethod
  def _write_outputs(config, folder, result, splits, summary=None, *, checkpoint=None,
                     verbose=True):
    """Of the final outputs, only summary.json (what tells a finished run)."""
    if summary is not None:
      RunDir(folder).write_summary(summary)

  def order(self) -> np.ndarray:
    """(steps, S, B) source indices read so far."""
    return np.stack(self.batches)


def _config(**overrides):
  return smoke_config('unused', **{'batch_size': BATCH, 'checkpoint_every_steps': 100,
                                   **overrides})


PIPELINES = pytest.mark.parametrize('pipeline', ['host', 'device'])


@PIPELINES
def test_each_seed_of_a_multi_seed_run_reads_the_data_order_of_its_run_alone(monkeypatch,
                                                                           tmp_path, pipeline):
  together = LoopProbe(monkeypatch)
  train.train_and_evaluate(_config(num_seeds=2, seed=3, **{'data.pipeline': pipeline}),
                           str(tmp_path / 'seeds'))
  alone = LoopProbe(monkeypatch)
  train.train_and_evaluate(_config(seed=4, **{'data.pipeline': pipeline}),
                           str(tmp_path / 'seed4'))
  assert together.order().shape == (8, 2, BATCH) and alone.order().shape == (8, 1, BATCH)
  np.testing.assert_array_equal(together.order()[:, 1], alone.order()[:, 0])
  # Seeds 3 and 4 read the data in different orders, each a permutation per epoch.
  assert not np.array_equal(together.order()[:, 0], together.order()[:, 1])
  for seed in (0, 1):
    assert sorted(together.order()[:5, seed].ravel()) == list(range(NUM_TRAIN))


@PIPELINES
def test_a_resumed_run_reads_the_batches_the_uninterrupted_run_read(monkeypatch, tmp_path,
                                                                    pipeline):
  uninterrupted = LoopProbe(monkeypatch)
  train.train_and_evaluate(_config(**{'data.pipeline': pipeline}), str(tmp_path / 'full'))
  first = LoopProbe(monkeypatch)
  assert train.train_and_evaluate(_config(max_steps_per_run=3, **{'data.pipeline': pipeline}),
                                  str(tmp_path / 'split')) == {'interrupted_at_step': 3}
  resumed = LoopProbe(monkeypatch)
  summary = train.train_and_evaluate(_config(**{'data.pipeline': pipeline}),
                                     str(tmp_path / 'split'))
  assert summary['step'] == 8
  assert len(first.batches) == 3 and len(resumed.batches) == 5     # steps 4..8 after resuming
  np.testing.assert_array_equal(np.concatenate([first.order(), resumed.order()]),
                                uninterrupted.order())
  # Only the value that changed is recorded, against the 3 steps trained before it changed.
  assert [(r['trained_steps'], r['changes']) for r in
          RunDir(str(tmp_path / 'split')).config_history()] == [(3, ['max_steps_per_run: 3 -> 0'])]


def test_the_best_checkpoint_holds_the_first_of_the_highest_evaluations(monkeypatch, tmp_path):
  """Evaluations after every step (the last one is the final evaluation), two seeds with their
  own scores: each keeps its own best, ties keep the earlier step."""
  scores = [[50, 70, 60, 70, 80, 40, 80, 10],     # seed 0: best 80 at step 5 (tied at 7)
            [20, 10, 30, 30, 25, 90, 0, 95]]      # seed 1: best 95 at the final step 8
  probe = LoopProbe(monkeypatch, scores)
  summary = train.train_and_evaluate(_config(num_seeds=2, seed=0, eval_every_steps=1),
                                     str(tmp_path))
  assert probe.evaluations == 8
  for seed, (step, top1) in enumerate([(5, 80), (8, 95)]):
    folder = tmp_path / f'seed_{seed}'
    assert sorted(p for p in os.listdir(folder / 'best') if p.isdigit()) == [str(step)]
    assert summary['seeds'][str(seed)]['best']['step'] == step
    assert summary['seeds'][str(seed)]['best']['top1'] == top1
    logged = [json.loads(line) for line in (folder / 'metrics.jsonl').read_text().splitlines()]
    assert [r['eval_top1'] for r in logged if 'eval_top1' in r] == scores[seed]


@pytest.mark.parametrize('sequence, chosen', [
    ([50, 70, 60], [0, 1]),
    ([50, 50, 40], [0]),              # a tie keeps the first
    ([0, 0, 0], [0]),                 # the first evaluation is the best so far, even at 0
    ([10, 20, 30], [0, 1, 2]),
    ([30, 20, 10, 31], [0, 3]),
])
def test_which_evaluations_become_the_best(sequence, chosen):
  best, picked = {}, []
  for i, top1 in enumerate(sequence):
    if train.improves_on_best({'top1': top1}, best, 'top1'):
      best, picked = {'top1': top1, 'step': i}, picked + [i]
  assert picked == chosen


def test_a_raised_step_budget_trains_on_from_the_last_checkpoint(monkeypatch, tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  LoopProbe(monkeypatch)
  train.train_and_evaluate(_config(), workdir)
  again = LoopProbe(monkeypatch)
  assert train.train_and_evaluate(_config(), workdir)['step'] == 8
  assert not again.batches and 'already holds this run, finished at step 8' in \
      capsys.readouterr().out
  more = LoopProbe(monkeypatch)
  assert train.train_and_evaluate(_config(num_train_steps=10), workdir)['step'] == 10
  out = capsys.readouterr().out
  assert 'Resuming from checkpoint at step 8' in out
  assert 'trained ' + workdir + ' up to step 8 (num_train_steps: 8 -> 10)' in out
  # config.json describes the run now; the config of steps 1-8 is kept beside it.
  (replaced,) = RunDir(workdir).config_history()
  assert replaced['trained_steps'] == 8 and replaced['changes'] == ['num_train_steps: 8 -> 10']
  assert replaced['config']['num_train_steps'] == 8
  assert RunDir(workdir).config().run.num_train_steps == 10
  reference = LoopProbe(monkeypatch)
  train.train_and_evaluate(_config(num_train_steps=10), str(tmp_path / 'ten'))
  np.testing.assert_array_equal(more.order(), reference.order()[8:])     # steps 9 and 10
  logged = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in logged if 'train_loss' in r] == [2, 4, 6, 8, 10]


def test_a_non_finite_step_stops_the_run_before_its_checkpoint(monkeypatch, tmp_path):
  """Seed 1's step 3 has a NaN loss (the step counts it in 'nonfinite'): the check at the next
  log point (step 4) stops the run by name, before step 4's checkpoint."""
  def nan_at_step_3(state):
    bad = (state['step'] == 3) & (jnp.arange(len(state['step'])) == 1)
    return {**state, 'nonfinite': state['nonfinite'] + bad.astype(jnp.int32)}

  probe = LoopProbe(monkeypatch, on_step=nan_at_step_3)
  with pytest.raises(train.TrainingError, match=r'steps up to step 4 had a NaN or inf loss or '
                                                r'gradient \(seed 1: 1\)'):
    train.train_and_evaluate(_config(num_seeds=2, checkpoint_every_steps=2), str(tmp_path))
  assert len(probe.batches) == 4
  for seed in (0, 1):
    assert sorted(os.listdir(tmp_path / f'seed_{seed}' / 'checkpoints')) == ['2']
