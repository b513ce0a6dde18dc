"""Reading a user's own pose recordings into a trained model's joint layout.

Inputs: a folder of OpenPose per-frame JSON (one recording per video in it), a `.npy` array
(T, V, C) with C = the coordinates or the coordinates + a confidence channel, an iMiGUE raw CSV
(`*_light_hand.csv`) or a PYSKL pickle (one recording per clip in it). The joints must be the
model's layout, or convertible to it by joint name (`Layout.map_from`: e.g. OpenPose BODY_25 +
hand tips, `openpose35`, gives `openpose22`); the conversion is printed. The layout of an array
is recognised by its joint count (or named with `input_layout`). Only the readers' public API is
used (`micro_dualnet_jax.data.readers`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers import (
    IMIGUE_RAW_LAYOUT, annotation_to_clip, load_pyskl, presence_confidence, read_openpose_folder,
    read_skeleton_csv)
from micro_dualnet_jax.skeleton import Layout, LayoutError, get_layout, layout_names

# The layout the OpenPose reader assembles every frame in (BODY_25 + five finger tips per hand).
OPENPOSE_FULL_LAYOUT = 'openpose35'


def _array_layout(num_joints: int, channels: int, model_layout: Layout, input_layout: str,
                  source: str) -> Layout:
  """The layout of a (T, V, C) array: named, the model's, or the registered one with V joints."""
  if input_layout:
    layout = get_layout(input_layout)
  elif num_joints == model_layout.num_joints:
    layout = model_layout
  else:
    candidates = [get_layout(n) for n in layout_names()
                  if get_layout(n).num_joints == num_joints
                  and get_layout(n).coord_dims == model_layout.coord_dims]
    if not candidates:
      known = {n: get_layout(n).num_joints for n in layout_names()}
      raise DataFormatError(
          f'{source}: {num_joints} joints matches no registered {model_layout.coord_dims}D '
          f'layout (joint counts: {known}); the model was trained on layout '
          f'{model_layout.name!r} ({model_layout.num_joints} joints)')
    layout = candidates[0]
  if num_joints != layout.num_joints:
    raise DataFormatError(f'{source}: {num_joints} joints, but the layout {layout.name!r} has '
                          f'{layout.num_joints}')
  if channels not in (layout.coord_dims, layout.coord_dims + 1):
    raise DataFormatError(
        f'{source}: {channels} channels per joint; layout {layout.name!r} needs '
        f'{layout.coord_dims} (coordinates) or {layout.coord_dims + 1} (coordinates + confidence)')
  return layout


def to_model_layout(clip: Clip, model_layout: Layout) -> Clip:
  """`clip` converted to the model's layout by joint name; a clear error when it cannot be.

  A conversion is printed as a note.
  """
  if clip.layout == model_layout.name:
    return clip
  index = layout_conversion(get_layout(clip.layout), model_layout, clip.source)
  return dataclasses.replace(clip, keypoints=clip.keypoints[:, index],
                             confidence=clip.confidence[:, index], layout=model_layout.name)


def layout_conversion(source: Layout, model_layout: Layout, where: str, *,
                      note: bool = True) -> np.ndarray:
  """(V,) indices into `source` giving the model's joints; prints the conversion (`note`).

  Raises DataFormatError naming both layouts when `source` cannot be converted.
  """
  problem = None
  if source.coord_dims != model_layout.coord_dims:
    problem = f'the input is {source.coord_dims}D and the model {model_layout.coord_dims}D'
  else:
    try:
      index = model_layout.map_from(source)
    except LayoutError as error:
      problem = str(error)
  if problem is not None:
    raise DataFormatError(
        f'{where}: the input joint layout is {source.name!r} ({source.num_joints} joints) but '
        f'the model was trained on layout {model_layout.name!r} ({model_layout.num_joints} '
        f'joints), and it cannot be converted: {problem}')
  if note and source.name != model_layout.name:
    print(f'note: {where}: converting joint layout {source.name!r} to the model\'s '
          f'{model_layout.name!r} by joint name', flush=True)
  return index


def load_recordings(input_path: str | os.PathLike[str], model_layout: Layout | str, *,
                    input_layout: str = '') -> list[Clip]:
  """Reads pose data into Clips in the model's layout (one per recording).

  Args:
    input_path: an OpenPose JSON folder (one Clip per video), a `.npy` (T, V, C) array, an iMiGUE
      raw `*_light_hand.csv` or a PYSKL pickle (one Clip per clip in it).
    model_layout: the trained model's layout.
    input_layout: the layout of a `.npy` / PYSKL input ('' = recognised by its joint count).

  Returns:
    Clips with keypoints (T, V, C) and confidence (T, V) in the model's layout; an all-zero frame
    has confidence 0 everywhere (a frame with nobody in it).
  """
  model_layout = get_layout(model_layout) if isinstance(model_layout, str) else model_layout
  path = pathlib.Path(input_path)
  if not path.exists():
    raise DataFormatError(f'{path}: input not found')
  if path.is_dir():
    # The reader picks the model's joints by name from BODY_25 + hand tips (and reads the hand
    # keypoints only when the model has finger points). The conversion is checked first and
    # noted once the folder has been read: a folder with no frames gets its own error alone.
    where = f'{path} (OpenPose JSON)'
    layout_conversion(get_layout(OPENPOSE_FULL_LAYOUT), model_layout, where, note=False)
    clips = read_openpose_folder(path, layout=model_layout.name)
    layout_conversion(get_layout(OPENPOSE_FULL_LAYOUT), model_layout, where)
    return clips
  elif path.suffix == '.npy':
    clips = [_read_npy(path, model_layout, input_layout)]
  elif path.suffix == '.csv':
    keypoints, confidence = read_skeleton_csv(path)
    clips = [Clip(clip_id=path.stem.removesuffix('_light_hand'), keypoints=keypoints,
                  confidence=confidence, label=-1, layout=IMIGUE_RAW_LAYOUT, source=str(path)
                  ).validate(get_layout(IMIGUE_RAW_LAYOUT).num_joints)]
  elif path.suffix in ('.pkl', '.pickle'):
    _, annotations = load_pyskl(path)
    if not annotations:
      raise DataFormatError(f'{path}: the PYSKL file holds no clips')
    clips = []
    for i, ann in enumerate(annotations):
      kp = np.asarray(ann.get('keypoint', np.zeros((0, 0, 0, 0))))
      shape = kp.shape if kp.ndim == 4 else (0, 0, 0, 0)
      layout = _array_layout(shape[2], shape[3], model_layout, input_layout,
                             f'{path} [annotation {i}]')
      clips.append(annotation_to_clip(ann, layout=layout.name, labelled=False,
                                      source=f'{path} [annotation {i}]'))
  else:
    raise DataFormatError(
        f'{path}: unknown input; expected an OpenPose JSON folder, a .npy array (T, V, C), an '
        'iMiGUE raw *_light_hand.csv or a PYSKL .pkl')
  return [to_model_layout(clip, model_layout) for clip in clips]


def _axes_hint(shape: tuple[int, ...], model_layout: Layout, input_layout: str) -> str | None:
  """For a (T, V, C) array whose axes do not fit: the order of its axes that does fit (the
  model's layout, or `input_layout`), as a sentence; None when no other order fits."""
  layout = get_layout(input_layout) if input_layout else model_layout
  for order in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
    frames, joints, channels = (shape[i] for i in order)
    if joints == layout.num_joints and channels in (layout.coord_dims, layout.coord_dims + 1) \
        and frames > 0:
      return (f'Its axes may be in another order: np.transpose(array, {order}) gives '
              f'({frames}, {joints}, {channels}), (T, V, C) in layout {layout.name!r}')
  return None


def _read_npy(path: pathlib.Path, model_layout: Layout, input_layout: str) -> Clip:
  try:
    array = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as error:
    raise DataFormatError(f'{path}: not a readable .npy array: {error}') from None
  if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
    raise DataFormatError(f'{path}: expected a numeric (T, V, C) array, got {array.dtype} '
                          f'{array.shape}')
  try:
    layout = _array_layout(array.shape[1], array.shape[2], model_layout, input_layout, str(path))
  except DataFormatError as error:
    hint = _axes_hint(array.shape, model_layout, input_layout)
    if hint is None:
      raise
    raise DataFormatError(f'{error}. {hint}') from None
  array = array.astype(np.float32)
  keypoints = array[..., :layout.coord_dims]
  if array.shape[2] > layout.coord_dims:
    confidence = array[..., layout.coord_dims]
  else:
    confidence = presence_confidence(keypoints)
  keypoints = np.where((confidence > 0)[..., None], keypoints, 0.0)
  return Clip(clip_id=path.stem, keypoints=keypoints, confidence=confidence, label=-1,
              layout=layout.name, source=str(path)).validate(layout.num_joints)


