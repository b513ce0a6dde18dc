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

The weights are fixed in advance (1 unless given), or fitted on a held-out split
(`--fit_weights_on`, `fit_weights`): one held-out member per member, in the same order (the same
stream, scored on a split the ensemble is not applied to, e.g. NW-UCLA view 2 from runs trained
on view 1, for members trained on views 1-2 and scored on view 3). The rule: every weight vector
on a grid of the simplex (entries multiples of 1/10 summing to 1, zeros included) and the equal
weights are candidates; the one with the highest held-out Top-1 of the weighted probability mean
wins; ties go to the candidate nearest the equal weights (Euclidean distance), then to the first
in grid order. Top-1 is what the ensemble is judged by, and the tie rule keeps the equal
weights unless the held-out clips show a gain. The weights are then applied to the members' own
outputs unchanged.

  python main.py --mode=ensemble --workdir=<out> --input=<test_joint>,<test_bone> \
      --fit_weights_on=<heldout_joint>,<heldout_bone>
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax import atomic, dirlock, submission
from micro_dualnet_jax.config import DataConfig
from micro_dualnet_jax.data import registry
from micro_dualnet_jax.data.registry import DatasetSpec
from micro_dualnet_jax.errors import InputError
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


# The fitting rule's grid: weights are multiples of 1 / FIT_GRID_DIVISIONS.
FIT_GRID_DIVISIONS = 10
FIT_RULE = ('highest held-out Top-1 over the simplex grid of step 1/10 and the equal weights; '
            'ties to the candidate nearest the equal weights, then the first in grid order')


def parse_members(spec: str, *, weighted: bool = True) -> list[tuple[str, float]]:
  """'dir_a,dir_b=0.5' -> [('dir_a', 1.0), ('dir_b', 0.5)] (weight 1 unless given).

  weighted=False refuses '=w' (the weights are fitted, `fit_weights`).
  """
  members = []
  for item in filter(None, (part.strip() for part in (spec or '').split(','))):
    path, equals, weight = item.partition('=')
    if equals and not weighted:
      raise InputError(f'ensemble member {item!r}: the weights are fitted on the held-out '
                       'split (--fit_weights_on); give the members without =weight')
    try:
      value = float(weight) if weight else 1.0
    except ValueError:
      raise InputError(f'ensemble member {item!r}: weight {weight!r} is not a number') from None
    if not np.isfinite(value) or value <= 0:
      raise InputError(f'ensemble member {item!r}: weight must be a positive number')
    members.append((path, value))
  if len(members) < 2:
    raise InputError(f'an ensemble needs at least two work directories, got {spec!r} '
                     '(--input=dir_a,dir_b[=weight],...)')
  return members


def parse_heldout(spec: str) -> list[str]:
  """'dir_a,dir_b' -> ['dir_a', 'dir_b']: the held-out members (--fit_weights_on), no weights."""
  paths = [part.strip() for part in spec.split(',') if part.strip()]
  for path in paths:
    if '=' in path:
      raise InputError(f'held-out member {path!r}: held-out members take no weight; the weights '
                       'are what is fitted on them')
  return paths


def member_dataset(members: Sequence[tuple[str, float]]) -> DatasetSpec | None:
  """The dataset the member runs were trained on (their config.json; None when no member is a
  run directory, only a folder of eval outputs); members of different datasets are refused."""
  names = {workdir: RunDir(workdir).config().data.name for workdir, _ in members
           if RunDir(workdir).exists()}
  if len(set(names.values())) > 1:
    raise InputError(f'ensemble members were trained on different datasets: {names}')
  return registry.get_spec(next(iter(names.values()))) if names else None


def member_class_names(members: Sequence[tuple[str, float]], data: DataConfig) -> list[str]:
  """The class names of the first member that is a run directory, else those of `data` (the
  command line's dataset)."""
  for workdir, _ in members:
    if RunDir(workdir).exists():
      return RunDir(workdir).class_names()
  return data.class_names


def load_run(workdir: str, weight: float = 1.0) -> RunScores:
  """Reads `workdir/eval_outputs.npz`; errors name the file and what is missing."""
  run = RunDir(workdir)
  if run.exists():
    run.require_single_run('ensemble')
  path = os.path.join(workdir, OUTPUTS_FILE)
  if not os.path.exists(path):
    raise InputError(f'{path} not found: train or --mode=eval the run first')
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {name: data[name] for name in data.files}
  except (OSError, ValueError) as error:
    raise InputError(f'{path} is not a readable eval output: {error}') from error
  missing = {'logits', 'labels', 'clip_ids'} - set(arrays)
  if missing:
    raise InputError(f'{path} lacks {sorted(missing)}: re-run --mode=eval on {workdir} with '
                     'this version')
  run = RunScores(workdir, weight, np.asarray(arrays['logits'], np.float64),
                  np.asarray(arrays['labels'], np.int64), np.asarray(arrays['clip_ids'], str),
                  str(arrays.get('eval_split', '')))
  if run.logits.ndim != 2 or not run.logits.shape[0] == len(run.labels) == len(run.clip_ids):
    raise InputError(f'{path}: logits {run.logits.shape}, {len(run.labels)} labels and '
                     f'{len(run.clip_ids)} clip ids do not match')
  if not np.isfinite(run.logits).all():
    raise InputError(f'{path}: logits contain NaN or inf')
  return run


def combine(runs: Sequence[RunScores]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(probs (N, C), labels (N,), clip_ids (N,)) of the weighted probability mean, in the first
  run's clip order. Refuses members that scored other clips, classes, labels or splits."""
  probs, labels, clip_ids = member_probabilities(runs)
  weights = np.array([run.weight for run in runs], np.float64)
  return np.einsum('m,mnc->nc', weights, probs) / weights.sum(), labels, clip_ids


def member_probabilities(runs: Sequence[RunScores]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(probs (M, N, C), labels (N,), clip_ids (N,)): every member's softmax probabilities in the
  first run's clip order. Refuses members that scored other clips, classes, labels or splits."""
  first = runs[0]
  order = {clip_id: i for i, clip_id in enumerate(first.clip_ids)}
  stacked = np.zeros((len(runs), *first.logits.shape))
  for m, run in enumerate(runs):
    name = run.workdir
    if run.logits.shape[1] != first.logits.shape[1]:
      raise InputError(f'{name} has {run.logits.shape[1]} classes, {first.workdir} has '
                       f'{first.logits.shape[1]}')
    if run.eval_split != first.eval_split:
      raise InputError(f'{name} scored split {run.eval_split!r}, {first.workdir} scored '
                       f'{first.eval_split!r}')
    if set(run.clip_ids) != set(order) or len(run.clip_ids) != len(order):
      extra = sorted(set(run.clip_ids) ^ set(order))[:3]
      raise InputError(f'{name} and {first.workdir} scored different clips (e.g. {extra})')
    index = np.array([order[c] for c in run.clip_ids])
    if not np.array_equal(first.labels[index], run.labels):
      raise InputError(f'{name} and {first.workdir} disagree on the labels of the same clips')
    stacked[m, index] = metrics_lib.softmax(run.logits)
  return stacked, first.labels, first.clip_ids


def simplex_grid(num_members: int, divisions: int = FIT_GRID_DIVISIONS) -> np.ndarray:
  """(G, M) every weight vector whose entries are multiples of 1 / divisions summing to 1,
  G = C(divisions + M - 1, M - 1), in lexicographic order of the entries (the first member's
  weight rising slowest)."""
  def compositions(total: int, parts: int):
    if parts == 1:
      yield (total,)
      return
    for first in range(total + 1):
      for rest in compositions(total - first, parts - 1):
        yield (first, *rest)
  return np.array(list(compositions(divisions, num_members)), np.float64) / divisions


def fit_weights(runs: Sequence[RunScores], divisions: int = FIT_GRID_DIVISIONS
                ) -> tuple[np.ndarray, dict[str, Any]]:
  """Member weights chosen on held-out scores (the rule in the module docstring).

  Args:
    runs: the held-out members (labelled; their own weights are ignored).
    divisions: grid resolution, weights are multiples of 1 / divisions.

  Returns:
    (weights (M,) summing to 1, a report: the rule, the held-out split and clip count, the
    held-out Top-1 of the fitted and of the equal weights, the number of candidates).
  """
  probs, labels, _ = member_probabilities(runs)
  if (labels < 0).any():
    raise InputError(f'{runs[0].workdir} scored an unlabelled split ({runs[0].eval_split!r}); '
                     'weights can only be fitted on labelled clips')
  num_members = len(runs)
  equal = np.full(num_members, 1.0 / num_members)
  candidates = np.concatenate([simplex_grid(num_members, divisions), equal[None]])
  correct = np.zeros(len(candidates), np.int64)
  for start in range(0, len(candidates), 16):   # (16, N, C) at a time bounds the memory
    mixed = np.einsum('gm,mnc->gnc', candidates[start:start + 16], probs)
    correct[start:start + 16] = (mixed.argmax(-1) == labels).sum(-1)
  distance = np.linalg.norm(candidates - equal, axis=1)
  best = min(range(len(candidates)),
             key=lambda g: (-correct[g], round(float(distance[g]), 12), g))
  report = {
      'rule': FIT_RULE, 'heldout_split': runs[0].eval_split,
      'heldout_members': [run.workdir for run in runs],
      'num_heldout_clips': int(len(labels)), 'num_candidates': int(len(candidates)),
      'heldout_top1': 100.0 * correct[best] / len(labels),
      'heldout_top1_equal_weights': 100.0 * correct[-1] / len(labels),
  }
  return candidates[best], report


def per_class_accuracy(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
  """{class name: recall in percent} from a (C, C) confusion matrix (rows true)."""
  counts = confusion.sum(axis=1)
  return {name: round(100.0 * float(confusion[c, c]) / counts[c], 2) if counts[c] else None
          for c, name in enumerate(class_names)}


def _stream(workdir: str) -> str | None:
  """The input stream a member was trained on (its config.json), None when unknown."""
  config = RunDir(workdir).raw_config() if RunDir(workdir).exists() else None
  return ((config or {}).get('augment') or {}).get('stream')


def fitted_weights(runs: Sequence[RunScores], heldout: Sequence[str]
                   ) -> tuple[np.ndarray, dict[str, Any]]:
  """`fit_weights` on the held-out members `heldout` (one per member of `runs`, same order),
  after checking they can stand for them: as many, the same streams where the run
  directories say, the same classes, and none of the clips the weights will be applied to."""
  if len(heldout) != len(runs):
    raise InputError(f'{len(heldout)} held-out members for {len(runs)} ensemble members: give '
                     'one per member, in the same order (--fit_weights_on)')
  heldout_runs = [load_run(workdir) for workdir in heldout]
  for i, (run, held) in enumerate(zip(runs, heldout_runs)):
    streams = _stream(run.workdir), _stream(held.workdir)
    if None not in streams and streams[0] != streams[1]:
      raise InputError(f'member {i + 1}: {run.workdir} is the {streams[0]} stream, its '
                       f'held-out member {held.workdir} the {streams[1]} stream; give the '
                       'held-out members in the order of --input')
    if held.logits.shape[1] != run.logits.shape[1]:
      raise InputError(f'{held.workdir} has {held.logits.shape[1]} classes, {run.workdir} has '
                       f'{run.logits.shape[1]}')
  shared = set(heldout_runs[0].clip_ids) & set(runs[0].clip_ids)
  if heldout_runs[0].eval_split == runs[0].eval_split or shared:
    raise InputError(
        f'the held-out members scored split {heldout_runs[0].eval_split!r} and the members '
        f'{runs[0].eval_split!r}, sharing {len(shared)} clips (e.g. {sorted(shared)[:3]}): '
        'weights must be fitted on clips the ensemble is not scored on')
  return fit_weights(heldout_runs)


def run_ensemble(members: Sequence[tuple[str, float]], output_dir: str, *, spec: DatasetSpec,
                 class_names: Sequence[str], heldout: Sequence[str] | None = None
                 ) -> dict[str, Any]:
  """Combines the members' eval outputs, writes ensemble.json, predictions.csv (and the
  dataset's submission file and its zip) to `output_dir`, and returns the ensemble.json
  content.

  heldout: work directories (or folders of eval outputs) of one held-out member per member,
  in the same order: the weights are fitted on them (`fitted_weights`) instead of the
  members' given ones, and reported under 'weights_fit'.
  """
  runs = [load_run(workdir, weight) for workdir, weight in members]
  fit_report = None
  if heldout:
    weights, fit_report = fitted_weights(runs, heldout)
    runs = [dataclasses.replace(run, weight=float(w)) for run, w in zip(runs, weights)]
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
  if fit_report is not None:
    summary['weights_fit'] = {**fit_report, 'weights': [run.weight for run in runs]}
  if labelled:
    result = metrics_lib.SCORERS[spec.scorer](probs, labels)
    summary['ensemble'] = metrics_lib.scalar_metrics(result)
    summary['per_class_accuracy'] = per_class_accuracy(result['confusion_matrix'], class_names)
  with dirlock.output_folder(output_dir, 'ensembling'):
    submission.write_run_outputs(spec.submission, output_dir, list(clip_ids), probs,
                                 labels if labelled else None)
    atomic.write_json(os.path.join(output_dir, 'ensemble.json'), summary)
  return summary
