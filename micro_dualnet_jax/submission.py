"""Per-clip prediction files and the challenge servers' submission files, as the servers take them.

* `predictions.csv` (every dataset): clip id, label, top-k classes with probabilities.
* iMiGUE (MiGA challenge, track 1): `Submission.csv`, no header, one `<clip_name>,<class>` line
  per clip (0-based top-1 class), uploaded as `Submission.zip` with the CSV at the zip root.
* MA-52 (the benchmark server and the MAC challenge): `prediction.csv` with the header
  `vid,action_pred_1..5,body_pred_1..5`, `vid` the video name as in `test_list_videos.txt`
  (`test0000.mp4`), the 5 best actions (0-based), and `body_pred_i` = fine2coarse(action_pred_i)
  (`MA52_ACTION_TO_BODY`; repeats allowed), rows in list order, uploaded as `prediction.zip`
  with the CSV at the zip root. This is what the official writers do (the MAC 2025 starter kit's
  `submit/generate.py`).

`write_run_outputs` is the one dispatch: evaluation and ensembling both call it.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax import atomic
from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax.data.ma52_classes import MA52_ACTION_TO_BODY, NUM_CLASSES as MA52_ACTIONS
from micro_dualnet_jax.rundir import PREDICTIONS_FILE
TOP_K = 5
# dataset -> (submission CSV, the zip the server takes)
SUBMISSIONS = {'imigue': ('Submission.csv', 'Submission.zip'),
               'ma52': ('prediction.csv', 'prediction.zip')}


def _write_rows(path: str | os.PathLike, header: Sequence[str] | None,
                rows: Sequence[Sequence[Any]], lineterminator: str = '\n') -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic.atomic_path(path) as temporary, open(temporary, 'w', newline='') as f:
    writer = csv.writer(f, lineterminator=lineterminator)
    if header is not None:
      writer.writerow(header)
    writer.writerows(rows)


def zip_for_server(csv_path: str | os.PathLike, zip_path: str | os.PathLike) -> str:
  """`zip_path` holding `csv_path` alone, at the zip root (no folder), as the servers take it."""
  zip_path = os.fspath(zip_path)
  with atomic.atomic_path(zip_path) as temporary, \
      zipfile.ZipFile(temporary, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
    archive.write(csv_path, arcname=os.path.basename(csv_path))
  return zip_path


def write_imigue_submission(path: str | os.PathLike, clip_names: Sequence[str],
                            scores: Any) -> None:
  """iMiGUE `Submission.csv`: no header, lines `<clip_name>,<predicted_class>`.

  Args:
    path: output file.
    clip_names: N clip names (`<video>_<k>`, e.g. '0187_0'), in the order to write.
    scores: (N, C) logits or probabilities; the predicted class is the 0-based top-1 index
      (0..31).
  """
  scores = metrics_lib.check_scores(scores)
  metrics_lib.check_finite(scores)
  names = metrics_lib.check_ids(clip_names, scores.shape[0])
  preds = metrics_lib.topk_indices(scores, 1)[:, 0]
  _write_rows(path, None, [(name, int(p)) for name, p in zip(names, preds)])


def write_ma52_submission(path: str | os.PathLike, video_names: Sequence[str],
                          probs: Any) -> None:
  """MA-52 `prediction.csv` (module docstring), with the official writer's CRLF line ends.

  Args:
    path: output file.
    video_names: N video names exactly as in the list file ('test0000.mp4'), in list order.
    probs: (N, 52) action probabilities (softmax outputs).
  """
  probs = metrics_lib.check_probabilities(probs, MA52_ACTIONS)
  names = metrics_lib.check_ids(video_names, probs.shape[0])
  actions = metrics_lib.topk_indices(probs, TOP_K)
  bodies = MA52_ACTION_TO_BODY[actions]
  header = (['vid'] + [f'action_pred_{i + 1}' for i in range(TOP_K)]
            + [f'body_pred_{i + 1}' for i in range(TOP_K)])
  rows = [[name, *map(int, a), *map(int, b)] for name, a, b in zip(names, actions, bodies)]
  _write_rows(path, header, rows, lineterminator='\r\n')


def write_predictions_csv(path: str | os.PathLike, clip_ids: Sequence[str], probs: Any,
                          labels: Any | None = None, k: int = TOP_K) -> None:
  """Generic per-clip predictions with a header.

  Columns: clip_id, label (empty when labels is None), pred, then for i = 1..min(k, C):
  top{i}, top{i}_prob. Probabilities are written with 6 decimals.

  Args:
    path: output file.
    clip_ids: N clip ids.
    probs: (N, C) class probabilities (softmax outputs).
    labels: optional (N,) true labels in [0, C).
  """
  probs = metrics_lib.check_probabilities(probs)
  ids = metrics_lib.check_ids(clip_ids, probs.shape[0])
  if labels is not None:
    labels = metrics_lib.check_labels(labels, probs.shape[0])
    metrics_lib.check_in_range(labels, probs.shape[1])
  ranked = metrics_lib.topk_indices(probs, k)
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


# The challenge files a dataset's predictions make (`DatasetSpec.submission` names one).
WRITERS = {'imigue': write_imigue_submission, 'ma52': write_ma52_submission}


def write_run_outputs(submission: str | None, folder: str | os.PathLike,
                      clip_ids: Sequence[str], probs: np.ndarray,
                      labels: np.ndarray | None) -> list[str]:
  """predictions.csv, and the challenge file `submission` (a key of WRITERS and SUBMISSIONS,
  None for none) with its zip, in `folder`.

  labels: None for an unlabelled split (the file's label column stays empty).
  Returns the paths written.
  """
  folder = os.fspath(folder)
  written = [os.path.join(folder, PREDICTIONS_FILE)]
  write_predictions_csv(written[0], clip_ids, probs, labels=labels)
  if submission is not None:
    csv_name, zip_name = SUBMISSIONS[submission]
    csv_path = os.path.join(folder, csv_name)
    WRITERS[submission](csv_path, clip_ids, probs)
    written += [csv_path, zip_for_server(csv_path, os.path.join(folder, zip_name))]
  return written
