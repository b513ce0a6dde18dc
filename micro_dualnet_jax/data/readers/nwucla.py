"""NW-UCLA reader (docs/data_formats.md, NW-UCLA): `all_sqe/aAA_sSS_eEE_vVV.json`, `kinect20`, 3D.

Cross-view protocol: views 1 and 2 are `train` (1,020 clips), view 3 is `test` (464 clips).
`view1` and `view2` split the training views again, for cross-view model selection that never
reads the test view (train on one training view, evaluate on the other).
"""

from __future__ import annotations

import json
import os
import pathlib
import re

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers._common import (
    as_int, first_non_finite, presence_confidence, read_text)
from micro_dualnet_jax.skeleton import get_layout

NWUCLA_CLASSES: tuple[str, ...] = (
    'pick up with one hand', 'pick up with two hands', 'drop trash', 'walk around', 'sit down',
    'stand up', 'donning', 'doffing', 'throw', 'carry')
NUM_CLASSES = len(NWUCLA_CLASSES)
# File-name action ids, in label order: label = ACTION_IDS.index(action id).
ACTION_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
LAYOUT = 'kinect20'
SPLIT_VIEWS: dict[str, tuple[int, ...]] = {
    'train': (1, 2), 'test': (3,), 'view1': (1,), 'view2': (2,)}
_NAME = re.compile(r'a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})')

PathLike = str | os.PathLike[str]


def parse_clip_name(name: str) -> dict[str, int]:
  """`aAA_sSS_eEE_vVV` -> {'action_id', 'subject', 'take', 'view'}; other names raise."""
  match = _NAME.fullmatch(name)
  if match is None:
    raise DataFormatError(f'{name}: file name is not of the form aAA_sSS_eEE_vVV')
  action_id, subject, take, view = map(int, match.groups())
  if action_id not in ACTION_IDS or view not in (1, 2, 3):
    raise DataFormatError(
        f'{name}: action id {action_id} (expected one of {ACTION_IDS}) or view {view} '
        '(expected 1..3) unknown')
  return {'action_id': action_id, 'subject': subject, 'take': take, 'view': view}


def sequence_dir(root: PathLike) -> pathlib.Path:
  """The folder holding the JSON files: `root/all_sqe` or `root` itself."""
  root = pathlib.Path(root)
  return root / 'all_sqe' if (root / 'all_sqe').is_dir() else root


def read_nwucla_file(path: PathLike) -> Clip:
  """Reads one `aAA_sSS_eEE_vVV.json` into a `kinect20` Clip (keypoints (T, 20, 3) metres).

  Confidence is 1 where a joint is not all-zero. Label = json label - 1, and must agree with the
  action id of the file name. meta: action_id, subject, take, view.
  """
  path = pathlib.Path(path)
  meta = parse_clip_name(path.stem)
  text = read_text(path, 'JSON file')
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataFormatError(f'{path}: not valid JSON (truncated?): {e}') from e
  if not isinstance(data, dict) or not {'file_name', 'label', 'skeletons'} <= data.keys():
    raise DataFormatError(f'{path}: expected an object with file_name, label and skeletons')
  if data['file_name'] != path.stem:
    raise DataFormatError(
        f'{path}: file_name {data["file_name"]!r} does not match the file name {path.stem!r}')
  label = as_int(data['label'], str(path)) - 1
  if not 0 <= label < NUM_CLASSES:
    raise DataFormatError(f'{path}: label {label + 1} outside 1..{NUM_CLASSES}')
  if ACTION_IDS[label] != meta['action_id']:
    raise DataFormatError(
        f'{path}: label {label + 1} is action {ACTION_IDS[label]}, but the file name says '
        f'action {meta["action_id"]}')
  num_joints = get_layout(LAYOUT).num_joints
  try:
    keypoints = np.asarray(data['skeletons'], np.float32)
  except (ValueError, TypeError) as e:
    raise DataFormatError(
        f'{path}: skeletons is not a T x {num_joints} x 3 number array: {e}') from e
  if len(keypoints) == 0:
    raise DataFormatError(f'{path}: empty clip (no frames in skeletons)')
  if keypoints.ndim != 3 or keypoints.shape[1:] != (num_joints, 3):
    raise DataFormatError(
        f'{path}: skeletons must be T x {num_joints} x 3, got shape {keypoints.shape}')
  bad = first_non_finite(keypoints)
  if bad is not None:
    raise DataFormatError(f'{path}: NaN or inf at frame {bad[0]}, joint {bad[1]}')
  return Clip(clip_id=path.stem, keypoints=keypoints, confidence=presence_confidence(keypoints),
              label=label, layout=LAYOUT, source=str(path), meta=meta
              ).validate(num_joints, NUM_CLASSES)


def read_nwucla(root: PathLike, split: str) -> list[Clip]:
  """Reads `split` ('train': views 1, 2; 'test': view 3; 'view1', 'view2'), sorted by file name."""
  if split not in SPLIT_VIEWS:
    raise ValueError(f'unknown NW-UCLA split {split!r}; expected one of {list(SPLIT_VIEWS)}')
  folder = sequence_dir(root)
  paths = sorted(folder.glob('*.json'))
  if not paths:
    raise DataFormatError(f'{folder}: no aAA_sSS_eEE_vVV.json files')
  # File names are unique within a folder, so clip ids are too.
  clips = [read_nwucla_file(p) for p in paths
           if parse_clip_name(p.stem)['view'] in SPLIT_VIEWS[split]]
  if not clips:
    raise DataFormatError(f'{folder}: no clips of views {SPLIT_VIEWS[split]} for split {split!r}')
  return clips
