"""Evaluation metrics (host side, numpy); the files they go into are in `submission.py`.

Everything here runs on the accumulated scores and labels of a whole evaluation, on the host:
gather the global arrays first (e.g. `jax.experimental.multihost_utils.process_allgather`).

Conventions (docs/data_formats.md):

* Scores are (N, C) logits or probabilities; rankings are the same for both. Classes are ranked
  by descending score, ties broken by the lower class index (so top-1 equals `np.argmax`).
* Every scalar metric is in percent, as the papers report them (Top-1 76.88, F1_mean 68.72).
* F1 follows scikit-learn with default arguments: micro F1 over all samples (equal to accuracy for
  single-label data), macro F1 averaged over the union of classes present in the labels or the
  predictions; a class with no true positive scores 0.
* The mean class accuracy averages per-class recall over the classes present in the labels
  (scikit-learn's `balanced_accuracy_score`).
* A mask (N,) of 0/1 drops padded samples (the padding of the last partial evaluation batch)
  exactly; labels and scores of masked samples are not inspected, so padding may carry any label.
* MA-52 body labels are always derived from action labels through `MA52_ACTION_TO_BODY`
  (`data/ma52_classes.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax.data.ma52_classes import (MA52_ACTION_TO_BODY, MA52_BODY_GROUPS,
                                                 NUM_BODY_CLASSES, NUM_CLASSES)

MA52_NUM_ACTIONS = NUM_CLASSES
MA52_NUM_BODY = NUM_BODY_CLASSES
MA52_BODY_NAMES: tuple[str, ...] = MA52_BODY_GROUPS
# (52, 7) one-hot membership: action probabilities @ this = body-group probabilities.
_MA52_MEMBERSHIP = np.eye(MA52_NUM_BODY, dtype=np.float64)[MA52_ACTION_TO_BODY]


# ----------------------------------------------------------------------------- input checks


def check_scores(scores: Any, name: str = 'scores') -> np.ndarray:
  scores = np.asarray(scores)
  if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
    raise ValueError(f'{name} must be a non-empty (N, C) array, got shape {scores.shape}')
  if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
    raise ValueError(f'{name} must be numeric, got dtype {scores.dtype}')
  return scores


def check_labels(labels: Any, n: int, name: str = 'labels') -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f'{name} must have shape ({n},), got {labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name} must be integers, got dtype {labels.dtype}')
  return labels.astype(np.int64)


def check_mask(mask: Any, n: int) -> np.ndarray:
  """Returns a boolean (n,) keep-mask; None keeps every sample."""
  if mask is None:
    return np.ones((n,), bool)
  mask = np.asarray(mask)
  if mask.shape != (n,):
    raise ValueError(f'mask must have shape ({n},), got {mask.shape}')
  if not np.isin(mask, (0, 1)).all():
    bad = np.unique(mask[~np.isin(mask, (0, 1))])
    raise ValueError(f'mask must hold only 0/1 (or bool), got values {bad[:5]}')
  return mask.astype(bool)


def check_in_range(labels: np.ndarray, num_classes: int, name: str = 'labels') -> None:
  bad = (labels < 0) | (labels >= num_classes)
  if bad.any():
    raise ValueError(
        f'{name} must lie in [0, {num_classes}), got {np.unique(labels[bad])[:5]} '
        f'(first at sample {int(np.flatnonzero(bad)[0])})')


def check_finite(scores: np.ndarray, name: str = 'scores') -> None:
  if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(scores).all():
    row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
    raise ValueError(f'{name} hold non-finite values (first at sample {row}: {scores[row][:5]}...)')


def check_topk(topk: Sequence[int]) -> tuple[int, ...]:
  topk = tuple(topk)
  if not topk or any(not isinstance(k, (int, np.integer)) or k < 1 for k in topk):
    raise ValueError(f'topk must be a non-empty sequence of positive ints, got {topk}')
  return tuple(int(k) for k in topk)


def check_probabilities(probs: Any, num_classes: int | None = None) -> np.ndarray:
  """(N, C) rows of non-negative values summing to 1 (softmax outputs), as float64."""
  probs = check_scores(probs, 'probs').astype(np.float64)
  if num_classes is not None and probs.shape[1] != num_classes:
    raise ValueError(f'probs must have {num_classes} columns, got shape {probs.shape}')
  check_finite(probs, 'probs')
  sums = probs.sum(axis=1)
  # Loose tolerance: bfloat16 softmax outputs are off by up to ~1e-2 per row.
  bad = (probs < 0).any(axis=1) | (np.abs(sums - 1.0) > 2e-2)
  if bad.any():
    row = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f'probs must be probabilities (rows >= 0 summing to 1); sample {row} sums to '
        f'{sums[row]:.4f} (pass softmax(logits), not logits)')
  return probs


def check_ids(clip_ids: Sequence[str], n: int) -> list[str]:
  clip_ids = [str(c) for c in clip_ids]
  if len(clip_ids) != n:
    raise ValueError(f'got {len(clip_ids)} clip ids for {n} rows of scores')
  bad = [c for c in clip_ids if not c or any(ch in c for ch in ',\r\n"')]
  if bad:
    raise ValueError(f'clip ids must be non-empty and free of commas, quotes and newlines: {bad[:3]}')
  return clip_ids


# ----------------------------------------------------------------------------- building blocks


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
  """Numerically stable softmax in float64: (..., C) -> (..., C)."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=axis, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(axis=axis, keepdims=True)


def topk_indices(scores: Any, k: int) -> np.ndarray:
  """Top-k classes per row, best first: (N, C) -> (N, min(k, C)) int64.

  Ties go to the lower class index, so column 0 equals `np.argmax(scores, axis=1)`.
  """
  scores = check_scores(scores)
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}')
  order = np.argsort(-scores.astype(np.float64), axis=1, kind='stable')
  return order[:, :min(k, scores.shape[1])].astype(np.int64)


def confusion_counts(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts, rows = true class, columns = predicted class (scikit-learn layout)."""
  flat = labels.astype(np.int64) * num_classes + preds.astype(np.int64)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def f1_from_confusion(cm: np.ndarray) -> tuple[float, float]:
  """(micro F1, macro F1) in percent from a (C, C) confusion matrix.

  Macro F1 averages 2TP / (2TP + FP + FN) over classes present in the labels or predictions
  (scikit-learn `f1_score(average='macro')` with default `labels` and `zero_division`).
  """
  cm = np.asarray(cm, np.int64)
  total = cm.sum()
  if total == 0:
    raise ValueError('confusion matrix is empty (no samples)')
  tp = np.diag(cm).astype(np.float64)
  true_count = cm.sum(axis=1)
  pred_count = cm.sum(axis=0)
  present = (true_count + pred_count) > 0
  f1 = 2 * tp[present] / (true_count[present] + pred_count[present])
  return 100.0 * tp.sum() / total, 100.0 * float(f1.mean())


def metrics_from_confusion(cm: np.ndarray, topk_hits: Mapping[int, int]) -> dict[str, Any]:
  """The metric dict of `classification_metrics` from counts.

  Args:
    cm: (C, C) confusion counts (rows true, columns predicted).
    topk_hits: {k: number of samples whose label is in the top-k}.
  """
  cm = np.asarray(cm, np.int64)
  n = int(cm.sum())
  if n == 0:
    raise ValueError('no valid samples to compute metrics on (all masked or none given)')
  true_count = cm.sum(axis=1)
  present = true_count > 0
  recall = np.diag(cm)[present] / true_count[present]
  f1_micro, f1_macro = f1_from_confusion(cm)
  out: dict[str, Any] = {'num_samples': n}
  for k, hits in sorted(topk_hits.items()):
    out[f'top{k}'] = 100.0 * hits / n
  out['mean_class_accuracy'] = 100.0 * float(recall.mean())
  out['f1_micro'] = f1_micro
  out['f1_macro'] = f1_macro
  out['confusion_matrix'] = cm
  return out


def f1_mean(f1_micro_action: float, f1_macro_action: float, f1_micro_body: float,
            f1_macro_body: float) -> float:
  """MA-52 F1_mean (docs/data_formats.md, MA-52): the mean of the four F1 scores."""
  return (f1_micro_action + f1_macro_action + f1_micro_body + f1_macro_body) / 4.0


# ----------------------------------------------------------------------------- MA-52 body level


def action_to_body(actions: Any) -> np.ndarray:
  """MA-52 action indices (any shape, ints in [0, 52)) -> body-group indices (same shape)."""
  actions = np.asarray(actions)
  if not np.issubdtype(actions.dtype, np.integer):
    raise ValueError(f'actions must be integers, got dtype {actions.dtype}')
  bad = (actions < 0) | (actions >= MA52_NUM_ACTIONS)
  if bad.any():
    raise ValueError(f'MA-52 actions must lie in [0, {MA52_NUM_ACTIONS}), got {np.unique(actions[bad])[:5]}')
  return MA52_ACTION_TO_BODY[actions]


def body_confusion(action_cm: np.ndarray) -> np.ndarray:
  """(52, 52) action confusion counts -> (7, 7) body confusion counts (both labels derived)."""
  action_cm = np.asarray(action_cm, np.int64)
  if action_cm.shape != (MA52_NUM_ACTIONS, MA52_NUM_ACTIONS):
    raise ValueError(f'MA-52 action confusion matrix must be 52x52, got {action_cm.shape}')
  m = _MA52_MEMBERSHIP.astype(np.int64)
  return m.T @ action_cm @ m


def ma52_body_metrics(action_metrics: Mapping[str, Any]) -> dict[str, Any]:
  """MA-52 body-level metrics and F1_mean from the action-level metric dict.

  The body prediction is the group of the top-1 action, so every body metric follows from the
  action confusion matrix. Returns body_top1, body_f1_micro, body_f1_macro, f1_mean (percent) and
  body_confusion_matrix (7, 7).
  """
  cm = body_confusion(action_metrics['confusion_matrix'])
  body_micro, body_macro = f1_from_confusion(cm)
  return {
      'body_top1': 100.0 * float(np.trace(cm)) / float(cm.sum()),
      'body_f1_micro': body_micro,
      'body_f1_macro': body_macro,
      'f1_mean': f1_mean(action_metrics['f1_micro'], action_metrics['f1_macro'], body_micro,
                         body_macro),
      'body_confusion_matrix': cm,
  }


# ----------------------------------------------------------------------------- metric entry points


class MetricAccumulator:
  """Streams per-batch scores into confusion counts and top-k hits; `compute()` gives the dict.

  Memory is O(C^2) whatever the evaluation size: nothing per sample is kept.

      acc = MetricAccumulator(num_classes=52, ma52=True)
      for batch in eval_batches:
        acc.update(logits, batch['label'], batch['mask'])
      metrics = acc.compute()
  """

  def __init__(self, num_classes: int, *, topk: Sequence[int] = (1, 5), ma52: bool = False):
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
      raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
    if ma52 and num_classes != MA52_NUM_ACTIONS:
      raise ValueError(f'ma52=True needs num_classes={MA52_NUM_ACTIONS}, got {num_classes}')
    self.num_classes = int(num_classes)
    self.topk = check_topk(topk)
    self.ma52 = ma52
    self.reset()

  def reset(self) -> None:
    self._cm = np.zeros((self.num_classes, self.num_classes), np.int64)
    self._hits = {k: 0 for k in self.topk}

  def update(self, scores: Any, labels: Any, mask: Any | None = None) -> None:
    """Adds one batch: scores (B, C), labels (B,) ints, mask (B,) 0/1 or None (all valid)."""
    scores = check_scores(scores)
    if scores.shape[1] != self.num_classes:
      raise ValueError(f'scores must have {self.num_classes} classes, got shape {scores.shape}')
    labels = check_labels(labels, scores.shape[0])
    keep = check_mask(mask, scores.shape[0])
    scores, labels = scores[keep], labels[keep]
    if not len(labels):
      return
    check_in_range(labels, self.num_classes)
    check_finite(scores)
    ranked = topk_indices(scores, max(self.topk))
    # Position of the label in the ranking (ranked width if absent).
    match = ranked == labels[:, None]
    rank = np.where(match.any(axis=1), match.argmax(axis=1), ranked.shape[1])
    for k in self.topk:
      self._hits[k] += int((rank < k).sum())
    self._cm += confusion_counts(labels, ranked[:, 0], self.num_classes)

  def compute(self) -> dict[str, Any]:
    """The metric dict (see `classification_metrics`; with ma52, also `ma52_body_metrics`)."""
    out = metrics_from_confusion(self._cm, self._hits)
    if self.ma52:
      out.update(ma52_body_metrics(out))
    return out


def classification_metrics(scores: Any, labels: Any, *, mask: Any | None = None,
                           topk: Sequence[int] = (1, 5)) -> dict[str, Any]:
  """Classification metrics of a whole evaluation.

  Args:
    scores: (N, C) logits or probabilities.
    labels: (N,) ints in [0, C) (only where mask is 1).
    mask: (N,) 0/1 or bool; 0 drops a sample (batch padding). None keeps all.
    topk: the k of the top-k accuracies; k > C counts as k = C (the key keeps the asked k).

  Returns:
    {'num_samples': int, 'top1', 'top5' (one per k), 'mean_class_accuracy', 'f1_micro',
    'f1_macro': float percent, 'confusion_matrix': (C, C) int64}.
  """
  scores = check_scores(scores)
  acc = MetricAccumulator(scores.shape[1], topk=topk)
  acc.update(scores, labels, mask)
  return acc.compute()


def ma52_metrics(scores: Any, labels: Any, *, mask: Any | None = None,
                 topk: Sequence[int] = (1, 5)) -> dict[str, Any]:
  """MA-52 official metrics: `classification_metrics` plus `ma52_body_metrics` (scores (N, 52))."""
  scores = check_scores(scores)
  if scores.shape[1] != MA52_NUM_ACTIONS:
    raise ValueError(f'MA-52 scores must have {MA52_NUM_ACTIONS} classes, got shape {scores.shape}')
  acc = MetricAccumulator(MA52_NUM_ACTIONS, topk=topk, ma52=True)
  acc.update(scores, labels, mask)
  return acc.compute()


# How an eval split is scored (`DatasetSpec.scorer` names one).
SCORERS = {'classification': classification_metrics, 'ma52': ma52_metrics}


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
  """The scalar entries of a metric dict (drops confusion matrices), e.g. for JSON logging."""
  return {k: (int(v) if isinstance(v, (int, np.integer)) else float(v))
          for k, v in metrics.items() if np.ndim(v) == 0}


def format_metrics_table(metrics: Mapping[str, Any], title: str | None = None) -> str:
  """A two-column text table of the scalar metrics; arrays are listed by shape."""
  rows = []
  for key, value in metrics.items():
    if np.ndim(value) == 0:
      v = value.item() if isinstance(value, np.generic) else value
      text = f'{v:d}' if isinstance(v, int) else f'{v:.2f}'
    else:
      text = 'x'.join(str(d) for d in np.shape(value)) + ' array'
    rows.append((key, text))
  if not rows:
    raise ValueError('metrics is empty')
  width_k = max(len('metric'), *(len(k) for k, _ in rows))
  width_v = max(len('value'), *(len(v) for _, v in rows))
  rule = '-' * (width_k + width_v + 3)
  lines = [title] if title else []
  lines += [f'{"metric":<{width_k}}   {"value":>{width_v}}', rule]
  lines += [f'{k:<{width_k}}   {v:>{width_v}}' for k, v in rows]
  return '\n'.join(lines)


def routing_seed_spread(st_share: Any, entropy_mean: Any) -> dict[str, Any]:
  """How much the router's choices move from seed to seed (one trained run per seed).

  Args:
    st_share: (S, K) each seed's mean a_st per entity (`routing_statistics`' 'st_share').
    entropy_mean: (S,) each seed's mean routing entropy in bits.

  Returns:
    'st_share_seed_std' (K,): the sample std over seeds of each entity's ST share (0 when S = 1);
    'st_share_seed_std_mean', its mean over entities; 'entropy_mean' and 'entropy_seed_std'.
  """
  st_share = np.asarray(st_share, np.float64)
  entropy_mean = np.asarray(entropy_mean, np.float64)
  if st_share.ndim != 2 or entropy_mean.shape != st_share.shape[:1]:
    raise ValueError(f'st_share must be (S, K) and entropy_mean (S,), got {st_share.shape} '
                     f'and {entropy_mean.shape}')
  several = len(st_share) > 1
  spread = st_share.std(0, ddof=1) if several else np.zeros(st_share.shape[1])
  return {'st_share_seed_std': spread, 'st_share_seed_std_mean': float(spread.mean()),
          'entropy_mean': float(entropy_mean.mean()),
          'entropy_seed_std': float(entropy_mean.std(ddof=1)) if several else 0.0}


def routing_statistics(weights: Any, labels: Any | None = None,
                       num_classes: int | None = None) -> dict[str, Any]:
  """How decided the entity router is, and which path each body part takes per class.

  Args:
    weights: (N, K, 2) routing weights [a_st, a_ts] per clip and entity.
    labels: optional (N,) classes (0..num_classes-1; -1 rows are left out of the per-class table).
    num_classes: C, for the per-class table.

  Returns:
    'entropy' (K,): the mean entropy of [a_st, a_ts] per entity in bits (1 = an even 0.5 / 0.5
    blend, 0 = one path only); 'entropy_mean'; 'near_binary' (K,): the share of clips whose
    larger weight exceeds 0.95; 'st_share' (K,): the mean a_st; and with labels
    'st_share_by_class' (C, K), the mean a_st of each class's clips (NaN for an absent class).
  """
  weights = np.asarray(weights, np.float64)
  if weights.ndim != 3 or weights.shape[-1] != 2:
    raise ValueError(f'weights must be (N, K, 2), got {weights.shape}')
  p = np.clip(weights, 1e-12, 1.0)
  entropy = -(p * np.log2(p)).sum(-1)                                   # (N, K)
  out: dict[str, Any] = {
      'entropy': entropy.mean(0), 'entropy_mean': float(entropy.mean()),
      'near_binary': (weights.max(-1) > 0.95).mean(0), 'st_share': weights[..., 0].mean(0)}
  if labels is not None:
    labels = np.asarray(labels)
    num_classes = int(num_classes if num_classes is not None else labels.max() + 1)
    keep = labels >= 0
    out['st_share_by_class'] = class_routing_means(weights[keep, :, 0], labels[keep],
                                                   num_classes)
  return out


def class_routing_means(st_share: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Per-class mean of (N, K) ST shares -> (num_classes, K); NaN for classes without samples."""
  sums = np.zeros((num_classes, st_share.shape[1]))
  np.add.at(sums, labels, st_share)
  counts = np.bincount(labels, minlength=num_classes)[:, None]
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(counts > 0, sums / counts, np.nan)
