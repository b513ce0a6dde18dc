"""iMiGUE readers: the raw per-video CSV release and the processed ST-GCN arrays.

docs/data_formats.md, iMiGUE. Both produce `openpose22` clips (the raw CSV's `openpose35` joints are
converted by joint name), so one model config reads either release. TFDS split names: `train`,
`validation` (raw `imigue_skeleton_validate/`, processed `valid_*`) and `test`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers._common import (
    as_int, best_person, check_unique, first_non_finite, load_pickle, read_text)
from micro_dualnet_jax.skeleton import get_layout

IMIGUE_CLASSES: tuple[str, ...] = (
    'turtle neck', 'deep breath', 'touch hat', 'touch face', 'touch forehead', 'cover face',
    'rub eyes', 'touch other face part', 'touch ears', 'bite nails', 'touch chin', 'touch neck',
    'play hair', 'adjust tie', 'touch chest', 'scratch back', 'fold arm', 'tidy sleeve',
    'put arm back', 'move torso', 'sit straight', 'scratch arm', 'rub hand', 'cross finger',
    'minaret hand', 'play things', 'withdraw arms', 'head up', 'bite lip', 'arm akimbo',
    'shake shoulder', 'illustrative')
NUM_CLASSES = len(IMIGUE_CLASSES)
LAYOUT = 'openpose22'
RAW_LAYOUT = 'openpose35'
RAW_SPLIT_DIRS: dict[str, str] = {
    'train': 'imigue_skeleton_train', 'validation': 'imigue_skeleton_validate',
    'test': 'imigue_skeleton_test'}
PROCESSED_SPLIT_PREFIXES: dict[str, str] = {
    'train': 'train', 'validation': 'valid', 'test': 'test'}
# Raw CSV row: frame index, then (x, y, confidence) per joint.
_RAW_COLUMNS = 1 + 3 * 35
# 'illustrative' has two gesture ids in the raw labels.
_ILLUSTRATIVE_IDS = (32, 99)

PathLike = str | os.PathLike[str]


def gesture_to_class(gesture_id: int, where: str = '') -> int:
  """Raw gesture id (1..32 or 99) -> class index 0..31; 32 and 99 are both 'illustrative'."""
  if gesture_id in _ILLUSTRATIVE_IDS:
    return NUM_CLASSES - 1
  if 1 <= gesture_id < NUM_CLASSES:
    return gesture_id - 1
  raise DataFormatError(f'{where}: gesture id {gesture_id} is not one of 1..32 or 99')


# ---------------------------------------------------------------------------------------------
# Raw release (Section 1a).


def _data_lines(path: pathlib.Path, what: str) -> list[str]:
  """Lines of a text file without trailing blank lines; a blank line inside raises (as does a
  missing or unreadable file, naming it as `what`)."""
  lines = read_text(path, what).splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  for i, line in enumerate(lines):
    if not line.strip():
      raise DataFormatError(f'{path}: row {i + 1} is empty')
  return lines


def _diagnose_csv(path: pathlib.Path, lines: Sequence[str], columns: int) -> DataFormatError:
  """Finds the first row numpy could not parse and says what is wrong with it."""
  for i, line in enumerate(lines):
    cells = line.split(',')
    if len(cells) != columns:
      return DataFormatError(
          f'{path}: row {i + 1} has {len(cells)} columns, expected {columns} '
          '(truncated or wrong format?)')
    for j, cell in enumerate(cells):
      try:
        float(cell)
      except ValueError:
        return DataFormatError(f'{path}: row {i + 1}, column {j}: {cell!r} is not a number')
  return DataFormatError(f'{path}: could not be parsed as a numeric CSV')


def read_skeleton_csv(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads a raw `<video>_light_hand.csv`.

  Returns:
    keypoints (F, 35, 2) float32 pixels and confidence (F, 35) float32, one row per video frame
    (`openpose35` order). Missing joints (`0,0,0`) keep confidence 0.
  """
  path = pathlib.Path(path)
  lines = _data_lines(path, 'skeleton file')
  if not lines:
    raise DataFormatError(f'{path}: no rows (empty skeleton file)')
  try:
    table = np.loadtxt(lines, delimiter=',', dtype=np.float64, comments=None, ndmin=2)
  except ValueError:
    raise _diagnose_csv(path, lines, _RAW_COLUMNS) from None
  if table.shape[1] != _RAW_COLUMNS:
    raise DataFormatError(
        f'{path}: row 1 has {table.shape[1]} columns, expected {_RAW_COLUMNS} '
        '(frame index + 35 joints x (x, y, confidence))')
  bad = first_non_finite(table)
  if bad is not None:
    raise DataFormatError(f'{path}: row {bad[0] + 1}, column {bad[1]}: NaN or inf value')
  joints = table[:, 1:].reshape(len(table), 35, 3).astype(np.float32)
  return joints[..., :2], joints[..., 2]


def read_label_csv(path: PathLike) -> list[tuple[int, int, int]]:
  """Reads a raw `<video>_label.csv`: one `(gesture_id, start_frame, end_frame)` per clip row."""
  path = pathlib.Path(path)
  rows = []
  for i, line in enumerate(_data_lines(path, 'label file')):
    cells = [c.strip() for c in line.split(',')]
    if len(cells) != 3:
      raise DataFormatError(
          f'{path}: row {i + 1} has {len(cells)} columns, expected 3 '
          '(gesture_id,start_frame,end_frame)')
    try:
      rows.append(tuple(int(c) for c in cells))
    except ValueError:
      raise DataFormatError(
          f'{path}: row {i + 1}: {line!r} is not three integers') from None
  return rows


def read_raw_video(video_dir: PathLike, split: str = '') -> list[Clip]:
  """Cuts one raw video folder (`<video>/<video>_light_hand.csv` + `_label.csv`) into clips.

  Returns:
    One `openpose22` Clip per label row, id `<video>_<k>` (k = 0-based row), frames
    start..end inclusive; meta holds video, clip_index, start_frame, end_frame, gesture_id, split.
  """
  video_dir = pathlib.Path(video_dir)
  video = video_dir.name
  label_path = video_dir / f'{video}_label.csv'
  labels = read_label_csv(label_path)
  keypoints, confidence = read_skeleton_csv(video_dir / f'{video}_light_hand.csv')
  to22 = get_layout(LAYOUT).map_from(get_layout(RAW_LAYOUT))
  num_frames = len(keypoints)
  clips = []
  for k, (gesture_id, start, end) in enumerate(labels):
    where = f'{label_path}: row {k + 1}'
    label = gesture_to_class(gesture_id, where)
    if start > end:
      raise DataFormatError(f'{where}: start frame {start} is after end frame {end}')
    if start < 0 or end >= num_frames:
      raise DataFormatError(
          f'{where}: clip frames {start}..{end} are outside the video, which has frames '
          f'0..{num_frames - 1}')
    clips.append(Clip(
        clip_id=f'{video}_{k}', keypoints=keypoints[start:end + 1, to22],
        confidence=confidence[start:end + 1, to22], label=label, layout=LAYOUT, source=where,
        meta={'video': video, 'clip_index': k, 'start_frame': start, 'end_frame': end,
              'gesture_id': gesture_id, 'split': split},
    ).validate(len(to22), NUM_CLASSES))
  return clips


def raw_splits(root: PathLike) -> list[str]:
  """Split names whose raw folder (`imigue_skeleton_<...>/`) exists under `root`."""
  return [s for s, d in RAW_SPLIT_DIRS.items() if (pathlib.Path(root) / d).is_dir()]


def read_raw_split(root: PathLike, split: str) -> list[Clip]:
  """All clips of one raw split: every video folder of `root/imigue_skeleton_<split>/`, sorted."""
  if split not in RAW_SPLIT_DIRS:
    raise ValueError(f'unknown iMiGUE split {split!r}; expected one of {list(RAW_SPLIT_DIRS)}')
  split_dir = pathlib.Path(root) / RAW_SPLIT_DIRS[split]
  if not split_dir.is_dir():
    raise DataFormatError(f'{split_dir}: split folder not found')
  videos = sorted(p for p in split_dir.iterdir() if p.is_dir())
  if not videos:
    raise DataFormatError(f'{split_dir}: no video folders')
  # Clip ids `<video>_<k>` are unique because folder names are.
  return [c for v in videos for c in read_raw_video(v, split)]


# ---------------------------------------------------------------------------------------------
# Processed arrays (Section 1b).


def processed_splits(root: PathLike) -> list[str]:
  """Split names whose `<prefix>_data.npy` exists under `root`."""
  return [s for s, p in PROCESSED_SPLIT_PREFIXES.items()
          if (pathlib.Path(root) / f'{p}_data.npy').is_file()]


def _load_processed_labels(path: pathlib.Path, num_samples: int) -> tuple[list[str], list[int]]:
  data = load_pickle(path)
  if not (isinstance(data, (tuple, list)) and len(data) == 2):
    raise DataFormatError(
        f'{path}: expected a pickled tuple (sample_names, labels), got {type(data).__name__}')
  names, labels = list(data[0]), list(data[1])
  if len(names) != len(labels):
    raise DataFormatError(f'{path}: {len(names)} sample names but {len(labels)} labels')
  if len(names) != num_samples:
    raise DataFormatError(
        f'{path}: {len(names)} samples, but the data array has {num_samples}')
  for i, name in enumerate(names):
    if not isinstance(name, str) or not name:
      raise DataFormatError(f'{path}: sample {i} has no string name (got {name!r})')
  check_unique(names, str(path))
  checked = [as_int(label, f'{path} sample {i} ({names[i]!r})') for i, label in enumerate(labels)]
  # A challenge test set withholds its labels: every label -1 reads as an unlabelled split.
  if checked and all(label == -1 for label in checked):
    return names, checked
  for i, label in enumerate(checked):
    if not 0 <= label < NUM_CLASSES:
      raise DataFormatError(f'{path} sample {i} ({names[i]!r}): label {label} outside '
                            f'0..{NUM_CLASSES - 1} (-1 for every sample: an unlabelled split)')
  return names, checked


def _true_length(sample: np.ndarray) -> int:
  """Frames before the zero padding: 1 + the last frame with a non-zero value. sample: (C,T,V,M)."""
  nonzero = np.flatnonzero(np.any(sample != 0, axis=(0, 2, 3)))
  return int(nonzero[-1]) + 1 if len(nonzero) else 0


def read_processed_split(root: PathLike, split: str) -> list[Clip]:
  """Reads `<prefix>_data.npy` (N, 3, T, 22, M) + `<prefix>_label.pkl` into `openpose22` clips.

  The zero padding at the end of each clip is cut off (true length = last frame with any non-zero
  value); of several persons the one with the highest total confidence is kept.
  """
  if split not in PROCESSED_SPLIT_PREFIXES:
    raise ValueError(
        f'unknown iMiGUE split {split!r}; expected one of {list(PROCESSED_SPLIT_PREFIXES)}')
  root = pathlib.Path(root)
  prefix = PROCESSED_SPLIT_PREFIXES[split]
  data_path, label_path = root / f'{prefix}_data.npy', root / f'{prefix}_label.pkl'
  if not data_path.is_file():
    raise DataFormatError(f'{data_path}: data file not found')
  try:
    data = np.load(data_path, mmap_mode='r', allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise DataFormatError(f'{data_path}: not a readable .npy array (truncated?): {e}') from e
  num_joints = get_layout(LAYOUT).num_joints
  if data.ndim != 5 or data.shape[1] != 3 or data.shape[3] != num_joints:
    raise DataFormatError(
        f'{data_path}: expected shape (N, 3, T, {num_joints}, M), got {data.shape}')
  names, labels = _load_processed_labels(label_path, data.shape[0])
  clips = []
  for i, (name, label) in enumerate(zip(names, labels)):
    where = f'{data_path} sample {i} ({name!r})'
    sample = np.asarray(data[i], np.float32)  # (3, T, V, M)
    bad = first_non_finite(sample)
    if bad is not None:
      raise DataFormatError(
          f'{where}: NaN or inf at channel {bad[0]}, frame {bad[1]}, joint {bad[2]}')
    length = _true_length(sample)
    if length == 0:
      raise DataFormatError(f'{where}: empty clip (every value is 0)')
    person_major = sample[:, :length].transpose(3, 1, 2, 0)  # (M, T, V, 3)
    person = best_person(person_major[..., 2])
    clips.append(Clip(
        clip_id=name, keypoints=np.ascontiguousarray(person_major[person, ..., :2]),
        confidence=np.ascontiguousarray(person_major[person, ..., 2]), label=label,
        layout=LAYOUT, source=where,
        meta={'video': name.rsplit('_', 1)[0], 'sample_index': i, 'split': split},
    ).validate(num_joints, NUM_CLASSES))
  return clips
