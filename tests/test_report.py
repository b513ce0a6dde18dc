"""Tests for micro_dualnet_jax.report: each plot writes a real PNG; bad inputs raise ValueError."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from micro_dualnet_jax import report

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_ENTITIES = ['face', 'head', 'torso', 'left_hand', 'right_hand', 'lower_body']


def _check_png(path, min_width=300, min_height=200):
  with open(path, 'rb') as f:
    assert f.read(8) == _PNG_SIGNATURE
  image = mpimg.imread(path)
  assert image.ndim == 3 and image.shape[2] in (3, 4)
  height, width = image.shape[:2]
  assert width >= min_width and height >= min_height
  # Not a blank canvas.
  assert image[..., :3].std() > 0.01
  return width, height


def _routing(rng, n, k):
  st = rng.uniform(0.1, 0.9, size=(n, k))
  return np.stack([st, 1.0 - st], axis=-1)


def test_training_curves_tolerate_missing_keys(tmp_path):
  log = tmp_path / 'metrics.jsonl'
  lines = []
  for step in range(1, 101):
    record = {'step': step, 'train_loss': 3.0 / step ** 0.5, 'learning_rate': 1e-3 * min(1, step / 10)}
    if step % 25 == 0:
      record.update({'eval_loss': 2.5 / step ** 0.3, 'eval_top1': step * 0.5, 'note': 'eval'})
    lines.append(json.dumps(record))
  log.write_text('\n'.join(lines) + '\n\n')
  series = report.read_metrics_jsonl(log)
  assert set(series) == {'train_loss', 'learning_rate', 'eval_loss', 'eval_top1'}
  np.testing.assert_array_equal(series['eval_top1'][0], [25, 50, 75, 100])
  out = report.plot_training_curves(log, tmp_path / 'plots' / 'curves.png')
  width, height = _check_png(out)
  assert width > height  # Three panels side by side.


def test_training_curves_without_eval_lines(tmp_path):
  log = tmp_path / 'metrics.jsonl'
  log.write_text(''.join(json.dumps({'step': s, 'loss': 1.0 / s}) + '\n' for s in range(1, 5)))
  _check_png(report.plot_training_curves(log, tmp_path / 'curves.png'))


def test_training_curves_bad_files(tmp_path):
  log = tmp_path / 'bad.jsonl'
  log.write_text('{"step": 1, "loss": 1.0}\n{not json\n')
  with pytest.raises(ValueError, match='line 2'):
    report.plot_training_curves(log, tmp_path / 'x.png')
  log.write_text('{"loss": 1.0}\n')
  with pytest.raises(ValueError, match='step'):
    report.plot_training_curves(log, tmp_path / 'x.png')
  log.write_text('')
  with pytest.raises(ValueError, match='no metric values'):
    report.plot_training_curves(log, tmp_path / 'x.png')


def test_confusion_matrix_52_classes(tmp_path):
  rng = np.random.default_rng(0)
  cm = rng.integers(0, 5, size=(52, 52)) + np.diag(rng.integers(5, 40, size=52))
  cm[3] = 0  # A class absent from the evaluation.
  names = [f'action number {i}' for i in range(52)]
  width, height = _check_png(report.plot_confusion_matrix(cm, names, tmp_path / 'cm.png', 'val'))
  assert min(width, height) >= 1000  # Large enough for 52 readable labels.


def test_confusion_matrix_small_with_default_names(tmp_path):
  cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 4]])
  _check_png(report.plot_confusion_matrix(cm, None, tmp_path / 'cm.png'))


def test_confusion_matrix_bad_inputs(tmp_path):
  with pytest.raises(ValueError, match='square'):
    report.plot_confusion_matrix(np.zeros((3, 4)), None, tmp_path / 'x.png')
  with pytest.raises(ValueError, match='2 class names for 3'):
    report.plot_confusion_matrix(np.eye(3), ['a', 'b'], tmp_path / 'x.png')
  with pytest.raises(ValueError, match='non-negative'):
    report.plot_confusion_matrix(-np.eye(3), None, tmp_path / 'x.png')


def test_routing_weights_mean_only(tmp_path):
  mean = _routing(np.random.default_rng(0), 1, 6)[0]
  _check_png(report.plot_routing_weights(mean, _ENTITIES, tmp_path / 'routing.png'))


def test_routing_weights_per_class(tmp_path):
  rng = np.random.default_rng(1)
  weights = _routing(rng, 200, 5)
  labels = rng.integers(0, 31, size=200)  # Class 31 never occurs: a blank row.
  names = [f'gesture {i}' for i in range(32)]
  out = report.plot_routing_weights(weights, _ENTITIES[:5], tmp_path / 'routing.png',
                                    class_names=names, labels=labels)
  width, height = _check_png(out)
  assert height >= 700  # 32 class rows.
  means = report.class_routing_means(weights[..., 0], labels, 32)
  assert means.shape == (32, 5) and np.isnan(means[31]).all()
  np.testing.assert_allclose(means[labels[0]], weights[labels == labels[0], :, 0].mean(axis=0))


def test_routing_weights_bad_inputs(tmp_path):
  rng = np.random.default_rng(2)
  weights = _routing(rng, 10, 6)
  out = tmp_path / 'x.png'
  with pytest.raises(ValueError, match='K = 5'):
    report.plot_routing_weights(weights, _ENTITIES[:5], out)
  with pytest.raises(ValueError, match=r'\(N, K, 2\)'):
    report.plot_routing_weights(np.full((10, 6, 3), 1 / 3), _ENTITIES, out)
  with pytest.raises(ValueError, match='sum to 1'):
    report.plot_routing_weights(np.full((6, 2), 0.2), _ENTITIES, out)
  with pytest.raises(ValueError, match=r'labels must be \(10,\)'):
    report.plot_routing_weights(weights, _ENTITIES, out, labels=np.zeros(9, int))
  with pytest.raises(ValueError, match='per-sample'):
    report.plot_routing_weights(weights.mean(axis=0), _ENTITIES, out, labels=np.zeros(6, int))
  with pytest.raises(ValueError, match=r'\[0, 3\)'):
    report.plot_routing_weights(weights, _ENTITIES, out, class_names=['a', 'b', 'c'],
                                labels=np.full(10, 3))
  with pytest.raises(ValueError, match='needs labels'):
    report.plot_routing_weights(weights, _ENTITIES, out, class_names=['a', 'b', 'c'])
  assert not out.exists()


def test_routing_figure_shows_the_st_share_of_each_entity_and_class():
  """The figure's numbers, by hand: three samples, two entities, weights [a_st, a_ts]."""
  weights = np.array([[[0.9, 0.1], [0.2, 0.8]],
                      [[0.7, 0.3], [0.4, 0.6]],
                      [[0.2, 0.8], [0.0, 1.0]]])
  labels = np.array([1, 1, 0])
  data = report.routing_figure_data(weights, ['left_hand', 'lower_body'], ['a', 'b', 'c'],
                                    labels)
  assert data.entities == ['left_hand', 'lower_body'] and data.num_samples == 3
  np.testing.assert_allclose(data.st_share, [(0.9 + 0.7 + 0.2) / 3, (0.2 + 0.4 + 0.0) / 3])
  assert data.class_names == ['a', 'b', 'c']
  np.testing.assert_allclose(data.class_st_share, [[0.2, 0.0], [0.8, 0.3],
                                                   [np.nan, np.nan]])
  # What is drawn: the bars labelled ST hold the ST share, those labelled TS the rest; the heat
  # map holds the per-class ST share.
  fig = report.routing_figure(data)
  ax_bar, ax_map = fig.axes[:2]
  bars = {c.get_label(): [b.get_height() for b in c] for c in ax_bar.containers}
  np.testing.assert_allclose(bars['ST (spatial first)'], [0.6, 0.2])
  np.testing.assert_allclose(bars['TS (temporal first)'], [0.4, 0.8])
  np.testing.assert_allclose(ax_map.images[0].get_array(), data.class_st_share)
  # Weights already averaged over samples (K, 2): the bars are their ST column.
  averaged = report.routing_figure_data(np.array([[0.25, 0.75], [1.0, 0.0]]), ['a', 'b'])
  np.testing.assert_allclose(averaged.st_share, [0.25, 1.0])
  assert averaged.num_samples is None and averaged.class_st_share is None
