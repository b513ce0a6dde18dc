"""Input pipeline settings: temporal sampling, normalisation, augmentation, input stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.dicts import dataclass_kwargs
from micro_dualnet_jax.errors import ConfigError

STREAMS: tuple[str, ...] = ('joint', 'bone', 'joint_motion', 'bone_motion')
TEMPORAL_SAMPLINGS: tuple[str, ...] = ('segments', 'random')


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Input pipeline settings (hashable, so it can be closed over by a jitted step).

  Attributes:
    num_frames: T, the number of frames the model sees.
    crop_min_ratio: training crops keep a random length in [crop_min_ratio * n, n] of an n-frame
      clip (1.0: always the whole clip).
    temporal_jitter: in training, read a random frame of each of the T segments of the window
      instead of the one nearest its centre (see `frame_indices`): a new, still ordered, frame
      selection every epoch, like the random sorted sampling of the NW-UCLA feeders.
    temporal_sampling: how training reads T frames of its window: 'segments', one frame per
      each of T equal segments (`temporal_jitter` picks which); 'random', T distinct frames of
      the window drawn uniformly at random and kept in order (SkateFormer's sampling; a window
      of fewer than T frames is read as with 'segments'). Evaluation always reads segments.
    rotation: maximum rotation angles in degrees about the (x, y, z) axes, each drawn uniformly in
      [-a, a]; a scalar means the same for every axis. 2D data uses only the z angle (in-plane).
    scale: the skeleton is scaled by a factor drawn uniformly in [1 - scale, 1 + scale].
    shear: every off-diagonal entry of the shear matrix is drawn uniformly in [-shear, shear].
    flip_prob: probability of a horizontal flip (x mirrored, left/right joints swapped).
    joint_dropout: probability that a joint is missing for a whole clip.
    drop_axis_prob: probability that one coordinate axis (drawn uniformly) of a clip is zeroed
      in every frame (SkateFormer's drop-axis).
    drop_joints_prob: probability that a clip loses a block of joints for a run of frames:
      `drop_joints_count` = (lo, hi) joints, drawn uniformly, missing over (lo, hi) consecutive
      sampled frames (`drop_joints_frames`, capped at T) from a random start (SkateFormer's
      drop-joint).
    stream: one of STREAMS.
    normalize: root-centre and scale-normalise every clip (see `normalize`).
    align_yaw: after normalising, turn every 3D clip about the vertical axis so the body's
      left-right axis lies along x in its first frame (see `align_yaw`): the body's azimuth
      relative to the camera is taken out of the input.
    pad_instead_of_resample: windows shorter than T are kept at their own speed and padded with
      frame_mask 0 instead of being stretched to T (see `frame_indices`).
  """
  num_frames: int = 64
  crop_min_ratio: float = 0.5
  temporal_jitter: bool = False
  temporal_sampling: str = 'segments'
  rotation: float | tuple[float, float, float] = (10.0, 10.0, 10.0)
  scale: float = 0.1
  shear: float = 0.05
  flip_prob: float = 0.5
  joint_dropout: float = 0.05
  drop_axis_prob: float = 0.0
  drop_joints_prob: float = 0.0
  drop_joints_count: tuple[int, int] = (4, 12)
  drop_joints_frames: tuple[int, int] = (16, 32)
  stream: str = 'joint'
  normalize: bool = True
  align_yaw: bool = False
  pad_instead_of_resample: bool = False

  def __post_init__(self):
    with check.section('augment config'):
      rotation = self.rotation
      if np.ndim(rotation) == 0:
        rotation = (rotation,) * 3
      if len(rotation) != 3:
        raise ConfigError(f'rotation must be a number or 3 angles (x, y, z), got {self.rotation!r}')
      for axis, angle in zip('xyz', rotation):
        check.non_negative(f'rotation about {axis}', angle)
      object.__setattr__(self, 'rotation', tuple(float(a) for a in rotation))
      check.positive_int('num_frames', self.num_frames)
      check.number_in('crop_min_ratio', self.crop_min_ratio, 0.0, 1.0, low_open=True)
      check.boolean('temporal_jitter', self.temporal_jitter)
      check.one_of('temporal_sampling', self.temporal_sampling, TEMPORAL_SAMPLINGS)
      if self.temporal_jitter and self.temporal_sampling != 'segments':
        raise ConfigError(f'temporal_jitter=True picks a frame within each segment and applies '
                          f"to temporal_sampling='segments' only, got "
                          f'{self.temporal_sampling!r}')
      check.number_in('scale', self.scale, 0.0, 1.0, high_open=True)
      check.non_negative('shear', self.shear)
      check.number_in('flip_prob', self.flip_prob, 0.0, 1.0)
      check.number_in('joint_dropout', self.joint_dropout, 0.0, 1.0, high_open=True)
      check.number_in('drop_axis_prob', self.drop_axis_prob, 0.0, 1.0)
      check.number_in('drop_joints_prob', self.drop_joints_prob, 0.0, 1.0)
      for name in ('drop_joints_count', 'drop_joints_frames'):
        value = tuple(getattr(self, name))
        if len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value) or \
            value[0] > value[1]:
          raise ConfigError(f'{name} must be (lo, hi) integers with 1 <= lo <= hi, got '
                           f'{getattr(self, name)!r}')
        object.__setattr__(self, name, value)
      check.one_of('stream', self.stream, STREAMS)
      check.boolean('normalize', self.normalize)
      check.boolean('align_yaw', self.align_yaw)
      check.boolean('pad_instead_of_resample', self.pad_instead_of_resample)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> AugmentConfig:
    """Builds the config from a mapping; unknown keys are refused by name."""
    values = dataclass_kwargs(cls, values, 'augmentation settings')
    for key in ('rotation', 'drop_joints_count', 'drop_joints_frames'):
      if isinstance(values.get(key), list):
        values[key] = tuple(values[key])
    return cls(**values)
