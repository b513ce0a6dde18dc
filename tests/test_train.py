"""Training application: smoke run, sharded = single-device step, resume, SIGTERM, bad runs."""

import json
import os
import pathlib
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from support import smoke_config
from micro_dualnet_jax import evaluate, sharding, steps, train
from micro_dualnet_jax.rundir import RunDirError
from micro_dualnet_jax.pipeline import augment, datasets
from micro_dualnet_jax.data.clip import DataFormatError
from micro_dualnet_jax.skeleton import get_layout

ROOT = pathlib.Path(__file__).resolve().parents[1]


# Fast tier: test_lifecycle.py::test_a_finished_run_holds_every_output (the same files, of a run
# made by main.py) and ::test_eval_reads_the_runs_own_config (--mode=eval reproduces the final
# metrics); this one adds test-time views written elsewhere and the flip refusal.
@pytest.mark.slow
def test_smoke_run_writes_every_output(data_dir, tmp_path):
  summary = train.train_and_evaluate(smoke_config(data_dir), str(tmp_path))
  assert summary['step'] == 8
  assert 0.0 <= summary['final']['top1'] <= 100.0
  for name in ('config.json', 'metrics.jsonl', 'summary.json', 'predictions.csv',
               'eval_metrics.json', 'training_curves.png', 'confusion_matrix.png',
               'routing_weights.png'):
    assert (tmp_path / name).stat().st_size > 0, name
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'train_loss' in l] == [2, 4, 6, 8]
  assert all(np.isfinite(l['train_loss']) for l in lines if 'train_loss' in l)
  predictions = (tmp_path / 'predictions.csv').read_text().splitlines()
  assert len(predictions) == 1 + 24      # header + every test clip exactly once
  with np.load(tmp_path / 'eval_outputs.npz') as outputs:   # what --mode=ensemble reads
    assert outputs['logits'].shape == (24, 15)
    assert sorted(outputs['clip_ids']) == sorted(l.split(',')[0] for l in predictions[1:])
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4', '8']
  try:   # TensorBoard event files only when the optional writer package is installed
    import tensorboardX  # pylint: disable=g-import-not-at-top,unused-import
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  except ImportError:
    assert not (tmp_path / 'tensorboard').exists()
  # --mode=eval on the work directory reproduces the final metrics.
  evaluated = evaluate.evaluate_workdir(str(tmp_path), checkpoint='latest')
  assert evaluated['step'] == 8
  assert evaluated['top1'] == pytest.approx(summary['final']['top1'])
  # Test-time views written elsewhere leave the run's own outputs as they were.
  before = (tmp_path / 'eval_outputs.npz').read_bytes()
  config = smoke_config(data_dir, **{'test_time.num_clips': 2, 'test_time.flip': True,
                                     'augment.flip_prob': 0.5})
  # Mirrored views are refused: the run (its config.json) trained with flip_prob 0, whatever
  # the command line's augment section says.
  with pytest.raises(ValueError, match='flip_prob'):
    evaluate.evaluate_workdir(str(tmp_path), config, checkpoint='latest',
                              output_dir=str(tmp_path / 'x'))
  assert not (tmp_path / 'x').exists()
  config = config.replace(**{'test_time.flip': False})
  evaluate.evaluate_workdir(str(tmp_path), config, checkpoint='latest',
                            output_dir=str(tmp_path / 'tta'))
  assert (tmp_path / 'eval_outputs.npz').read_bytes() == before
  with np.load(tmp_path / 'tta' / 'eval_outputs.npz') as outputs:
    assert (int(outputs['test_time_clips']), bool(outputs['test_time_flip'])) == (2, False)
    assert outputs['logits'].shape == (24, 15)
  assert (tmp_path / 'tta' / 'predictions.csv').exists()


@pytest.mark.slow
def test_test_time_views_average_and_are_mirror_invariant(data_dir):
  config = smoke_config(data_dir, **{'test_time.num_clips': 2, 'test_time.flip': True,
                                     'augment.flip_prob': 0.5})
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, state = steps.create_train_state(config.model, tx, mesh, config.run.seed)
  layout = get_layout(config.model.layout)
  splits = datasets.load_splits(config)
  batch = next(datasets.make_loader(config, splits.eval, 16, 'eval').eval_batches())
  batch = {k: batch[k] for k in ('keypoints', 'confidence', 'num_frames')}
  out = steps.make_eval_step(graphdef, config, mesh)(state, batch)
  # By hand: the mean of the four views' logits; routing from the two unmirrored views.
  model = nnx.merge(graphdef, state['params'], state['model_state'])
  aug = config.augment
  views = {}
  for c in (0, 1):
    for m in (False, True):
      inputs = augment.eval_inputs(batch, layout, aug, phase=(2 * c + 1, 4), mirrored=m)
      views[c, m] = model(inputs['keypoints'], inputs['frame_mask'], deterministic=True)
  np.testing.assert_allclose(out['logits'], sum(v[0] for v in views.values()) / 4, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(
      out['routing_weights'],
      (views[0, False][1]['routing_weights'] + views[1, False][1]['routing_weights']) / 2,
      rtol=1e-5, atol=1e-6)
  # The views are closed under mirroring, so a mirrored clip scores the same.
  flipped = dict(batch)
  flipped['keypoints'], flipped['confidence'] = augment.flip(
      jnp.asarray(batch['keypoints']), jnp.asarray(batch['confidence']), layout)
  np.testing.assert_allclose(steps.make_eval_step(graphdef, config, mesh)(state, flipped)['logits'],
                             out['logits'], rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='num_clips'):
    config.replace(**{'test_time.num_clips': 0})


def _train_steps(config, devices, batch_np, num_steps=2):
  """The whole train state after `num_steps` steps on `batch_np`, on a mesh over `devices`."""
  mesh = sharding.make_mesh(devices)
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, state = steps.create_train_state(config.model, tx, mesh, config.run.seed)
  step = steps.make_train_step(graphdef, tx, config, mesh)
  batch = sharding.to_global(batch_np, sharding.batch_sharding(mesh), config.run.batch_size)
  metrics = None
  for _ in range(num_steps):
    state, metrics = step(state, batch)
  return jax.device_get(state), jax.device_get(metrics)


def _assert_states_close(got, want, init):
  """The optimizer state agrees and the parameters moved from `init` the same way.

  After two steps Adam's moments are running means of the gradients and their squares, so a
  wrong gradient (a missing cross-device reduction, a dropped micro-batch) shows there at full
  size. The parameters get a looser absolute tolerance: the attention key bias has a gradient
  of exactly 0 in exact arithmetic (softmax ignores a shift shared by all keys), and Adam turns
  its rounding noise (~1e-9) into updates of up to ~1e-4.
  """
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(want['params']),
                                                         jax.tree.leaves(init['params'])))
  assert moved > 1e-3, f'the parameters did not move (max change {moved})'
  for a, b in zip(jax.tree.leaves(got['opt_state']), jax.tree.leaves(want['opt_state'])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8, err_msg='optimizer state')
  for a, b in zip(jax.tree.leaves(got['params']), jax.tree.leaves(want['params'])):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-4, err_msg='parameters')


def _first_batch(config):
  splits = datasets.load_splits(config)
  return next(datasets.make_loader(config, splits.train, config.run.batch_size,
                                   'train').train_batches())


@pytest.mark.slow
def test_step_on_8_devices_equals_one_device(data_dir):
  assert jax.device_count() == 8, 'tests/conftest.py sets 8 host devices'
  # warm-up of one step: the learning rate is 0 at step 0 and the peak at step 1.
  config = smoke_config(data_dir, **{'optim.warmup_steps': 1})
  batch = _first_batch(config)
  init, _ = _train_steps(config, jax.devices()[:1], batch, num_steps=0)
  state8, metrics8 = _train_steps(config, jax.devices(), batch)
  state1, metrics1 = _train_steps(config, jax.devices()[:1], batch)
  _assert_states_close(state8, state1, init)
  np.testing.assert_allclose(metrics8['loss'], metrics1['loss'], rtol=1e-5)
  np.testing.assert_allclose(metrics8['grad_norm'], metrics1['grad_norm'], rtol=1e-5)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(data_dir, tmp_path):
  full = train.train_and_evaluate(smoke_config(data_dir), str(tmp_path / 'full'))
  first = train.train_and_evaluate(smoke_config(data_dir, max_steps_per_run=3),
                                   str(tmp_path / 'split'))
  assert first == {'interrupted_at_step': 3}
  resumed = train.train_and_evaluate(smoke_config(data_dir), str(tmp_path / 'split'))
  assert resumed['param_checksum'] == full['param_checksum']
  assert resumed['final'] == full['final']


# Fast tier: test_lifecycle.py::test_a_refused_command_leaves_the_work_directory_as_it_was
# (the same refusal, through main.py) and ::test_eval_reads_the_runs_own_config (a --config with
# another model is ignored by --mode=eval).
@pytest.mark.slow
def test_refuses_workdir_of_a_different_model(data_dir, tmp_path):
  train.train_and_evaluate(smoke_config(data_dir, max_steps_per_run=1), str(tmp_path))
  with pytest.raises(RunDirError, match=r'model.width: 16 in the work directory, 24 now'):
    train.train_and_evaluate(smoke_config(data_dir, **{'model.width': 24}), str(tmp_path))
  # Evaluation reads the run's own config.json: a --config with another model is noted and
  # ignored, also for a setting that keeps every parameter shape.
  evaluated = evaluate.evaluate_workdir(
      str(tmp_path), smoke_config(data_dir, **{'model.velocity_scale': 1.0}), checkpoint='latest',
      output_dir=str(tmp_path / 'other'))
  plain = evaluate.evaluate_workdir(str(tmp_path), checkpoint='latest',
                                    output_dir=str(tmp_path / 'plain'))
  assert evaluated == plain


@pytest.mark.slow   # fast: test_loop.py::test_a_non_finite_step_stops_the_run_before_its_checkpoint
def test_nan_loss_stops_with_a_message_and_no_nan_checkpoint(data_dir, tmp_path):
  config = smoke_config(data_dir, **{'optim.learning_rate': 1e30, 'optim.clip_norm': 0.0})
  with pytest.raises(train.TrainingError, match='NaN or inf'):
    train.train_and_evaluate(config, str(tmp_path))
  checkpoints = tmp_path / 'checkpoints'
  saved = sorted(os.listdir(checkpoints)) if checkpoints.exists() else []
  assert all(int(s) < 2 for s in saved if s.isdigit())


@pytest.mark.parametrize('key, value, message', [
    ('model.width', -3, 'invalid model config: width must be a positive integer, got -3'),
    ('optim.learning_rate', -1.0,
     'invalid optim config: learning_rate must be a number > 0, got -1.0'),
    ('test_time.num_clips', 0, 'invalid test_time config: num_clips must be a positive integer, '
                               'got 0'),
    ('batch_size', 0, 'invalid run config: batch_size must be a positive integer, got 0'),
])
def test_each_bad_config_value_is_named(key, value, message):
  """What main.py prints for each (test_lifecycle.py runs some of them through main.py): the
  typed configuration refuses the value when it is built."""
  with pytest.raises(ValueError, match=re.escape(message)):
    smoke_config('unused', **{key: value})


def test_unwritable_workdir_is_refused(data_dir, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  with pytest.raises(train.TrainingError, match='not writable'):
    train.train_and_evaluate(smoke_config(data_dir), str(blocker / 'run'))


def test_config_that_does_not_fit_the_data(data_dir, tmp_path):
  with pytest.raises(DataFormatError, match=r'expects \(T, 17, 2\)'):
    train.train_and_evaluate(smoke_config(data_dir, **{'model.layout': 'coco17'}),
                             str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='15 classes but model.num_classes is 20'):
    train.train_and_evaluate(smoke_config(data_dir, **{'model.num_classes': 20}),
                             str(tmp_path / 'b'))


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint(data_dir, tmp_path):
  """SIGTERM after step 3 (sent by a hook at that exact point): the loop finishes the step, saves
  a checkpoint at step 3, returns normally, and the same command resumes from it."""
  def terminate_after_step_3(event, step):
    if (event, step) == ('step', 3):
      os.kill(os.getpid(), signal.SIGTERM)

  config = smoke_config(data_dir, **{'num_train_steps': 400, 'checkpoint_every_steps': 1000,
                                     'log_every_steps': 1})
  previous = signal.getsignal(signal.SIGTERM)
  result = train.train_and_evaluate(config, str(tmp_path), hooks=(terminate_after_step_3,))
  assert result == {'interrupted_at_step': 3, 'signal': 'SIGTERM'}
  assert signal.getsignal(signal.SIGTERM) == previous    # the handler is put back
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3']
  resumed = train.train_and_evaluate(smoke_config(data_dir, **{
      'num_train_steps': 400, 'max_steps_per_run': 1, 'checkpoint_every_steps': 1000}),
                                     str(tmp_path))
  assert resumed == {'interrupted_at_step': 4}


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(data_dir):
  """grad_accum=2 averages two half-batch gradients: with no stochastic parts and a per-sample
  loss (no MAC), two steps equal two full-batch steps, optimizer state included."""
  deterministic = {'model.dropout': 0.0, 'loss.mac': 'none', 'augment.crop_min_ratio': 1.0,
                   'augment.rotation': (0.0, 0.0, 0.0), 'augment.scale': 0.0,
                   'augment.shear': 0.0, 'augment.joint_dropout': 0.0, 'optim.warmup_steps': 1}
  config = smoke_config(data_dir, **deterministic)
  batch = _first_batch(config)
  devices = jax.devices()[:1]
  init, _ = _train_steps(config, devices, batch, num_steps=0)
  state1, metrics1 = _train_steps(config, devices, batch)
  state2, metrics2 = _train_steps(smoke_config(data_dir, **deterministic,
                                               **{'optim.grad_accum': 2}), devices, batch)
  _assert_states_close(state2, state1, init)
  np.testing.assert_allclose(metrics2['loss'], metrics1['loss'], rtol=1e-5)
  np.testing.assert_allclose(metrics2['grad_norm'], metrics1['grad_norm'], rtol=1e-5)


def test_metrics_log_resumed_at_step_s_drops_later_records_and_a_cut_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  lines = [json.dumps({'step': s, 'train_loss': 1.0 / s}) for s in (1, 2, 3, 4, 5)]
  path.write_text('\n'.join(lines) + '\n{"step": 6, "train_lo')   # crash mid-write
  log = train._MetricsLog(str(tmp_path), enabled=True, resume_step=3)
  log.write({'step': 4, 'train_loss': 0.5})
  log.close()
  assert path.read_text().splitlines() == lines[:3] + [json.dumps({'step': 4, 'train_loss': 0.5})]
  # A process that does not write (enabled False) leaves the file alone.
  before = path.read_text()
  train._MetricsLog(str(tmp_path), enabled=False, resume_step=0)
  assert path.read_text() == before



def test_metrics_log_resumed_at_the_last_step_drops_its_evaluation_only(tmp_path):
  """A run stopped after its final checkpoint evaluates the last step again: the log keeps one
  evaluation record of it (and every training record); a mid-run resume keeps them all."""
  path = tmp_path / 'metrics.jsonl'
  records = [{'step': 4, 'train_loss': 0.4}, {'step': 4, 'eval_top1': 50.0},
             {'step': 8, 'train_loss': 0.2}, {'step': 8, 'eval_top1': 60.0}]
  text = ''.join(json.dumps(r) + '\n' for r in records)
  path.write_text(text)
  train._MetricsLog(str(tmp_path), enabled=True, resume_step=8).close()
  assert path.read_text() == text
  log = train._MetricsLog(str(tmp_path), enabled=True, resume_step=8, evaluates_again=True)
  log.write({'step': 8, 'eval_top1': 61.0})
  log.close()
  assert [json.loads(line) for line in path.read_text().splitlines()] == [
      *records[:3], {'step': 8, 'eval_top1': 61.0}]

LEARNING = {'data.options.num_train': 480, 'data.options.num_test': 150, 'model.width': 32,
            'num_train_steps': 150, 'batch_size': 32, 'eval_batch_size': 160,
            'optim.learning_rate': 3e-3, 'optim.warmup_steps': 20, 'loss.mac': 'none',
            'log_every_steps': 50, 'eval_every_steps': 30, 'checkpoint_every_steps': 50}


@pytest.fixture(scope='module')
def learned_run(data_dir, tmp_path_factory):
  """A tiny model trained for 150 steps on 480 synthetic clips (~15 s), scored every 30 steps
  on 150 held-out clips of other subjects."""
  workdir = tmp_path_factory.mktemp('learned')
  config = smoke_config(data_dir, **LEARNING)
  return config, workdir, train.train_and_evaluate(config, str(workdir))


@pytest.mark.slow
def test_training_learns_the_synthetic_classes(learned_run):
  _, _, summary = learned_run
  chance = 100.0 / 15
  assert summary['final']['top1'] >= 3 * chance, summary['final']


@pytest.mark.slow
def test_best_checkpoint_is_the_best_scoring_evaluation(learned_run):
  config, workdir, summary = learned_run
  evals = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  evals = [(r['step'], r['eval_top1']) for r in evals if 'eval_top1' in r]
  assert [step for step, _ in evals] == [30, 60, 90, 120, 150]
  assert len({top1 for _, top1 in evals}) > 1, 'every evaluation scored the same'
  best_top1 = max(top1 for _, top1 in evals)
  best_step = next(step for step, top1 in evals if top1 == best_top1)   # the first of a tie
  assert sorted(int(p) for p in os.listdir(workdir / 'best') if p.isdigit()) == [best_step]
  assert (summary['best']['step'], summary['best']['top1']) == (best_step, best_top1)
  # --checkpoint=best restores that step and scores what it scored during training; latest is
  # the final step.
  best = evaluate.evaluate_workdir(str(workdir), checkpoint='best',
                                   output_dir=str(workdir / 'eval_best'))
  assert (best['step'], best['top1']) == (best_step, pytest.approx(best_top1))
  latest = evaluate.evaluate_workdir(str(workdir), checkpoint='latest',
                                     output_dir=str(workdir / 'eval_latest'))
  assert (latest['step'], latest['top1']) == (150, pytest.approx(summary['final']['top1']))
