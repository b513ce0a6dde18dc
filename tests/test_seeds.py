"""Several seeds in one jitted run (`num_seeds`): each replica is the run its seed would be
alone, each gets a complete run directory, and the run resumes like a run of one seed."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest

from support import smoke_config
from micro_dualnet_jax import evaluate, predict, sharding, steps, train
from micro_dualnet_jax.pipeline import datasets
from micro_dualnet_jax.errors import RunDirError
from micro_dualnet_jax.rundir import RunDir


@pytest.mark.slow
def test_a_replica_after_two_steps_equals_its_seed_trained_alone(data_dir):
  config = smoke_config(data_dir, **{'optim.warmup_steps': 1})
  mesh = sharding.make_mesh()
  tx, _ = steps.make_optimizer(config.optim, 10)
  splits = datasets.load_splits(config)
  seeds = [3, 4]
  streams = [datasets.make_loader(config, splits.train, config.run.batch_size, 'train',
                                  seed=s).train_batches() for s in seeds]
  batches = [[next(stream) for _ in range(2)] for stream in streams]
  graphdef, stacked = steps.create_train_states(config.model, tx, mesh, seeds)
  step = steps.make_train_step(graphdef, tx, config, mesh, seeds_axis=True)
  for i in range(2):
    stacked, _ = step(stacked, steps.host_batches_to_global(
        [batches[0][i], batches[1][i]], mesh, config.run.batch_size))
  alone_graphdef, alone = steps.create_train_state(config.model, tx, mesh, seed=4)
  alone_step = steps.make_train_step(alone_graphdef, tx, config, mesh)
  for i in range(2):
    alone, _ = alone_step(alone, sharding.to_global(batches[1][i], sharding.batch_sharding(mesh),
                                                    config.run.batch_size))
  replica = jax.device_get(steps.replica(stacked, 1, mesh))
  alone = jax.device_get(alone)
  assert int(replica['step']) == int(alone['step']) == 2
  for a, b in zip(jax.tree.leaves(replica['params']), jax.tree.leaves(alone['params'])):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
  np.testing.assert_array_equal(replica['rng'], alone['rng'])
  # The replicas are independent: other initialisation, other parameters.
  other = jax.device_get(steps.replica(stacked, 0, mesh))
  assert not np.allclose(jax.tree.leaves(other['params'])[0],
                         jax.tree.leaves(replica['params'])[0])


@pytest.fixture(scope='module')
def seeds_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('seeds') / 'run'
  config = smoke_config(data_dir, num_seeds=3, seed=5)
  return workdir, train.train_and_evaluate(config, str(workdir))


@pytest.mark.slow
def test_every_seed_gets_a_complete_run_directory_and_the_summary_their_statistics(seeds_run):
  workdir, summary = seeds_run
  run = RunDir(str(workdir))
  assert run.kind == 'seeds' and run.seeds() == [5, 6, 7]
  finals = []
  for seed, seed_run in zip(run.seeds(), run.seed_runs()):
    assert seed_run.path == str(workdir / f'seed_{seed}') and seed_run.kind == 'run'
    assert seed_run.seeds() == [seed]
    config = seed_run.config()
    assert (config.run.seed, config.run.num_seeds) == (seed, 1)
    for name in ('summary.json', 'metrics.jsonl', 'eval_outputs.npz', 'predictions.csv',
                 'confusion_matrix.png'):
      assert (workdir / f'seed_{seed}' / name).exists(), name
    assert sorted(os.listdir(workdir / f'seed_{seed}' / 'checkpoints')) == ['4', '8']
    finals.append(seed_run.summary()['final'])
  for metric in ('top1', 'top5', 'f1_macro'):
    values = np.array([f[metric] for f in finals])
    assert summary['final_mean'][metric] == pytest.approx(values.mean())
    assert summary['final_std'][metric] == pytest.approx(values.std(ddof=1))
  assert json.loads((workdir / 'summary.json').read_text()) == summary
  assert sorted(summary['seeds']) == ['5', '6', '7']


@pytest.mark.slow
def test_a_seed_predicts_as_its_own_run_does(seeds_run, data_dir, tmp_path):
  workdir, _ = seeds_run
  alone = tmp_path / 'alone'
  train.train_and_evaluate(smoke_config(data_dir, seed=6), str(alone))
  with np.load(workdir / 'seed_6' / 'eval_outputs.npz') as a, np.load(
      alone / 'eval_outputs.npz') as b:
    assert list(a['clip_ids']) == list(b['clip_ids'])
    agree = np.mean(a['logits'].argmax(1) == b['logits'].argmax(1))
  assert agree >= 0.9, agree


@pytest.mark.slow
def test_eval_and_predict_take_a_seed_folder_as_a_run(seeds_run, tmp_path):
  workdir, summary = seeds_run
  seed_dir = str(workdir / 'seed_7')
  result = evaluate.evaluate_workdir(seed_dir, checkpoint='latest',
                                     output_dir=str(tmp_path / 'eval'))
  assert result['top1'] == pytest.approx(summary['seeds']['7']['final']['top1'])
  every = evaluate.evaluate_workdir(str(workdir), checkpoint='latest',
                                    output_dir=str(tmp_path / 'all'))
  assert sorted(every['seeds']) == [5, 6, 7]
  assert every['mean']['top1'] == pytest.approx(summary['final_mean']['top1'])
  clip = np.random.default_rng(0).normal(size=(20, 22, 3)).astype(np.float32)
  clip[..., 2] = 1.0
  np.save(tmp_path / 'clip.npy', clip)
  [prediction] = predict.run_predict(None, seed_dir, str(tmp_path / 'clip.npy'),
                                     str(tmp_path / 'predict'), verbose=False, render=False)
  assert prediction['status'] == 'ok'


@pytest.mark.slow
def test_a_run_of_seeds_resumes_to_the_uninterrupted_result(seeds_run, data_dir, tmp_path):
  workdir, summary = seeds_run
  config = smoke_config(data_dir, num_seeds=3, seed=5)
  split = tmp_path / 'split'
  first = train.train_and_evaluate(smoke_config(data_dir, num_seeds=3, seed=5,
                                                max_steps_per_run=3), str(split))
  assert first == {'interrupted_at_step': 3}
  resumed = train.train_and_evaluate(config, str(split))
  for seed in ('5', '6', '7'):
    assert resumed['seeds'][seed]['param_checksum'] == summary['seeds'][seed]['param_checksum']
  # A save cut short between seeds (seed 6 lacks step 8): the run resumes from the newest step
  # every seed has, and ends the same.
  cut = tmp_path / 'cut'
  shutil.copytree(workdir, cut)
  shutil.rmtree(cut / 'seed_6' / 'checkpoints' / '8')
  os.remove(cut / 'summary.json')
  again = train.train_and_evaluate(config, str(cut))
  for seed in ('5', '6', '7'):
    assert again['seeds'][seed]['param_checksum'] == summary['seeds'][seed]['param_checksum']


@pytest.mark.slow
def test_ensemble_and_eval_refuse_a_run_of_several_seeds_by_name(seeds_run):
  workdir, _ = seeds_run
  from micro_dualnet_jax import ensemble, inference  # pylint: disable=g-import-not-at-top
  with pytest.raises(RunDirError, match=r'holds a run of 3 seeds; --mode=ensemble takes one of '
                                        r'them: .*seed_5, .*seed_6, .*seed_7'):
    ensemble.load_run(str(workdir))
  with pytest.raises(RunDirError, match='holds a run of 3 seeds'):
    inference.restore_model(str(workdir))
  # Each seed folder is a run of its own.
  assert inference.restore_model(str(workdir / 'seed_6')).step == 8
  ensemble.load_run(str(workdir / 'seed_6'))
