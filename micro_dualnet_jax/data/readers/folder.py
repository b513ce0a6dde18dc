"""Plain-folder reader (docs/own_dataset.md): your own clips, one `.npy` per clip, and labels.csv.

    <folder>/
      labels.csv        header `file,label,split`, then one line per clip
      clips/0001.npy    (T, V, C), or (T, V, C + 1) with the joint confidence last
      ...

`file` is the clip's path relative to the folder (or absolute); its clip id is that path without
`.npy`. `label` is one of the class names the config lists (`data.options.classes`), or empty for
a clip of an unlabelled split (a withheld test set: every clip of the split empty). `split` is a
name such as train, validation or test (val, valid and validate mean validation). Arrays are in
the layout `data.options.layout` (V joints, C = its coordinate count) and the data's units; a
2D array without a confidence channel gets confidence 1 where a joint is not all zero, as do 3D
arrays (docs/data_formats.md).

Every problem is a `DataFormatError` naming labels.csv and its line, or the clip's file: a
missing file, a shape that is not the layout's, a clip of 0 frames, NaN or inf, a confidence
outside [0, 1], an unknown label, a split that is partly unlabelled, a file listed twice.
`check_folder` reads every clip once without keeping it, so that prepare refuses a bad folder
before anything is written.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers._common import first_non_finite, presence_confidence
from micro_dualnet_jax.errors import ConfigError
from micro_dualnet_jax.skeleton import get_layout

LABELS_FILE = 'labels.csv'
COLUMNS = ('file', 'label', 'split')
# Split names people use for the same thing (the same as prepare.SPLIT_ALIASES; this reader
# cannot import prepare, which imports it).
SPLIT_ALIASES = {'val': 'validation', 'valid': 'validation', 'validate': 'validation'}
_SPLIT_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')

PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class Entry:
  """One line of labels.csv: the clip's file, class index (-1: unlabelled), split and id."""
  path: pathlib.Path
  label: int
  split: str
  clip_id: str
  line: int


def labels_path(root: PathLike) -> pathlib.Path:
  return pathlib.Path(root) / LABELS_FILE


def check_classes(classes: Sequence[str] | None) -> list[str]:
  """The class names of `data.options.classes`, checked: a non-empty list of unique strings."""
  if isinstance(classes, str) or not classes or not all(
      isinstance(c, str) and c.strip() == c and c for c in classes):
    raise ConfigError(f'data.options.classes must list the class names (non-empty strings '
                     f'without surrounding spaces), got {classes!r}')
  if len(set(classes)) != len(classes):
    raise ConfigError(f'data.options.classes lists a class twice: {list(classes)}')
  return list(classes)


def read_labels(root: PathLike, classes: Sequence[str]) -> list[Entry]:
  """Reads and checks labels.csv (not the clips): columns, labels, split names, files present,
  no file twice, no split partly unlabelled."""
  path = labels_path(root)
  if not path.is_file():
    raise DataFormatError(f'{path}: not found; a folder dataset needs labels.csv with the '
                          'columns file,label,split (docs/own_dataset.md)')
  index = {name: i for i, name in enumerate(classes)}
  try:
    with open(path, newline='', encoding='utf-8') as f:
      rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if any(
          cell.strip() for cell in row)]
  except (UnicodeDecodeError, csv.Error) as error:
    raise DataFormatError(f'{path}: not a readable CSV file: {error}') from error
  if not rows or tuple(c.strip() for c in rows[0][1]) != COLUMNS:
    header = rows[0][1] if rows else []
    raise DataFormatError(f'{path}: the first line must be the header '
                          f'{",".join(COLUMNS)}, got {",".join(header)!r}')
  entries, seen = [], {}
  for line, row in rows[1:]:
    where = f'{path} line {line}'
    if len(row) != len(COLUMNS):
      raise DataFormatError(f'{where}: {len(row)} fields, expected {len(COLUMNS)} '
                            f'({",".join(COLUMNS)})')
    file, label, split = (cell.strip() for cell in row)
    if not file.endswith('.npy'):
      raise DataFormatError(f'{where}: file {file!r} is not a .npy file')
    if label and label not in index:
      raise DataFormatError(f'{where}: label {label!r} is not one of the classes '
                            f'{list(classes)} (data.options.classes)')
    split = SPLIT_ALIASES.get(split, split)
    if not _SPLIT_NAME.fullmatch(split):
      raise DataFormatError(f'{where}: split {split!r} is not a name (letters, digits and _, '
                            'starting with a letter), e.g. train, validation, test')
    clip_path = pathlib.Path(root) / file
    if not clip_path.is_file():
      raise DataFormatError(f'{where}: {clip_path} not found')
    clip_id = file[:-len('.npy')]
    if clip_id in seen:
      raise DataFormatError(f'{where}: {file} is listed twice (lines {seen[clip_id]} and {line})')
    seen[clip_id] = line
    entries.append(Entry(clip_path, index[label] if label else -1, split, clip_id, line))
  if not entries:
    raise DataFormatError(f'{path}: no clips listed under the header')
  for split in splits_of(entries):
    labels = [e.label for e in entries if e.split == split]
    if -1 in labels and any(label >= 0 for label in labels):
      first = next(e for e in entries if e.split == split and e.label < 0)
      raise DataFormatError(
          f'{path} line {first.line}: split {split!r} has labelled and unlabelled clips; '
          'leave the label empty for every clip of a withheld split, or for none')
  return entries


def splits_of(entries: Sequence[Entry]) -> list[str]:
  """The split names of `entries`, in order of first appearance."""
  return list(dict.fromkeys(e.split for e in entries))


def read_clip(entry: Entry, layout: str) -> Clip:
  """One clip file as a `Clip` in `layout`; a bad array raises DataFormatError naming the file."""
  lay = get_layout(layout)
  v, c = lay.num_joints, lay.coord_dims
  path = entry.path
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise DataFormatError(f'{path}: not a readable .npy array: {error}') from error
  if array.ndim != 3 or array.shape[1] != v or array.shape[2] not in (c, c + 1):
    raise DataFormatError(f'{path}: shape {array.shape}, expected (T, {v}, {c}) or '
                          f'(T, {v}, {c + 1}) (confidence last) for layout {layout!r}')
  if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
    raise DataFormatError(f'{path}: dtype {array.dtype} is not a real number type')
  if array.shape[0] == 0:
    raise DataFormatError(f'{path}: the clip has 0 frames')
  bad = first_non_finite(array)
  if bad is not None:
    raise DataFormatError(f'{path}: NaN or inf at frame {bad[0]}, joint {bad[1]}')
  keypoints = np.asarray(array[..., :c], np.float32)
  if array.shape[2] == c + 1:
    confidence = np.asarray(array[..., c], np.float32)
    outside = np.argwhere((confidence < 0) | (confidence > 1))
    if len(outside):
      frame, joint = outside[0]
      raise DataFormatError(f'{path}: confidence {confidence[frame, joint]} at frame {frame}, '
                            f'joint {joint} is outside [0, 1]')
    keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
  else:
    confidence = presence_confidence(keypoints)
  return Clip(clip_id=entry.clip_id, keypoints=keypoints, confidence=confidence,
              label=entry.label, layout=layout, source=str(path),
              meta={'labels_line': entry.line}).validate(v)


def read_folder_split(root: PathLike, split: str, classes: Sequence[str],
                      layout: str) -> list[Clip]:
  """The clips of `split`, in labels.csv order."""
  entries = [e for e in read_labels(root, classes) if e.split == split]
  if not entries:
    raise ValueError(f'{labels_path(root)} lists no clips of split {split!r}')
  return [read_clip(e, layout) for e in entries]


def check_folder(root: PathLike, classes: Sequence[str], layout: str) -> dict[str, int]:
  """Reads labels.csv and every clip once, keeping none: {split: clips}. Raises
  DataFormatError naming the first problem (module docstring)."""
  entries = read_labels(root, classes)
  for entry in entries:
    read_clip(entry, layout)
  return {split: sum(e.split == split for e in entries) for split in splits_of(entries)}
