"""MA-52 reader: official list files joined with the official OpenPose pickles.

docs/data_formats.md, MA-52. `<split>_list_videos.txt` (`<file_name> <label>`, CRLF or LF, final
newline optional) gives the clips and labels of a split; `MA52_<split>.pkl` (a bare PYSKL list,
`openpose28`) gives the skeletons, joined on the file name stem == `frame_dir`. TFDS split names:
`train`, `validation` (files `val_*`, `MA52_val.pkl`) and `test`.

The test labels are withheld (the benchmark server scores them): the test list carries placeholder
0 labels, so test clips are read as unlabelled, label -1 and body label -1, never as class 0.
"""

from __future__ import annotations

import os
import pathlib


from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.ma52_classes import (
    MA52_ACTION_TO_BODY, MA52_BODY_GROUPS, MA52_CLASSES, NUM_BODY_CLASSES, NUM_CLASSES,
    ma52_body_label)
from micro_dualnet_jax.data.readers._common import check_unique, read_text
from micro_dualnet_jax.data.readers.pyskl import annotation_to_clip, load_pyskl

__all__ = ['MA52_ACTION_TO_BODY', 'MA52_BODY_GROUPS', 'MA52_CLASSES', 'NUM_BODY_CLASSES',
           'NUM_CLASSES', 'LAYOUT', 'ma52_body_label', 'read_label_names', 'read_list_file',
           'read_ma52_split', 'class_names', 'available_splits']

LAYOUT = 'openpose28'
SPLIT_PREFIXES: dict[str, str] = {'train': 'train', 'validation': 'val', 'test': 'test'}
UNLABELLED_SPLITS = ('test',)

PathLike = str | os.PathLike[str]


def _stem(name: str) -> str:
  return name[:-len('.mp4')] if name.endswith('.mp4') else name


def read_list_file(path: PathLike) -> list[tuple[str, int, int]]:
  """Reads `<split>_list_videos.txt`.

  Returns:
    (clip id = the file name as listed, e.g. 'test0000.mp4', label, 1-based line number) per
    line, in file order. The clip id is what the benchmark's prediction.csv must name.
  """
  path = pathlib.Path(path)
  entries = []
  # splitlines() accepts CRLF and LF alike and ignores a missing final newline.
  lines = read_text(path, 'list file').splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  for i, line in enumerate(lines, start=1):
    parts = line.split(' ')
    if len(parts) != 2 or not parts[0]:
      raise DataFormatError(f'{path}: line {i}: expected "<file_name> <label>", got {line!r}')
    try:
      label = int(parts[1])
    except ValueError:
      raise DataFormatError(f'{path}: line {i}: label {parts[1]!r} is not an integer') from None
    if not 0 <= label < NUM_CLASSES:
      raise DataFormatError(f'{path}: line {i}: label {label} outside 0..{NUM_CLASSES - 1}')
    entries.append((parts[0], label, i))
  if not entries:
    raise DataFormatError(f'{path}: the list file is empty')
  seen: dict[str, int] = {}
  for clip_id, _, line in entries:
    if _stem(clip_id) in seen:
      raise DataFormatError(
          f'{path}: line {line}: duplicate clip {clip_id!r} (first on line '
          f'{seen[_stem(clip_id)]})')
    seen[_stem(clip_id)] = line
  return entries


def read_label_names(path: PathLike) -> list[str]:
  """Reads `label_name.txt` (`<index>\\t<name>` per line) into 52 class names, by index."""
  path = pathlib.Path(path)
  names: dict[int, str] = {}
  for i, line in enumerate(read_text(path, 'class name file').splitlines(), start=1):
    if not line.strip():
      continue
    index, sep, name = line.partition('\t')
    try:
      index_int = int(index)
    except ValueError:
      index_int = -1
    if not sep or not 0 <= index_int < NUM_CLASSES or index_int in names:
      raise DataFormatError(
          f'{path}: line {i}: expected "<index 0..{NUM_CLASSES - 1}>\\t<name>" with a new '
          f'index, got {line!r}')
    names[index_int] = name.strip()
  if len(names) != NUM_CLASSES:
    raise DataFormatError(f'{path}: {len(names)} class names, expected {NUM_CLASSES}')
  return [names[i] for i in range(NUM_CLASSES)]


def class_names(root: PathLike) -> list[str]:
  """Class names from `root/label_name.txt` when present, else the released names (`MA52_CLASSES`)."""
  path = pathlib.Path(root) / 'label_name.txt'
  return read_label_names(path) if path.is_file() else list(MA52_CLASSES)


def available_splits(root: PathLike) -> list[str]:
  """Split names whose list file or skeleton pickle exists under `root`."""
  root = pathlib.Path(root)
  return [s for s, p in SPLIT_PREFIXES.items()
          if (root / f'{p}_list_videos.txt').is_file() or (root / f'MA52_{p}.pkl').is_file()]


def read_ma52_split(root: PathLike, split: str) -> list[Clip]:
  """Reads one MA-52 split into `openpose28` clips, in list-file order.

  Every list entry needs exactly one skeleton and every skeleton a list entry; labels in the list
  and the pickle must agree (not checked for the test split, whose labels are placeholders).

  Returns:
    Clips named as in the list file (clip_id 'test0000.mp4'), with meta['body_label'] (derived
    from the action label; -1 for the test split), meta['list_line'] and meta['split'].
  """
  if split not in SPLIT_PREFIXES:
    raise ValueError(f'unknown MA-52 split {split!r}; expected one of {list(SPLIT_PREFIXES)}')
  root = pathlib.Path(root)
  prefix = SPLIT_PREFIXES[split]
  list_path, pkl_path = root / f'{prefix}_list_videos.txt', root / f'MA52_{prefix}.pkl'
  labelled = split not in UNLABELLED_SPLITS
  entries = read_list_file(list_path)
  _, annotations = load_pyskl(pkl_path)
  ids = [_stem(str(a.get('frame_dir', ''))) for a in annotations]
  check_unique(ids, str(pkl_path))
  by_id = {clip_id: i for i, clip_id in enumerate(ids)}
  listed = {_stem(clip_id) for clip_id, _, _ in entries}
  for i, clip_id in enumerate(ids):
    if clip_id not in listed:
      raise DataFormatError(
          f'{pkl_path} [annotation {i}]: skeleton {clip_id!r} has no entry in {list_path}')
  clips = []
  for clip_id, label, line in entries:
    if _stem(clip_id) not in by_id:
      raise DataFormatError(
          f'{list_path}: line {line}: clip {clip_id!r} has no skeleton in {pkl_path}')
    i = by_id[_stem(clip_id)]
    clip = annotation_to_clip(
        {**annotations[i], 'frame_dir': clip_id}, layout=LAYOUT,
        source=f'{pkl_path} [annotation {i}]', num_classes=NUM_CLASSES, labelled=labelled)
    if labelled and clip.label != label:
      raise DataFormatError(
          f'{list_path}: line {line}: clip {clip_id!r} has label {label}, but {pkl_path} '
          f'[annotation {i}] says {clip.label}')
    clip.meta.update(body_label=ma52_body_label(label) if labelled else -1, list_line=line,
                     split=split)
    clips.append(clip)
  return clips
