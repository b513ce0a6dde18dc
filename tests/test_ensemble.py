"""Score-level ensembling of trained runs (micro_dualnet_jax/ensemble.py, --mode=ensemble)."""

import json
import os

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from configs import smoke
from support import typed
from micro_dualnet_jax import cli, ensemble
from micro_dualnet_jax.data import registry

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
