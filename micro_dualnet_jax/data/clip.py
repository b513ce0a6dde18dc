"""The canonical clip every reader produces, and the error every reader raises."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# The range a clip's values must lie in (docs/data_formats.md, "Value checks"). Coordinates are
# pixels or metres, so |x| beyond MAX_ABS_COORDINATE is a corrupt value (it would overflow the
# float32 normalisation into inf and NaN logits). Confidences are in [0, 1]; heatmap detectors'
# scores may overshoot 1 a little, hence the tolerance.
MAX_ABS_COORDINATE = 1e6
MAX_CONFIDENCE = 1.05


from micro_dualnet_jax.errors import DataFormatError  # noqa: F401  (readers import it from here)


@dataclasses.dataclass
class Clip:
  """One labelled skeleton clip, independent of the format it came from.

  Attributes:
    clip_id: unique id within its split (e.g. '0187_0', 'a01_s01_e00_v03').
    keypoints: (T, V, C) float32 coordinates, C = 2 (pixels) or 3 (metres), finite, |x| <=
      MAX_ABS_COORDINATE. Missing joints hold 0.
    confidence: (T, V) float32 in [0, 1] (up to MAX_CONFIDENCE accepted); 0 marks a missing
      joint (3D data: 1 where present).
    label: class index (0-based), or -1 when the split is unlabelled (e.g. a withheld test set).
    layout: name of the joint layout (`micro_dualnet_jax.skeleton.get_layout`).
    source: the file (and row/sample) the clip came from, for error messages.
    meta: format-specific extras (subject, view, body label, video id, frame range, ...).
  """
  clip_id: str
  keypoints: np.ndarray
  confidence: np.ndarray
  label: int
  layout: str
  source: str = ''
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_frames(self) -> int:
    return int(self.keypoints.shape[0])

  def validate(self, num_joints: int | None = None, num_classes: int | None = None) -> 'Clip':
    """Checks shapes, finiteness, the value ranges (MAX_ABS_COORDINATE, confidence in
    [0, MAX_CONFIDENCE]), label range and non-emptiness; raises DataFormatError."""
    where = f'{self.source or "<unknown source>"} (clip {self.clip_id!r})'
    kp, conf = self.keypoints, self.confidence
    if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
      raise DataFormatError(f'{where}: keypoints must be (T, V, 2|3), got shape {kp.shape}')
    if conf.shape != kp.shape[:2]:
      raise DataFormatError(
          f'{where}: confidence shape {conf.shape} does not match keypoints {kp.shape[:2]}')
    if kp.shape[0] == 0:
      raise DataFormatError(f'{where}: empty clip (0 frames)')
    if num_joints is not None and kp.shape[1] != num_joints:
      raise DataFormatError(
          f'{where}: {kp.shape[1]} joints, but the layout {self.layout!r} has {num_joints}')
    if not np.all(np.isfinite(kp)) or not np.all(np.isfinite(conf)):
      bad = np.argwhere(~np.isfinite(kp).all(-1) | ~np.isfinite(conf))[0]
      raise DataFormatError(
          f'{where}: NaN or inf keypoint at frame {bad[0]}, joint {bad[1]}')
    far = np.argwhere(np.abs(kp) > MAX_ABS_COORDINATE)
    if len(far):
      t, v, c = far[0]
      raise DataFormatError(
          f'{where}: coordinate {float(kp[t, v, c]):g} at frame {t}, joint {v}, channel {c} is '
          f'beyond +-{MAX_ABS_COORDINATE:g} (pixels or metres expected; a corrupt value?)')
    odd = np.argwhere((conf < 0) | (conf > MAX_CONFIDENCE))
    if len(odd):
      t, v = odd[0]
      raise DataFormatError(
          f'{where}: confidence {float(conf[t, v]):g} at frame {t}, joint {v} is outside '
          '[0, 1]')
    if num_classes is not None and not -1 <= self.label < num_classes:
      raise DataFormatError(f'{where}: label {self.label} outside 0..{num_classes - 1}')
    return self
