"""Score-level ensembling of trained runs (micro_dualnet_jax/ensemble.py, --mode=ensemble)."""

import json
import os

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from configs import nwucla as nwucla_config
from configs import smoke
from support import typed
from micro_dualnet_jax import cli, ensemble
from micro_dualnet_jax.data import registry
from micro_dualnet_jax.dirlock import DirectoryLock
from micro_dualnet_jax.errors import DirectoryInUseError
from micro_dualnet_jax.rundir import RunDir

NUM_CLIPS, NUM_CLASSES = 40, 15


def _write_run(workdir, logits, labels, clip_ids, split='test'):
  os.makedirs(workdir, exist_ok=True)
  np.savez_compressed(os.path.join(workdir, ensemble.OUTPUTS_FILE), logits=logits, labels=labels,
                      clip_ids=np.asarray(clip_ids, str), eval_split=split,
                      routing_weights=np.zeros((len(labels), 5, 2)))
  return str(workdir)


@pytest.fixture(name='runs')
def _runs(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, NUM_CLASSES, NUM_CLIPS)
  ids = [f'clip_{i:03d}' for i in range(NUM_CLIPS)]
  logits = [rng.normal(size=(NUM_CLIPS, NUM_CLASSES)) * 2 for _ in range(3)]
  for member in logits:  # each member right on a different half of the clips
    right = rng.random(NUM_CLIPS) < 0.5
    member[right, labels[right]] += 4.0
  perm = rng.permutation(NUM_CLIPS)   # the third run stored its clips in another order
  dirs = [_write_run(tmp_path / 'a', logits[0], labels, ids),
          _write_run(tmp_path / 'b', logits[1], labels, ids),
          _write_run(tmp_path / 'c', logits[2][perm], labels[perm], [ids[i] for i in perm])]
  return dirs, logits, labels, ids


def test_weighted_probability_mean_matches_hand_computation(runs):
  dirs, logits, labels, _ = runs
  weights = (1.0, 1.0, 0.5)
  members = [ensemble.load_run(d, w) for d, w in zip(dirs, weights)]
  probs, got_labels, _ = ensemble.combine(members)
  expected = sum(w * softmax(l, axis=-1) for w, l in zip(weights, logits)) / sum(weights)
  np.testing.assert_allclose(probs, expected, rtol=1e-12)
  np.testing.assert_array_equal(got_labels, labels)


def test_run_ensemble_writes_metrics_equal_to_sklearn(runs, tmp_path):
  dirs, logits, labels, _ = runs
  out = tmp_path / 'ens'
  summary = ensemble.run_ensemble([(d, 1.0) for d in dirs], str(out),
                                  spec=registry.get_spec('synthetic'),
                                  class_names=[f'c{i}' for i in range(NUM_CLASSES)])
  probs = sum(softmax(l, axis=-1) for l in logits) / 3
  assert summary['ensemble']['top1'] == pytest.approx(
      100 * accuracy_score(labels, probs.argmax(1)))
  assert summary['ensemble']['top5'] == pytest.approx(
      100 * top_k_accuracy_score(labels, probs, k=5, labels=range(NUM_CLASSES)))
  for member, member_logits in zip(summary['members'], logits):
    assert member['top1'] == pytest.approx(100 * accuracy_score(labels, member_logits.argmax(1)))
  assert summary['ensemble']['top1'] > max(m['top1'] for m in summary['members'])
  per_class = summary['per_class_accuracy']
  for c in range(NUM_CLASSES):
    rows = labels == c
    if rows.any():
      assert per_class[f'c{c}'] == pytest.approx(
          100 * np.mean(probs[rows].argmax(1) == c), abs=0.01)
  assert json.loads((out / 'ensemble.json').read_text())['ensemble'] == summary['ensemble']
  assert (out / 'predictions.csv').read_text().count('\n') == NUM_CLIPS + 1


def test_an_ensemble_into_a_folder_in_use_is_refused(runs, tmp_path):
  dirs = runs[0]
  out = tmp_path / 'ens'
  out.mkdir()
  with DirectoryLock(out, what='output folder', activity='ensembling'):
    with pytest.raises(DirectoryInUseError, match=f'output folder {out} is in use by process '
                                                  f'{os.getpid()}'):
      ensemble.run_ensemble([(d, 1.0) for d in dirs], str(out),
                            spec=registry.get_spec('synthetic'),
                            class_names=[f'c{i}' for i in range(NUM_CLASSES)])
    assert os.listdir(out) == ['.lock']


def test_members_that_disagree_are_refused_by_name(runs, tmp_path):
  dirs, logits, labels, ids = runs
  other_clips = _write_run(tmp_path / 'x', logits[0], labels, [i + 'x' for i in ids])
  with pytest.raises(ValueError, match='scored different clips'):
    ensemble.combine([ensemble.load_run(dirs[0]), ensemble.load_run(other_clips)])
  other_labels = _write_run(tmp_path / 'y', logits[0], (labels + 1) % NUM_CLASSES, ids)
  with pytest.raises(ValueError, match='disagree on the labels'):
    ensemble.combine([ensemble.load_run(dirs[0]), ensemble.load_run(other_labels)])
  other_split = _write_run(tmp_path / 'z', logits[0], labels, ids, split='train[90%:]')
  with pytest.raises(ValueError, match="scored split 'train"):
    ensemble.combine([ensemble.load_run(dirs[0]), ensemble.load_run(other_split)])
  with pytest.raises(ValueError, match=str(tmp_path / 'missing')):
    ensemble.load_run(str(tmp_path / 'missing'))
  bad = _write_run(tmp_path / 'nan', np.full_like(logits[0], np.nan), labels, ids)
  with pytest.raises(ValueError, match='NaN'):
    ensemble.load_run(bad)
  old = tmp_path / 'old'
  old.mkdir()
  np.savez_compressed(old / ensemble.OUTPUTS_FILE, logits=logits[0], labels=labels)
  with pytest.raises(ValueError, match=r"eval_outputs.npz lacks \['clip_ids'\]"):
    ensemble.load_run(str(old))
  corrupt = tmp_path / 'corrupt'
  corrupt.mkdir()
  (corrupt / ensemble.OUTPUTS_FILE).write_bytes(b'not an npz file')
  with pytest.raises(ValueError, match='is not a readable eval output'):
    ensemble.load_run(str(corrupt))


@pytest.mark.parametrize('spec, message', [
    ('only_one', 'at least two'), ('a,b=heavy', 'not a number'), ('a,b=-1', 'positive')])
def test_member_list_errors(spec, message):
  with pytest.raises(ValueError, match=message):
    ensemble.parse_members(spec)


def test_member_list_weights():
  assert ensemble.parse_members('a, b=0.5,') == [('a', 1.0), ('b', 0.5)]


def test_cli_mode_ensemble(runs, tmp_path, capsys):
  dirs, _, _, _ = runs
  cli.run('ensemble', typed(smoke.get_config()), str(tmp_path / 'out'),
          input_path=f'{dirs[0]},{dirs[1]}=0.5')
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert [m['weight'] for m in printed['members']] == [1.0, 0.5]
  assert (tmp_path / 'out' / 'ensemble.json').exists()
  with pytest.raises(SystemExit) as exit_info:
    cli.run('ensemble', typed(smoke.get_config()), str(tmp_path / 'out2'), input_path=dirs[0])
  assert exit_info.value.code == 2


def test_cli_ensemble_takes_the_members_dataset_and_refuses_a_config_of_another(runs, tmp_path,
                                                                                capsys):
  """The members' config.json names their dataset; --config may be left out, and one of another
  dataset is refused by name instead of scoring with its classes."""
  dirs, _, _, _ = runs
  trained = typed(smoke.get_config())
  for workdir in dirs[:2]:
    RunDir(workdir).write(trained, kind='run', seeds=[0], package_version='test',
                          class_names=registry.get_spec('synthetic').class_names)
  members = f'{dirs[0]},{dirs[1]}'
  cli.run('ensemble', trained, str(tmp_path / 'out'), input_path=members, config_given=False)
  assert json.loads((tmp_path / 'out' / 'ensemble.json').read_text())['num_clips'] == NUM_CLIPS
  capsys.readouterr()
  nwucla = typed(nwucla_config.get_config())
  with pytest.raises(SystemExit) as exit_info:
    cli.run('ensemble', nwucla, str(tmp_path / 'out2'), input_path=members)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      "error: --config is a 'nwucla' config, the ensemble members were trained on 'synthetic'; "
      "leave --config out (the members' dataset is used) or give a config of their dataset\n")
  assert not (tmp_path / 'out2').exists()


# ----------------------------------------------------------------------- weights fitted on held-out

# Two members on 4 clips of 3 classes, as probabilities. A is right on clips 0-2 and wrong on 3;
# B is confidently wrong on clips 0 and 1 and right on 2 and 3. Equal weights get clips 2 and 3
# (50 %); any weight of A in (0.68, 0.905) gets all four: 0.7, 0.8 and 0.9 on the grid, and 0.7
# is the nearest to the equal weights.
PROBS_A = [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]]
PROBS_B = [[0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]
LABELS_4 = np.array([0, 1, 2, 0])


def _padded(probs, num_classes):
  """The 3-class probabilities with num_classes - 3 more classes of probability 1e-6 each."""
  probs = np.concatenate([probs, np.full((4, num_classes - 3), 1e-6)], axis=1)
  return probs / probs.sum(1, keepdims=True)


def _prob_run(folder, probs, prefix, split, num_classes=3):
  return _write_run(folder, np.log(_padded(probs, num_classes)), LABELS_4,
                    [f'{prefix}{i}' for i in range(4)], split=split)


def test_simplex_grid_holds_every_weight_vector_of_step_one_tenth():
  grid = ensemble.simplex_grid(3)
  assert grid.shape == (66, 3)                          # C(12, 2)
  np.testing.assert_allclose(grid.sum(1), 1.0)
  assert len({tuple(np.round(row * 10).astype(int)) for row in grid}) == 66
  np.testing.assert_array_equal(grid[0], [0.0, 0.0, 1.0])
  np.testing.assert_array_equal(grid[-1], [1.0, 0.0, 0.0])


def test_fitted_weights_beat_equal_weights_on_the_heldout_split(tmp_path):
  heldout = [ensemble.load_run(_prob_run(tmp_path / 'ha', PROBS_A, 'h', 'view2')),
             ensemble.load_run(_prob_run(tmp_path / 'hb', PROBS_B, 'h', 'view2'))]
  weights, report = ensemble.fit_weights(heldout)
  np.testing.assert_allclose(weights, [0.7, 0.3])
  assert report['heldout_top1'] == 100.0 and report['heldout_top1_equal_weights'] == 50.0
  assert report['heldout_split'] == 'view2' and report['num_heldout_clips'] == 4
  assert report['num_candidates'] == 12                 # 11 grid points and the equal weights


def test_ties_keep_the_equal_weights(tmp_path):
  # Three identical members: every candidate scores the same, and the equal weights (1/3 each,
  # not on the grid) are the nearest to themselves.
  runs = [ensemble.load_run(_prob_run(tmp_path / f'm{i}', PROBS_A, 'h', 'view2'))
          for i in range(3)]
  weights, report = ensemble.fit_weights(runs)
  np.testing.assert_allclose(weights, [1 / 3] * 3)
  assert report['heldout_top1'] == report['heldout_top1_equal_weights'] == 75.0


def test_cli_ensemble_applies_the_weights_fitted_on_the_heldout_members(tmp_path, capsys):
  # The smoke config's dataset has 15 classes: 12 more of probability 1e-6 change no decision.
  heldout = [_prob_run(tmp_path / 'ha', PROBS_A, 'h', 'view2', NUM_CLASSES),
             _prob_run(tmp_path / 'hb', PROBS_B, 'h', 'view2', NUM_CLASSES)]
  # The members scored the test split: other clips, the same behaviour.
  members = [_prob_run(tmp_path / 'ta', PROBS_A, 't', 'test', NUM_CLASSES),
             _prob_run(tmp_path / 'tb', PROBS_B, 't', 'test', NUM_CLASSES)]
  cli.run('ensemble', typed(smoke.get_config()), str(tmp_path / 'out'), input_path=','.join(members),
          fit_weights_on=','.join(heldout))
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  np.testing.assert_allclose(printed['weights_fit']['weights'], [0.7, 0.3])
  np.testing.assert_allclose([m['weight'] for m in printed['members']], [0.7, 0.3])
  assert printed['ensemble']['top1'] == 100.0            # equal weights: 50.0
  probs, _, _ = ensemble.combine([ensemble.load_run(members[0], 0.7),
                                  ensemble.load_run(members[1], 0.3)])
  np.testing.assert_allclose(probs, 0.7 * _padded(PROBS_A, NUM_CLASSES)
                             + 0.3 * _padded(PROBS_B, NUM_CLASSES))
  assert (tmp_path / 'out' / 'ensemble.json').exists()


def test_fitting_refuses_heldout_members_that_cannot_stand_for_the_members(tmp_path):
  members = [ensemble.load_run(_prob_run(tmp_path / 'ta', PROBS_A, 't', 'test')),
             ensemble.load_run(_prob_run(tmp_path / 'tb', PROBS_B, 't', 'test'))]
  same_split = [_prob_run(tmp_path / 'sa', PROBS_A, 's', 'test'),
                _prob_run(tmp_path / 'sb', PROBS_B, 's', 'test')]
  with pytest.raises(ValueError, match="scored split 'test' and the members 'test'"):
    ensemble.fitted_weights(members, same_split)
  same_clips = [_prob_run(tmp_path / 'ca', PROBS_A, 't', 'view2'),
                _prob_run(tmp_path / 'cb', PROBS_B, 't', 'view2')]
  with pytest.raises(ValueError, match='sharing 4 clips'):
    ensemble.fitted_weights(members, same_clips)
  with pytest.raises(ValueError, match='1 held-out members for 2 ensemble members'):
    ensemble.fitted_weights(members, same_split[:1])
  # Run directories that say which stream they are: the held-out ones given in another order.
  streams = []
  for name, stream in (('joint', 'joint'), ('bone', 'bone')):
    config = typed(smoke.get_config()).replace(**{'augment.stream': stream})
    RunDir(str(tmp_path / f'h_{name}')).write(config, kind='run', seeds=[0],
                                              package_version='test',
                                              class_names=config.data.class_names)
    streams.append(_prob_run(tmp_path / f'h_{name}', PROBS_A, 'h', 'view2'))
    RunDir(str(tmp_path / f't_{name}')).write(config, kind='run', seeds=[0],
                                              package_version='test',
                                              class_names=config.data.class_names)
    _prob_run(tmp_path / f't_{name}', PROBS_A, 't', 'test')
  test_runs = [ensemble.load_run(str(tmp_path / 't_joint')),
               ensemble.load_run(str(tmp_path / 't_bone'))]
  with pytest.raises(ValueError, match='is the joint stream, its held-out member .* the bone'):
    ensemble.fitted_weights(test_runs, streams[::-1])
  weights, _ = ensemble.fitted_weights(test_runs, streams)
  np.testing.assert_allclose(weights, [0.5, 0.5])


def test_fitted_weights_take_no_given_weights():
  with pytest.raises(ValueError, match='the weights are fitted'):
    ensemble.parse_members('a,b=0.5', weighted=False)
  with pytest.raises(ValueError, match='held-out members take no weight'):
    ensemble.parse_heldout('a,b=0.5')
  assert ensemble.parse_heldout(' a, b,') == ['a', 'b']
  with pytest.raises(SystemExit):
    cli.run('eval', typed(smoke.get_config()), '/nonexistent', fit_weights_on='a,b')
