"""Score-level ensembling of trained runs (e.g. joint, bone, joint-motion and bone-motion streams).

Each run's work directory holds `eval_outputs.npz` (written by train/eval: logits, labels and
clip ids of its eval split, in the split's order, or the released list's for MA-52); members are
matched by clip id. The ensemble score of clip n is the weighted sum of
the members' softmax probabilities,

    p_n = sum_m w_m softmax(logits_{m,n}) / sum_m w_m,

as multi-stream skeleton models report it. Members must have scored the same clips of the same
split with the same labels; anything else is refused by name. A member is a run directory (a
seed folder `seed_<s>/` of a run of several seeds is one too); an unlabelled split (a withheld
test set) gets the submission file and no metrics.

  python main.py --mode=ensemble --config=configs/nwucla.py --workdir=<out> \
      --input=<run_joint>,<run_bone>,<run_joint_motion>=0.5,<run_bone_motion>=0.5
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax import atomic, submission
from micro_dualnet_jax.rundir import EVAL_OUTPUTS_FILE as OUTPUTS_FILE
from micro_dualnet_jax.rundir import RunDir


@dataclasses.dataclass
class RunScores:
  """One member: where it came from, its weight and its eval outputs."""
  workdir: str
  weight: float
  logits: np.ndarray     # (N, C)
  labels: np.ndarray     # (N,)
  clip_ids: np.ndarray   # (N,) str
  eval_split: str


def parse_members(spec: str) -> list[tuple[str, float]]:
  """'dir_a,dir_b=0.5' -> [('dir_a', 1.0), ('dir_b', 0.5)] (weight 1 unless given)."""
  members = []
  for item in filter(None, (part.strip() for part in (spec or '').split(','))):
    path, _, weight = item.partition('=')
    try:
      value = float(weight) if weight else 1.0
    except ValueError:
      raise ValueError(f'ensemble member {item!r}: weight {weight!r} is not a number') from None
    if not np.isfinite(value) or value <= 0:
      raise ValueError(f'ensemble member {item!r}: weight must be a positive number')
    members.append((path, value))
  if len(members) < 2:
    raise ValueError(f'an ensemble needs at least two work directories, got {spec!r} '
                     '(--input=dir_a,dir_b[=weight],...)')
  return members


def member_dataset(workdir: str) -> str:
  """The dataset a member run was trained on (its config.json)."""
  return RunDir(workdir).config().data.name


def load_run(workdir: str, weight: float = 1.0) -> RunScores:
  """Reads `workdir/eval_outputs.npz`; errors name the file and what is missing."""
  run = RunDir(workdir)
  if run.exists():
    run.require_single_run('ensemble')
  path = os.path.join(workdir, OUTPUTS_FILE)
  if not os.path.exists(path):
    raise ValueError(f'{path} not found: train or --mode=eval the run first')
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {name: data[name] for name in data.files}
  except (OSError, ValueError) as error:
    raise ValueError(f'{path} is not a readable eval output: {error}') from error
  missing = {'logits', 'labels', 'clip_ids'} - set(arrays)
  if missing:
    raise ValueError(f'{path} lacks {sorted(missing)}: re-run --mode=eval on {workdir} with '
                     'this version')
  run = RunScores(workdir, weight, np.asarray(arrays['logits'], np.float64),
                  np.asarray(arrays['labels'], np.int64), np.asarray(arrays['clip_ids'], str),
                  str(arrays.get('eval_split', '')))
  if run.logits.ndim != 2 or not run.logits.shape[0] == len(run.labels) == len(run.clip_ids):
    raise ValueError(f'{path}: logits {run.logits.shape}, {len(run.labels)} labels and '
                     f'{len(run.clip_ids)} clip ids do not match')
  if not np.isfinite(run.logits).all():
    raise ValueError(f'{path}: logits contain NaN or inf')
  return run


def combine(runs: Sequence[RunScores]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(probs (N, C), labels (N,), clip_ids (N,)) of the weighted probability mean, in the first
  run's clip order. Refuses members that scored other clips, classes, labels or splits."""
  first = runs[0]
  order = {clip_id: i for i, clip_id in enumerate(first.clip_ids)}
  total = np.zeros_like(first.logits)
  for run in runs:
    name = run.workdir
    if run.logits.shape[1] != first.logits.shape[1]:
      raise ValueError(f'{name} has {run.logits.shape[1]} classes, {first.workdir} has '
                       f'{first.logits.shape[1]}')
    if run.eval_split != first.eval_split:
      raise ValueError(f'{name} scored split {run.eval_split!r}, {first.workdir} scored '
                       f'{first.eval_split!r}')
    if set(run.clip_ids) != set(order) or len(run.clip_ids) != len(order):
      extra = sorted(set(run.clip_ids) ^ set(order))[:3]
      raise ValueError(f'{name} and {first.workdir} scored different clips (e.g. {extra})')
    index = np.array([order[c] for c in run.clip_ids])
    if not np.array_equal(first.labels[index], run.labels):
      raise ValueError(f'{name} and {first.workdir} disagree on the labels of the same clips')
    probs = np.zeros_like(first.logits)
    probs[index] = metrics_lib.softmax(run.logits)
    total += run.weight * probs
  return total / sum(run.weight for run in runs), first.labels, first.clip_ids


def per_class_accuracy(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
  """{class name: recall in percent} from a (C, C) confusion matrix (rows true)."""
  counts = confusion.sum(axis=1)
  return {name: round(100.0 * float(confusion[c, c]) / counts[c], 2) if counts[c] else None
          for c, name in enumerate(class_names)}


def run_ensemble(members: Sequence[tuple[str, float]], output_dir: str, *, dataset: str,
                 class_names: Sequence[str]) -> dict[str, Any]:
  """Combines the members' eval outputs, writes ensemble.json, predictions.csv (and the
  dataset's submission file and its zip) to `output_dir`, and returns the ensemble.json
  content."""
  runs = [load_run(workdir, weight) for workdir, weight in members]
  probs, labels, clip_ids = combine(runs)
  labelled = bool((labels >= 0).all())
  member_rows = []
  for run in runs:
    row = {'workdir': os.path.abspath(run.workdir), 'weight': run.weight}
    if labelled:
      single = metrics_lib.classification_metrics(run.logits, run.labels)
      row.update(top1=single['top1'], top5=single['top5'])
    member_rows.append(row)
  summary: dict[str, Any] = {
      'members': member_rows, 'eval_split': runs[0].eval_split, 'num_clips': int(len(labels)),
      'rule': 'weighted mean of softmax probabilities', 'labelled': labelled,
  }
  if labelled:
    score_fn = (metrics_lib.ma52_metrics if dataset == 'ma52'
                else metrics_lib.classification_metrics)
    result = score_fn(probs, labels)
    summary['ensemble'] = metrics_lib.scalar_metrics(result)
    summary['per_class_accuracy'] = per_class_accuracy(result['confusion_matrix'], class_names)
  os.makedirs(output_dir, exist_ok=True)
  submission.write_run_outputs(dataset, output_dir, list(clip_ids), probs,
                               labels if labelled else None)
  atomic.write_json(os.path.join(output_dir, 'ensemble.json'), summary)
  return summary
