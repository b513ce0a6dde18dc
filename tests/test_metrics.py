"""Tests for micro_dualnet_jax.metrics: every metric against scikit-learn, plus the file writers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from micro_dualnet_jax import metrics as M


def _random_case(seed: int, n: int = 200, c: int = 12, drop_classes: int = 3):
  """Random scores whose predictions never hit some classes; labels miss others."""
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(n, c)).astype(np.float32)
  # Classes the model never predicts (still present in the labels).
  scores[:, :drop_classes] -= 100.0
  # Labels never contain the last class (it can still be predicted).
  labels = rng.integers(0, c - 1, size=n)
  mask = rng.random(n) > 0.2
  return scores, labels, mask


def _sklearn_reference(scores, labels, topk=(1, 5)):
  c = scores.shape[1]
  pred = scores.argmax(axis=1)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # Zero-division and missing-class warnings are expected.
    ref = {
        'top1': 100 * skm.accuracy_score(labels, pred),
        'mean_class_accuracy': 100 * skm.balanced_accuracy_score(labels, pred),
        'f1_micro': 100 * skm.f1_score(labels, pred, average='micro'),
        'f1_macro': 100 * skm.f1_score(labels, pred, average='macro'),
        'confusion_matrix': skm.confusion_matrix(labels, pred, labels=np.arange(c)),
    }
    for k in topk:
      ref[f'top{k}'] = 100 * skm.top_k_accuracy_score(
          labels, scores, k=min(k, c), labels=np.arange(c))
  return ref


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_classification_metrics_match_sklearn_with_mask(seed):
  scores, labels, mask = _random_case(seed)
  got = M.classification_metrics(scores, labels, mask=mask, topk=(1, 3, 5))
  ref = _sklearn_reference(scores[mask], labels[mask], topk=(1, 3, 5))
  assert got['num_samples'] == mask.sum()
  for key in ('top1', 'top3', 'top5', 'mean_class_accuracy', 'f1_micro', 'f1_macro'):
    assert got[key] == pytest.approx(ref[key], abs=1e-9), key
  np.testing.assert_array_equal(got['confusion_matrix'], ref['confusion_matrix'])
  # Masked samples change the result, so the mask is really applied.
  assert M.classification_metrics(scores, labels)['confusion_matrix'].sum() == len(labels)


def test_masked_padding_is_ignored_exactly():
  scores, labels, mask = _random_case(7)
  base = M.classification_metrics(scores[mask], labels[mask])
  # Padding rows carry garbage: out-of-range labels and NaN scores must not matter.
  pad_scores = np.full((5, scores.shape[1]), np.nan, np.float32)
  padded = M.classification_metrics(
      np.concatenate([scores[mask], pad_scores]), np.concatenate([labels[mask], [-1] * 5]),
      mask=np.concatenate([np.ones(mask.sum()), np.zeros(5)]))
  for key in ('top1', 'top5', 'f1_macro', 'mean_class_accuracy'):
    assert padded[key] == base[key]
  np.testing.assert_array_equal(padded['confusion_matrix'], base['confusion_matrix'])


def test_hand_made_four_samples():
  # Classes 0..2. Predictions (argmax): 0, 1, 1, 2; labels 0, 1, 2, 2.
  scores = np.array([[0.7, 0.2, 0.1],
                     [0.1, 0.6, 0.3],
                     [0.2, 0.5, 0.3],
                     [0.1, 0.2, 0.7]])
  labels = np.array([0, 1, 2, 2])
  got = M.classification_metrics(scores, labels, topk=(1, 2, 5))
  assert got['top1'] == 75.0
  assert got['top2'] == 100.0  # Sample 2 has label 2 in second place.
  assert got['top5'] == 100.0  # k clipped to C = 3.
  # Recall per class: 1, 1, 1/2.
  assert got['mean_class_accuracy'] == pytest.approx(100 * 2.5 / 3)
  assert got['f1_micro'] == 75.0
  # F1 per class: 1, 2/3 (TP 1, FP 1), 2/3 (TP 1, FN 1).
  assert got['f1_macro'] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
  np.testing.assert_array_equal(got['confusion_matrix'], [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_ties_break_to_lower_class_index():
  scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
  np.testing.assert_array_equal(M.topk_indices(scores, 3), [[0, 1, 2], [1, 2, 0]])
  got = M.classification_metrics(scores, np.array([1, 2]), topk=(1, 2))
  assert got['top1'] == 0.0 and got['top2'] == 100.0


def test_accumulator_streaming_equals_one_shot():
  scores, labels, mask = _random_case(11, n=203)
  acc = M.MetricAccumulator(scores.shape[1], topk=(1, 5))
  for start in range(0, len(labels), 32):
    s = slice(start, start + 32)
    acc.update(scores[s], labels[s], mask[s])
  streamed = acc.compute()
  one_shot = M.classification_metrics(scores, labels, mask=mask)
  assert streamed.keys() == one_shot.keys()
  for key, value in one_shot.items():
    np.testing.assert_array_equal(streamed[key], value)
  acc.reset()
  with pytest.raises(ValueError, match='no valid samples'):
    acc.compute()


def test_f1_mean_documented_example():
  # The documented check (docs/data_formats.md): body micro 78.95, body macro 72.87, action micro 61.33, action macro 49.22.
  assert round(M.f1_mean(61.33, 49.22, 78.95, 72.87), 2) == 65.59


def test_ma52_body_groups_and_action_to_body():
  expected = np.repeat(np.arange(7), [5, 6, 13, 8, 6, 10, 4])
  np.testing.assert_array_equal(M.action_to_body(np.arange(52)), expected)
  assert M.action_to_body(np.array([[0, 51], [23, 24]])).tolist() == [[0, 6], [2, 3]]
  assert M.MA52_BODY_NAMES[3] == 'lower limb'
  with pytest.raises(ValueError, match='52'):
    M.action_to_body(np.array([52]))
  with pytest.raises(ValueError, match='integers'):
    M.action_to_body(np.array([1.5]))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_ma52_metrics_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  n = 300
  labels = rng.integers(0, 52, size=n)
  scores = rng.normal(size=(n, 52))
  scores[np.arange(n), labels] += 1.5  # Some skill, so body metrics are not trivial.
  mask = rng.random(n) > 0.1
  got = M.ma52_metrics(scores, labels, mask=mask)
  y, p = labels[mask], scores[mask].argmax(axis=1)
  yb, pb = M.action_to_body(y), M.action_to_body(p)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    action_micro = 100 * skm.f1_score(y, p, average='micro')
    action_macro = 100 * skm.f1_score(y, p, average='macro')
  body_micro = 100 * skm.f1_score(yb, pb, average='micro')
  body_macro = 100 * skm.f1_score(yb, pb, average='macro')
  assert got['f1_macro'] == pytest.approx(action_macro, abs=1e-9)
  assert got['body_top1'] == pytest.approx(100 * skm.accuracy_score(yb, pb), abs=1e-9)
  assert got['body_f1_micro'] == pytest.approx(body_micro, abs=1e-9)
  assert got['body_f1_macro'] == pytest.approx(body_macro, abs=1e-9)
  assert got['f1_mean'] == pytest.approx(
      (action_micro + action_macro + body_micro + body_macro) / 4, abs=1e-9)
  np.testing.assert_array_equal(got['body_confusion_matrix'],
                                skm.confusion_matrix(yb, pb, labels=np.arange(7)))


def test_bad_inputs_raise_value_error():
  scores = np.zeros((4, 3))
  with pytest.raises(ValueError, match=r'\(N, C\)'):
    M.classification_metrics(np.zeros(4), np.zeros(4, int))
  with pytest.raises(ValueError, match=r'non-empty'):
    M.classification_metrics(np.zeros((0, 3)), np.zeros(0, int))
  with pytest.raises(ValueError, match=r'shape \(4,\)'):
    M.classification_metrics(scores, np.zeros(3, int))
  with pytest.raises(ValueError, match=r'\[0, 3\).*\[3\]'):
    M.classification_metrics(scores, np.array([0, 1, 2, 3]))
  with pytest.raises(ValueError, match='integers'):
    M.classification_metrics(scores, np.zeros(4))
  with pytest.raises(ValueError, match='0/1'):
    M.classification_metrics(scores, np.zeros(4, int), mask=np.array([0, 1, 2, 1]))
  with pytest.raises(ValueError, match='no valid samples'):
    M.classification_metrics(scores, np.zeros(4, int), mask=np.zeros(4))
  with pytest.raises(ValueError, match='non-finite'):
    M.classification_metrics(np.full((4, 3), np.nan), np.zeros(4, int))
  with pytest.raises(ValueError, match='topk'):
    M.classification_metrics(scores, np.zeros(4, int), topk=(0,))
  with pytest.raises(ValueError, match='3 classes'):
    M.MetricAccumulator(3).update(np.zeros((2, 4)), np.zeros(2, int))
  with pytest.raises(ValueError, match='ma52'):
    M.MetricAccumulator(10, ma52=True)


def test_format_metrics_table_and_scalars():
  got = M.ma52_metrics(np.eye(52)[[0, 5, 51]], np.array([0, 5, 50]))
  table = M.format_metrics_table(got, title='val')
  lines = table.splitlines()
  assert lines[0] == 'val'
  assert any(line.split() == ['top1', '66.67'] for line in lines)
  assert any(line.split() == ['num_samples', '3'] for line in lines)
  assert any(line.split() == ['confusion_matrix', '52x52', 'array'] for line in lines)
  scalars = M.scalar_metrics(got)
  assert 'confusion_matrix' not in scalars and scalars['body_top1'] == 100.0
  assert all(isinstance(v, (int, float)) for v in scalars.values())


def test_routing_statistics_by_hand():
  weights = np.array([[[0.5, 0.5], [1.0, 0.0]],
                      [[0.5, 0.5], [0.2, 0.8]]])          # (N=2, K=2, 2)
  stats = M.routing_statistics(weights, labels=np.array([1, 0]), num_classes=3)
  h = -(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8))
  np.testing.assert_allclose(stats['entropy'], [1.0, h / 2], atol=1e-9)
  np.testing.assert_allclose(stats['near_binary'], [0.0, 0.5])
  np.testing.assert_allclose(stats['st_share'], [0.5, 0.6])
  np.testing.assert_allclose(stats['st_share_by_class'][:2], [[0.5, 0.2], [0.5, 1.0]])
  assert np.isnan(stats['st_share_by_class'][2]).all()


def test_routing_seed_spread_by_hand():
  # hand: 0, 1, 0.5 -> sample std 0.5; head never moves; entropy 0.2, 0.4, 0.6 -> std 0.2.
  out = M.routing_seed_spread([[0.0, 0.5], [1.0, 0.5], [0.5, 0.5]], [0.2, 0.4, 0.6])
  np.testing.assert_allclose(out['st_share_seed_std'], [0.5, 0.0])
  assert out['st_share_seed_std_mean'] == pytest.approx(0.25)
  assert out['entropy_mean'] == pytest.approx(0.4)
  assert out['entropy_seed_std'] == pytest.approx(0.2)
  one = M.routing_seed_spread([[0.3, 0.7]], [0.1])
  assert one['st_share_seed_std_mean'] == 0.0 and one['entropy_seed_std'] == 0.0
  with pytest.raises(ValueError, match=r'st_share must be \(S, K\)'):
    M.routing_seed_spread([0.3, 0.7], [0.1, 0.2])
