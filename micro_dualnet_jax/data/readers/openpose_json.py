"""Reader for OpenPose per-frame JSON output (docs/data_formats.md, OpenPose JSON).

A folder holds `<video>_<frame:012d>_keypoints.json`, one file per frame, for one or more videos.
Each video becomes one Clip. Per frame the person with the highest total pose score is kept.

Joints: BODY_25 pose (`body25`). When the requested layout has finger points (`openpose35`,
`openpose22`, `openpose28`), each hand contributes 5 of OpenPose's 21 hand points: the finger tips
4, 8, 12, 16, 20 (thumb to little finger) become `<side>_finger_1` .. `<side>_finger_5`, from
`hand_<side>_keypoints_2d` (OpenPose's hand sides are the person's own). Any layout whose joints
are all among these (e.g. `coco17`) can be requested; joints are matched by name.

Frames with an empty `people` list are frames with nobody detected: zero keypoints, zero
confidence, listed in meta['empty_frames'] (0-based clip frame indices), never an error. Frame
numbers must be contiguous: a missing frame file is an error naming it (OpenPose writes every
frame, so a gap means lost files, and padding it would invent data silently).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from micro_dualnet_jax.data.clip import Clip, DataFormatError
from micro_dualnet_jax.data.readers._common import best_person, first_non_finite, read_text
from micro_dualnet_jax.errors import InputError
from micro_dualnet_jax.skeleton import get_layout

FRAME_FILE = re.compile(r'(?P<video>.+)_(?P<frame>\d{12})_keypoints\.json')
# OpenPose hand points kept per hand: the five finger tips, thumb first.
HAND_TIPS: tuple[int, ...] = (4, 8, 12, 16, 20)
# Everything a frame can provide, in this layout's order: BODY_25 + right tips + left tips.
_FULL_LAYOUT = 'openpose35'
_BODY_JOINTS = 25
_HAND_JOINTS = 21
_HAND_KEYS = ('hand_right_keypoints_2d', 'hand_left_keypoints_2d')

PathLike = str | os.PathLike[str]


def frame_files(folder: PathLike) -> dict[str, dict[int, pathlib.Path]]:
  """video name -> {frame number: path} for every `*_keypoints.json` in `folder`."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise DataFormatError(f'{folder}: OpenPose output folder not found')
  videos: dict[str, dict[int, pathlib.Path]] = {}
  for path in sorted(folder.glob('*_keypoints.json')):
    match = FRAME_FILE.fullmatch(path.name)
    if match is None:
      raise DataFormatError(
          f'{path}: expected a file name <video>_<frame:012d>_keypoints.json')
    videos.setdefault(match['video'], {})[int(match['frame'])] = path
  if not videos:
    raise DataFormatError(f'{folder}: no <video>_<frame:012d>_keypoints.json files')
  return videos


def _points(values: Any, count: int, path: pathlib.Path, what: str) -> np.ndarray:
  """A flat [x0, y0, c0, ...] list -> (count, 3) float32; wrong lengths and NaN/inf raise."""
  if not isinstance(values, list):
    raise DataFormatError(f'{path}: {what} is missing or not a list')
  try:
    arr = np.asarray(values, np.float32)
  except (ValueError, TypeError):
    raise DataFormatError(f'{path}: {what} is not a list of numbers') from None
  if arr.shape != (3 * count,):
    raise DataFormatError(
        f'{path}: {what} has {arr.size} values, expected {3 * count} ({count} joints x 3)')
  bad = first_non_finite(arr)
  if bad is not None:
    raise DataFormatError(f'{path}: {what}: NaN or inf at joint {bad[0] // 3}')
  return arr.reshape(count, 3)


def read_frame(path: PathLike, hands: bool) -> np.ndarray | None:
  """One frame file -> (35, 3) float32 `openpose35` (x, y, confidence), or None if nobody is in it.

  Args:
    path: the `_keypoints.json` file.
    hands: read the finger tips (hand keypoints must be present); otherwise they stay zero.
  """
  path = pathlib.Path(path)
  text = read_text(path, 'JSON file')
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataFormatError(f'{path}: not valid JSON (truncated?): {e}') from e
  people = data.get('people') if isinstance(data, Mapping) else None
  if not isinstance(people, list):
    raise DataFormatError(f'{path}: expected an object with a "people" list')
  if not people:
    return None
  poses = []
  for i, person in enumerate(people):
    if not isinstance(person, Mapping):
      raise DataFormatError(f'{path}: people[{i}] is not an object')
    poses.append(_points(person.get('pose_keypoints_2d'), _BODY_JOINTS, path,
                         f'people[{i}].pose_keypoints_2d'))
  chosen = best_person(np.stack(poses)[..., 2])
  frame = np.zeros((get_layout(_FULL_LAYOUT).num_joints, 3), np.float32)
  frame[:_BODY_JOINTS] = poses[chosen]
  if hands:
    for side, key in enumerate(_HAND_KEYS):
      values = people[chosen].get(key)
      if not values:
        raise DataFormatError(
            f'{path}: people[{chosen}] has no {key} (run OpenPose with --hand, or request a '
            'layout without finger points such as body25)')
      start = _BODY_JOINTS + side * len(HAND_TIPS)
      hand = _points(values, _HAND_JOINTS, path, f'people[{chosen}].{key}')
      frame[start:start + len(HAND_TIPS)] = hand[list(HAND_TIPS)]
  return frame


def _video_clip(folder: PathLike, video: str, frames: Mapping[int, pathlib.Path], layout: str,
                label: int, clip_id: str | None) -> Clip:
  """The Clip of one video given its {frame number: path} files (see read_openpose_video)."""
  target = get_layout(layout)
  if target.coord_dims != 2:
    raise InputError(f'OpenPose output is 2D; layout {layout!r} is {target.coord_dims}D')
  index = target.map_from(get_layout(_FULL_LAYOUT))
  first, last = min(frames), max(frames)
  for number in range(first, last + 1):
    if number not in frames:
      raise DataFormatError(
          f'{folder}: frame {number} of video {video!r} is missing '
          f'({video}_{number:012d}_keypoints.json; frames must be contiguous)')
  hands = bool(np.any(index >= _BODY_JOINTS))
  table = np.zeros((last - first + 1, get_layout(_FULL_LAYOUT).num_joints, 3), np.float32)
  empty = []
  for t, number in enumerate(range(first, last + 1)):
    frame = read_frame(frames[number], hands)
    if frame is None:
      empty.append(t)
    else:
      table[t] = frame
  if len(empty) == len(table):
    raise DataFormatError(
        f'{folder}: empty clip: nobody is detected in any frame of video {video!r}')
  table = table[:, index]
  return Clip(clip_id=clip_id or video, keypoints=table[..., :2], confidence=table[..., 2],
              label=label, layout=layout, source=f'{folder}/{video}_*_keypoints.json',
              meta={'video': video, 'first_frame': first, 'empty_frames': empty}
              ).validate(target.num_joints)


def read_openpose_video(
    folder: PathLike, video: str | None = None, *, layout: str = 'body25', label: int = -1,
    clip_id: str | None = None) -> Clip:
  """Reads one video's frame files into a Clip.

  Args:
    folder: the OpenPose `--write_json` output folder.
    video: the video name prefix; None when the folder holds exactly one video.
    layout: output joint layout (2D; joints matched by name, see the module docstring).
    label: class index, or -1 for unlabelled footage.
    clip_id: defaults to the video name.

  Returns:
    Clip with keypoints (T, V, 2) pixels and confidence (T, V); meta: video, first_frame (the
    first frame number), empty_frames (clip frame indices with nobody detected).
  """
  videos = frame_files(folder)
  if video is None:
    if len(videos) != 1:
      raise InputError(f'{folder} holds {len(videos)} videos {sorted(videos)}; name one')
    video = next(iter(videos))
  if video not in videos:
    raise DataFormatError(f'{folder}: no frame files for video {video!r}; found {sorted(videos)}')
  return _video_clip(folder, video, videos[video], layout, label, clip_id)


def read_openpose_folder(folder: PathLike, *, layout: str = 'body25') -> list[Clip]:
  """Every video of an OpenPose output folder as an unlabelled Clip (label -1), sorted by name."""
  videos = frame_files(folder)
  return [_video_clip(folder, v, videos[v], layout, -1, None) for v in sorted(videos)]
