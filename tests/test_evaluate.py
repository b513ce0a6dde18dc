"""evaluate.py's outputs on a hand-made result: rows put in the released list order keep their own
clip's name, scores and routing."""

from __future__ import annotations

import csv

import numpy as np

from configs import ma52
from micro_dualnet_jax import evaluate
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.pipeline import datasets
from micro_dualnet_jax.data.ma52_classes import MA52_CLASSES

# Five clips in the order evaluation saw them (source order) and their lines in the list file.
LIST_LINES = [3, 0, 4, 1, 2]
RELEASE_ORDER = [1, 3, 4, 0, 2]          # source index of list line 0, 1, 2, ...


def _unlabelled_result() -> tuple[evaluate.EvalResult, datasets.Splits]:
  """Clip i (video 'test000<i>.mp4') scores class 10 + i highest; its routing is i / 10."""
  n = len(LIST_LINES)
  logits = np.zeros((n, 52), np.float32)
  logits[np.arange(n), 10 + np.arange(n)] = 5.0
  routing = np.repeat((np.arange(n) / 10.0)[:, None], 6, axis=1)
  result = evaluate.EvalResult(None, logits, np.stack([routing, 1 - routing], axis=-1),
                               np.full(n, -1), np.arange(n))
  splits = datasets.Splits(
      train=[], eval=[{'clip_id': f'test000{i}.mp4', 'list_line': line, 'label': -1}
                      for i, line in enumerate(LIST_LINES)], class_names=list(MA52_CLASSES))
  return result, splits


def test_release_order_moves_whole_rows():
  result, splits = _unlabelled_result()
  ordered = evaluate.in_release_order(result, splits)
  np.testing.assert_array_equal(ordered.indices, RELEASE_ORDER)
  np.testing.assert_array_equal(np.argmax(ordered.logits, axis=1), 10 + np.array(RELEASE_ORDER))
  np.testing.assert_allclose(ordered.routing_weights[:, 0, 0], np.array(RELEASE_ORDER) / 10)


def test_prediction_files_name_each_row_after_its_own_clip(tmp_path):
  result, splits = _unlabelled_result()
  config = ma52.get_config()
  config.data.eval_split = 'test'
  evaluate.write_outputs(RunConfig.from_config_dict(config), str(tmp_path), result, splits,
                         verbose=False, checkpoint={'step': 0, 'which': 'latest'})
  expected = [(f'test000{i}.mp4', 10 + i) for i in RELEASE_ORDER]
  with open(tmp_path / 'prediction.csv', newline='') as f:      # the benchmark's file
    rows = list(csv.DictReader(f))
  assert [(r['vid'], int(r['action_pred_1'])) for r in rows] == expected
  with open(tmp_path / 'predictions.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert [(r['clip_id'], int(r['pred'])) for r in rows] == expected
  with np.load(tmp_path / 'eval_outputs.npz') as outputs:
    assert list(zip(outputs['clip_ids'], np.argmax(outputs['logits'], axis=1))) == expected
    np.testing.assert_allclose(outputs['routing_weights'][:, 0, 0],
                               np.array(RELEASE_ORDER) / 10)
