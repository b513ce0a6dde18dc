"""Evaluation metrics and challenge submission files (host side, numpy).

Everything here runs on the accumulated scores and labels of a whole evaluation, on the host:
gather the global arrays first (e.g. `jax.experimental.multihost_utils.process_allgather`).

Conventions (DATA_FORMATS.md Sections 1 and 2):

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
* MA-52 body labels are always derived from action labels through `MA52_BODY_GROUPS`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# MA-52 body-level groups (DATA_FORMATS.md Section 2): (name, first action, last action), inclusive.
# The body label of action a is the index of the group whose range holds a.
MA52_BODY_GROUPS: tuple[tuple[str, int, int], ...] = (
    ('body', 0, 4),
    ('head', 5, 10),
    ('upper_limb', 11, 23),
    ('lower_limb', 24, 31),
    ('body_hand', 32, 37),
    ('head_hand', 38, 47),
    ('leg_hand', 48, 51),
)
MA52_NUM_ACTIONS = 52
MA52_NUM_BODY = len(MA52_BODY_GROUPS)
MA52_BODY_NAMES: tuple[str, ...] = tuple(name for name, _, _ in MA52_BODY_GROUPS)


def _build_action_to_body() -> np.ndarray:
  table = np.full((MA52_NUM_ACTIONS,), -1, np.int64)
  for body, (name, first, last) in enumerate(MA52_BODY_GROUPS):
    table[first:last + 1] = body
  if (table < 0).any():
    raise ValueError(f'MA52_BODY_GROUPS leaves actions {np.flatnonzero(table < 0)} without a group')
  return table


_MA52_ACTION_TO_BODY = _build_action_to_body()
# (52, 7) one-hot membership: action probabilities @ this = body-group probabilities.
_MA52_MEMBERSHIP = np.eye(MA52_NUM_BODY, dtype=np.float64)[_MA52_ACTION_TO_BODY]

SUBMISSION_TOPK = 5


# ----------------------------------------------------------------------------- input checks


def _check_scores(scores: Any, name: str = 'scores') -> np.ndarray:
  scores = np.asarray(scores)
  if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
    raise ValueError(f'{name} must be a non-empty (N, C) array, got shape {scores.shape}')
  if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
    raise ValueError(f'{name} must be numeric, got dtype {scores.dtype}')
  return scores


def _check_labels(labels: Any, n: int, name: str = 'labels') -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f'{name} must have shape ({n},), got {labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name} must be integers, got dtype {labels.dtype}')
  return labels.astype(np.int64)


def _check_mask(mask: Any, n: int) -> np.ndarray:
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


def _check_in_range(labels: np.ndarray, num_classes: int, name: str = 'labels') -> None:
  bad = (labels < 0) | (labels >= num_classes)
  if bad.any():
    raise ValueError(
        f'{name} must lie in [0, {num_classes}), got {np.unique(labels[bad])[:5]} '
        f'(first at sample {int(np.flatnonzero(bad)[0])})')


def _check_finite(scores: np.ndarray, name: str = 'scores') -> None:
  if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(scores).all():
    row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
    raise ValueError(f'{name} hold non-finite values (first at sample {row}: {scores[row][:5]}...)')


def _check_topk(topk: Sequence[int]) -> tuple[int, ...]:
  topk = tuple(topk)
  if not topk or any(not isinstance(k, (int, np.integer)) or k < 1 for k in topk):
    raise ValueError(f'topk must be a non-empty sequence of positive ints, got {topk}')
  return tuple(int(k) for k in topk)


def _check_probabilities(probs: Any, num_classes: int | None = None) -> np.ndarray:
  """(N, C) rows of non-negative values summing to 1 (softmax outputs), as float64."""
  probs = _check_scores(probs, 'probs').astype(np.float64)
  if num_classes is not None and probs.shape[1] != num_classes:
    raise ValueError(f'probs must have {num_classes} columns, got shape {probs.shape}')
  _check_finite(probs, 'probs')
  sums = probs.sum(axis=1)
  # Loose tolerance: bfloat16 softmax outputs are off by up to ~1e-2 per row.
  bad = (probs < 0).any(axis=1) | (np.abs(sums - 1.0) > 2e-2)
  if bad.any():
    row = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f'probs must be probabilities (rows >= 0 summing to 1); sample {row} sums to '
        f'{sums[row]:.4f} (pass softmax(logits), not logits)')
  return probs


def _check_ids(clip_ids: Sequence[str], n: int) -> list[str]:
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
  scores = _check_scores(scores)
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
  """MA-52 F1_mean (DATA_FORMATS.md Section 2): the mean of the four F1 scores."""
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
  return _MA52_ACTION_TO_BODY[actions]


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


def ma52_body_topk(probs: Any, k: int = SUBMISSION_TOPK) -> np.ndarray:
  """Ranked MA-52 body groups for the submission: (N, 52) probabilities -> (N, min(k, 7)).

  Rank 1 is the group of the top-1 action, so the body top-1 the server scores always equals the
  body label derived from the action prediction (the rule of DATA_FORMATS.md Section 2). The other
  groups follow by descending summed action probability, P(group) = sum of P(action in group);
  ties go to the lower group index. Each group appears once.
  """
  probs = _check_probabilities(probs, MA52_NUM_ACTIONS)
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}')
  group_probs = probs @ _MA52_MEMBERSHIP  # (N, 7)
  first = _MA52_ACTION_TO_BODY[topk_indices(probs, 1)[:, 0]]
  # Lift the top-1 action's group above every other, keep the rest in summed-probability order.
  group_probs[np.arange(len(first)), first] = np.inf
  return topk_indices(group_probs, k)


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
    self.topk = _check_topk(topk)
    self.ma52 = ma52
    self.reset()

  def reset(self) -> None:
    self._cm = np.zeros((self.num_classes, self.num_classes), np.int64)
    self._hits = {k: 0 for k in self.topk}

  def update(self, scores: Any, labels: Any, mask: Any | None = None) -> None:
    """Adds one batch: scores (B, C), labels (B,) ints, mask (B,) 0/1 or None (all valid)."""
    scores = _check_scores(scores)
    if scores.shape[1] != self.num_classes:
      raise ValueError(f'scores must have {self.num_classes} classes, got shape {scores.shape}')
    labels = _check_labels(labels, scores.shape[0])
    keep = _check_mask(mask, scores.shape[0])
    scores, labels = scores[keep], labels[keep]
    if not len(labels):
      return
    _check_in_range(labels, self.num_classes)
    _check_finite(scores)
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
  scores = _check_scores(scores)
  acc = MetricAccumulator(scores.shape[1], topk=topk)
  acc.update(scores, labels, mask)
  return acc.compute()


def ma52_metrics(scores: Any, labels: Any, *, mask: Any | None = None,
                 topk: Sequence[int] = (1, 5)) -> dict[str, Any]:
  """MA-52 official metrics: `classification_metrics` plus `ma52_body_metrics` (scores (N, 52))."""
  scores = _check_scores(scores)
  if scores.shape[1] != MA52_NUM_ACTIONS:
    raise ValueError(f'MA-52 scores must have {MA52_NUM_ACTIONS} classes, got shape {scores.shape}')
  acc = MetricAccumulator(MA52_NUM_ACTIONS, topk=topk, ma52=True)
  acc.update(scores, labels, mask)
  return acc.compute()


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


# ----------------------------------------------------------------------------- submission files


def _write_rows(path: str | os.PathLike, header: Sequence[str] | None,
                rows: Sequence[Sequence[Any]]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, lineterminator='\n')
    if header is not None:
      writer.writerow(header)
    writer.writerows(rows)


def write_imigue_submission(path: str | os.PathLike, clip_names: Sequence[str],
                            scores: Any) -> None:
  """iMiGUE challenge `Submission.csv`: no header, lines `<clip_name>,<predicted_class>`.

  Args:
    path: output file.
    clip_names: N clip names (`<video>_<k>`, e.g. '0187_0'), in the order to write.
    scores: (N, C) logits or probabilities; the predicted class is the 0-based top-1 index
      (0..31, DATA_FORMATS.md Section 1).
  """
  scores = _check_scores(scores)
  _check_finite(scores)
  names = _check_ids(clip_names, scores.shape[0])
  preds = topk_indices(scores, 1)[:, 0]
  _write_rows(path, None, [(name, int(p)) for name, p in zip(names, preds)])


def write_ma52_submission(path: str | os.PathLike, clip_ids: Sequence[str], probs: Any) -> None:
  """MA-52 benchmark `prediction.csv`: header `vid,action_pred_1..5,body_pred_1..5`.

  Args:
    path: output file (the server wants it zipped as prediction.zip; zipping is left to the caller).
    clip_ids: N video file names exactly as in test_list_videos.txt (e.g. 'test0000.mp4'), in
      test-list order.
    probs: (N, 52) action probabilities (softmax outputs). Body ranks: `ma52_body_topk`.
  """
  probs = _check_probabilities(probs, MA52_NUM_ACTIONS)
  ids = _check_ids(clip_ids, probs.shape[0])
  actions = topk_indices(probs, SUBMISSION_TOPK)
  bodies = ma52_body_topk(probs, SUBMISSION_TOPK)
  header = (['vid'] + [f'action_pred_{i + 1}' for i in range(SUBMISSION_TOPK)]
            + [f'body_pred_{i + 1}' for i in range(SUBMISSION_TOPK)])
  rows = [[vid, *map(int, a), *map(int, b)] for vid, a, b in zip(ids, actions, bodies)]
  _write_rows(path, header, rows)


def write_predictions_csv(path: str | os.PathLike, clip_ids: Sequence[str], probs: Any,
                          labels: Any | None = None, k: int = SUBMISSION_TOPK) -> None:
  """Generic per-clip predictions with a header.

  Columns: clip_id, label (empty when labels is None), pred, then for i = 1..min(k, C):
  top{i}, top{i}_prob. Probabilities are written with 6 decimals.

  Args:
    path: output file.
    clip_ids: N clip ids.
    probs: (N, C) class probabilities (softmax outputs).
    labels: optional (N,) true labels in [0, C).
  """
  probs = _check_probabilities(probs)
  ids = _check_ids(clip_ids, probs.shape[0])
  if labels is not None:
    labels = _check_labels(labels, probs.shape[0])
    _check_in_range(labels, probs.shape[1])
  ranked = topk_indices(probs, k)
  top_probs = np.take_along_axis(probs, ranked, axis=1)
  header = ['clip_id', 'label', 'pred']
  for i in range(ranked.shape[1]):
    header += [f'top{i + 1}', f'top{i + 1}_prob']
  rows = []
  for n, clip_id in enumerate(ids):
    row: list[Any] = [clip_id, '' if labels is None else int(labels[n]), int(ranked[n, 0])]
    for c, p in zip(ranked[n], top_probs[n]):
      row += [int(c), f'{p:.6f}']
    rows.append(row)
  _write_rows(path, header, rows)
