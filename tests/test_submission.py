"""Prediction and submission files, against the formats the challenge servers take."""

import csv
import zipfile

import numpy as np
import pytest

from micro_dualnet_jax import metrics as M
from micro_dualnet_jax import submission
from micro_dualnet_jax.data import registry


def fine2coarse(action: int) -> int:
  """The MAC 2025 starter kit's mapping (submit/generate.py), written out independently."""
  if action <= 4:
    return 0
  if action <= 10:
    return 1
  if action <= 23:
    return 2
  if action <= 31:
    return 3
  if action <= 37:
    return 4
  if action <= 47:
    return 5
  return 6


def test_imigue_submission_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(6, 32))
  names = [f'01{v:02d}_{k}' for v, k in [(87, 0), (87, 1), (3, 0), (3, 5), (99, 2), (1, 0)]]
  path = tmp_path / 'sub' / 'Submission.csv'
  submission.write_imigue_submission(path, names, scores)
  text = path.read_text()
  expected = ''.join(f'{n},{p}\n' for n, p in zip(names, scores.argmax(axis=1)))
  assert text == expected
  with pytest.raises(ValueError, match='clip ids'):
    submission.write_imigue_submission(path, names[:5], scores)
  with pytest.raises(ValueError, match='commas'):
    submission.write_imigue_submission(path, ['a,b'] + names[1:], scores)


def test_ma52_submission_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  probs = M.softmax(rng.normal(size=(7, 52)) * 3)
  ids = [f'test{i:04d}.mp4' for i in range(7)]
  path = tmp_path / 'prediction.csv'
  submission.write_ma52_submission(path, ids, probs)
  assert path.read_bytes().count(b'\r\n') == 8          # the official writer's line ends
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  assert rows[0] == (['vid'] + [f'action_pred_{i}' for i in range(1, 6)]
                     + [f'body_pred_{i}' for i in range(1, 6)])
  assert [r[0] for r in rows[1:]] == ids
  values = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
  np.testing.assert_array_equal(values[:, :5], np.argsort(-probs, axis=1)[:, :5])
  # The official writer's rule: body_pred_i = fine2coarse(action_pred_i), repeats allowed.
  np.testing.assert_array_equal(values[:, 5:], np.vectorize(fine2coarse)(values[:, :5]))
  assert any(len(set(r)) < 5 for r in values[:, 5:])
  with pytest.raises(ValueError, match='52 columns'):
    submission.write_ma52_submission(path, ids, M.softmax(rng.normal(size=(7, 32))))


def test_predictions_csv_round_trip(tmp_path):
  rng = np.random.default_rng(2)
  probs = M.softmax(rng.normal(size=(4, 3)))
  path = tmp_path / 'predictions.csv'
  submission.write_predictions_csv(path, ['a', 'b', 'c', 'd'], probs, labels=np.array([0, 2, 1, 1]))
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0].keys()) == ['clip_id', 'label', 'pred', 'top1', 'top1_prob', 'top2',
                                  'top2_prob', 'top3', 'top3_prob']
  order = np.argsort(-probs, axis=1)
  for n, row in enumerate(rows):
    assert row['clip_id'] == 'abcd'[n]
    assert int(row['label']) == [0, 2, 1, 1][n]
    assert int(row['pred']) == order[n, 0]
    for i in range(3):
      assert int(row[f'top{i + 1}']) == order[n, i]
      assert float(row[f'top{i + 1}_prob']) == pytest.approx(probs[n, order[n, i]], abs=1e-6)
  submission.write_predictions_csv(path, ['a', 'b', 'c', 'd'], probs)
  with open(path, newline='') as f:
    assert [r['label'] for r in csv.DictReader(f)] == [''] * 4
  with pytest.raises(ValueError, match='softmax'):
    submission.write_predictions_csv(path, ['a', 'b', 'c', 'd'], probs * 3)


@pytest.mark.parametrize('dataset, files', [
    ('imigue', ('Submission.csv', 'Submission.zip')),
    ('ma52', ('prediction.csv', 'prediction.zip')),
    ('nwucla', ())])
def test_run_outputs_zip_the_submission_at_the_zip_root(tmp_path, dataset, files):
  classes = 52 if dataset == 'ma52' else 32
  probs = M.softmax(np.random.default_rng(3).normal(size=(5, classes)))
  ids = [f'test{i:04d}.mp4' if dataset == 'ma52' else f'00{i}_0' for i in range(5)]
  written = submission.write_run_outputs(registry.get_spec(dataset).submission, tmp_path, ids,
                                         probs, labels=None)
  assert [p.rsplit('/', 1)[-1] for p in written] == ['predictions.csv', *files]
  if files:
    with zipfile.ZipFile(tmp_path / files[1]) as archive:
      assert archive.namelist() == [files[0]]            # no folder inside
      assert archive.read(files[0]) == (tmp_path / files[0]).read_bytes()
