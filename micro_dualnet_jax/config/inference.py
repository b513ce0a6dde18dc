"""How a trained model is scored and run: test-time views and prediction settings (no JAX)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.dicts import dataclass_kwargs
from micro_dualnet_jax.errors import ConfigError

_WINDOW_FACTOR = 2


@dataclasses.dataclass(frozen=True)
class TestTimeConfig:
  """Evaluation views (`make_eval_step`): `num_clips` temporal phases per clip, each also
  mirrored with `flip`; the logits are averaged. 1 / False: one deterministic pass."""
  num_clips: int = 1
  flip: bool = False

  def __post_init__(self):
    with check.section('test_time config'):
      check.positive_int('num_clips', self.num_clips)
      check.boolean('flip', self.flip)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> TestTimeConfig:
    return cls(**dataclass_kwargs(cls, values, 'test_time config keys'))


@dataclasses.dataclass(frozen=True)
class PredictOptions:
  """Prediction settings (micro_dualnet_jax/predict.py's docstring explains the defaults).

  Attributes:
    window: frames per window; 0 = min(2 * model.num_frames, data.max_frames).
    stride: frames between window starts; 0 = window // 2.
    batch_size: windows per jit call (rounded up to a multiple of the device count).
    top_k: classes reported per window / clip.
    smoothing: majority-filter width in frames (odd; 1 = off; 0 = the stride rounded up to odd).
    fps: frames per second of the recording, for the times in the outputs.
    input_layout: joint layout of array inputs ('' = recognised by the joint count).
    background_class: name of the model's background class, if it has one.
    render: write `clip.gif` for short inputs.
  """
  window: int = 0
  stride: int = 0
  batch_size: int = 32
  top_k: int = 5
  smoothing: int = 0
  fps: float = 30.0
  input_layout: str = ''
  background_class: str = 'background'
  render: bool = True

  def __post_init__(self):
    with check.section('predict option'):
      check.integer('window', self.window, minimum=0)
      check.integer('stride', self.stride, minimum=0)
      check.positive_int('batch_size', self.batch_size)
      check.positive_int('top_k', self.top_k)
      check.integer('smoothing', self.smoothing, minimum=0)
      if self.smoothing and self.smoothing % 2 == 0:
        raise ConfigError(f'smoothing must be 0 (automatic) or an odd number of frames, got '
                         f'{self.smoothing}')
      check.positive('fps', self.fps)
      if not isinstance(self.input_layout, str):
        raise ConfigError(f'input_layout must be a layout name or \'\', got {self.input_layout!r}')
      check.boolean('render', self.render)

  def resolved(self, num_frames: int, max_frames: int) -> PredictOptions:
    """The options with window, stride and smoothing filled in for a model of `num_frames`
    frames trained on clips padded to `max_frames`."""
    window = self.window or default_window(num_frames, max_frames)
    stride = self.stride or max(window // 2, 1)
    if stride > window:
      raise ConfigError(f'invalid predict option: stride {stride} is longer than the window '
                       f'{window}; frames between windows would never be seen')
    smoothing = self.smoothing or (stride | 1)
    return dataclasses.replace(self, window=window, stride=stride, smoothing=smoothing)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> PredictOptions:
    return cls(**dataclass_kwargs(cls, values, 'predict options'))

  def with_overrides(self, **overrides: Any) -> PredictOptions:
    """A copy with the non-None `overrides` (e.g. keyword arguments of run_predict) applied."""
    return PredictOptions.from_dict({**dataclasses.asdict(self),
                                     **{k: v for k, v in overrides.items() if v is not None}})


def default_window(num_frames: int, max_frames: int) -> int:
  """min(2 * model.num_frames, data.max_frames) frames (micro_dualnet_jax/predict.py explains
  why)."""
  return int(min(_WINDOW_FACTOR * num_frames, max_frames))
