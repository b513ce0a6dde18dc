"""PYSKL pickle reader (docs/data_formats.md, PYSKL).

A PYSKL file is either `{'split': {name: [frame_dir, ...]}, 'annotations': [clip, ...]}` or a bare
list of clip dicts. Each clip dict holds `frame_dir`, `label`, `total_frames`, `keypoint`
(M, T, V, C) and, for 2D data, `keypoint_score` (M, T, V).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers._common import (
    as_int, best_person, check_unique, first_non_finite, load_pickle, presence_confidence)
from micro_dualnet_jax.skeleton import get_layout


def load_pyskl(
    path: str | os.PathLike[str]) -> tuple[dict[str, list[str]] | None, list[dict[str, Any]]]:
  """Loads a PYSKL pickle.

  Returns:
    (split, annotations): `split` maps split names to frame_dir lists, or None for a bare list.
  """
  data = load_pickle(path)
  if isinstance(data, Mapping):
    if 'annotations' not in data:
      raise DataFormatError(
          f'{path}: a PYSKL dict needs an "annotations" key, found {sorted(map(str, data))}')
    split = data.get('split')
    if split is not None and not isinstance(split, Mapping):
      raise DataFormatError(f'{path}: "split" must be a dict of lists, got {type(split).__name__}')
    annotations = data['annotations']
    split = None if split is None else {str(k): list(v) for k, v in split.items()}
  else:
    split, annotations = None, data
  if not isinstance(annotations, (list, tuple)):
    raise DataFormatError(
        f'{path}: expected a list of clip dicts, got {type(annotations).__name__}')
  for i, ann in enumerate(annotations):
    if not isinstance(ann, Mapping):
      raise DataFormatError(f'{path}: annotation {i} is a {type(ann).__name__}, not a dict')
  return split, list(annotations)


def annotation_to_clip(
    ann: Mapping[str, Any], *, layout: str, source: str, num_classes: int | None = None,
    labelled: bool = True) -> Clip:
  """Turns one PYSKL clip dict into a `Clip` of the person with the highest total score.

  Args:
    ann: the clip dict (`frame_dir`, `label`, `keypoint` (M, T, V, C), `keypoint_score` (M, T, V)
      required when C = 2, optional when C = 3; `total_frames` checked against T when present).
    layout: joint layout name; V and C are checked against it.
    source: file name (and index) for error messages.
    num_classes: when given, labels outside 0..num_classes-1 raise.
    labelled: False for splits whose labels are withheld: the clip gets label -1.

  Returns:
    A validated Clip with keypoints (T, V, C) float32 and confidence (T, V) float32. 3D data without
    scores gets confidence 1 where the joint is not all-zero.
  """
  lay = get_layout(layout)
  clip_id = ann.get('frame_dir')
  where = f'{source} (clip {clip_id!r})'
  if not isinstance(clip_id, str) or not clip_id:
    raise DataFormatError(f'{source}: clip has no "frame_dir" string id (got {clip_id!r})')
  if 'keypoint' not in ann:
    raise DataFormatError(f'{where}: no "keypoint" array')
  kp = np.asarray(ann['keypoint'])
  if kp.ndim != 4 or kp.shape[-1] not in (2, 3):
    raise DataFormatError(f'{where}: keypoint must be (M, T, V, 2|3), got shape {kp.shape}')
  m, t, v, c = kp.shape
  if v != lay.num_joints:
    raise DataFormatError(
        f'{where}: {v} joints, but the layout {layout!r} has {lay.num_joints}')
  if c != lay.coord_dims:
    raise DataFormatError(
        f'{where}: {c} coordinate channels, but the layout {layout!r} is {lay.coord_dims}D')
  if m == 0 or t == 0:
    raise DataFormatError(f'{where}: empty clip (keypoint shape {kp.shape})')
  if 'keypoint_score' in ann:
    score = np.asarray(ann['keypoint_score'])
    if score.shape != kp.shape[:3]:
      raise DataFormatError(
          f'{where}: keypoint_score shape {score.shape} does not match keypoint {kp.shape[:3]}')
  elif c == 2:
    raise DataFormatError(f'{where}: 2D keypoints need a "keypoint_score" array (M, T, V)')
  else:
    score = np.stack([presence_confidence(p) for p in kp])
  if 'total_frames' in ann and as_int(ann['total_frames'], where, 'total_frames') != t:
    raise DataFormatError(
        f'{where}: total_frames is {ann["total_frames"]} but keypoint has {t} frames')
  person = best_person(score)
  keypoints = kp[person].astype(np.float32)
  confidence = score[person].astype(np.float32)
  for name, arr in (('keypoint', keypoints), ('keypoint_score', confidence)):
    bad = first_non_finite(arr)
    if bad is not None:
      raise DataFormatError(
          f'{where}: NaN or inf in {name} of person {person} at frame {bad[0]}, joint {bad[1]}')
  if labelled:
    if 'label' not in ann:
      raise DataFormatError(f'{where}: no "label"')
    label = as_int(ann['label'], where)
    if label < 0 or (num_classes is not None and label >= num_classes):
      allowed = f'0..{num_classes - 1}' if num_classes is not None else 'non-negative labels'
      raise DataFormatError(f'{where}: label {label} outside {allowed}')
  else:
    label = -1
  meta = {k: ann[k] for k in ('img_shape', 'original_shape') if k in ann}
  meta['person'] = person
  meta['num_persons'] = m
  return Clip(clip_id=clip_id, keypoints=keypoints, confidence=confidence, label=label,
              layout=layout, source=source, meta=meta).validate(lay.num_joints, num_classes)


def read_pyskl(
    path: str | os.PathLike[str], *, layout: str, split: str | None = None,
    num_classes: int | None = None, labelled: bool = True) -> list[Clip]:
  """Reads the clips of a PYSKL pickle.

  Args:
    path: the pickle file.
    layout: joint layout of the data (e.g. 'coco17', 'openpose28', 'kinect25').
    split: for dict files, the split to read (clips in the split list's order); None reads every
      annotation. A bare-list file has no splits, so naming one is an error.
    num_classes: when given, labels are checked against it.
    labelled: False marks every clip unlabelled (label -1).

  Returns:
    Clips in file (or split list) order. Duplicate frame_dirs, split entries without a skeleton and
    malformed clips raise DataFormatError naming the file and clip.
  """
  split_map, annotations = load_pyskl(path)
  ids = [a.get('frame_dir') for a in annotations]
  check_unique(ids, str(path))
  if split is not None:
    if split_map is None:
      raise DataFormatError(
          f'{path}: split {split!r} requested, but the file is a bare list with no splits')
    if split not in split_map:
      raise DataFormatError(
          f'{path}: no split {split!r}; the file has splits {sorted(split_map)}')
    wanted = split_map[split]
    check_unique(wanted, f'{path} split {split!r}')
    by_id = {clip_id: i for i, clip_id in enumerate(ids)}
    missing = [w for w in wanted if w not in by_id]
    if missing:
      raise DataFormatError(
          f'{path}: split {split!r} lists clip {missing[0]!r} that has no skeleton in '
          f'"annotations" ({len(missing)} such clips)')
    order = [by_id[w] for w in wanted]
  else:
    order = list(range(len(annotations)))
  return [annotation_to_clip(annotations[i], layout=layout, source=f'{path} [annotation {i}]',
                             num_classes=num_classes, labelled=labelled) for i in order]
