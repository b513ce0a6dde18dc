"""Run-level and prediction settings as validated dataclasses (no JAX, no model in here).

`RunSettings` holds the top-level values of a run config (seeds, batch sizes, the step budget,
log / eval / checkpoint intervals); `PredictOptions` the `predict` section. configs/default.py
takes their defaults from here, like every other section's from its dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from micro_dualnet_jax import validation as check
from micro_dualnet_jax.config_utils import dataclass_kwargs

BEST_METRICS = ('top1', 'top5', 'f1_macro', 'f1_micro', 'mean_class_accuracy', 'f1_mean',
                'body_top1')
_WINDOW_FACTOR = 2


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The top-level values of a run config, checked (configs/default.py has their meaning)."""
  seed: int = 0
  num_seeds: int = 1
  batch_size: int = 64
  eval_batch_size: int = 128
  num_epochs: float = 100
  num_train_steps: int = 0
  max_steps_per_run: int = 0
  log_every_steps: int = 50
  eval_every_steps: int = 1000
  checkpoint_every_steps: int = 1000
  keep_checkpoints: int = 3
  async_checkpoints: bool = True
  best_metric: str = 'top1'

  def __post_init__(self):
    with check.section('run config'):
      check.integer('seed', self.seed, minimum=0)
      check.positive_int('num_seeds', self.num_seeds)
      check.positive_int('batch_size', self.batch_size)
      check.positive_int('eval_batch_size', self.eval_batch_size)
      check.non_negative('num_epochs', self.num_epochs)
      check.integer('num_train_steps', self.num_train_steps, minimum=0)
      if not self.num_train_steps and not self.num_epochs:
        raise ValueError('num_epochs and num_train_steps are both 0: nothing to train')
      check.integer('max_steps_per_run', self.max_steps_per_run, minimum=0)
      check.positive_int('log_every_steps', self.log_every_steps)
      check.integer('eval_every_steps', self.eval_every_steps, minimum=0)
      check.positive_int('checkpoint_every_steps', self.checkpoint_every_steps)
      check.positive_int('keep_checkpoints', self.keep_checkpoints)
      check.boolean('async_checkpoints', self.async_checkpoints)
      check.one_of('best_metric', self.best_metric, BEST_METRICS)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> RunSettings:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**dataclass_kwargs(cls, {k: config[k] for k in config if k in names},
                                  'run settings'))

  @property
  def seeds(self) -> list[int]:
    return list(range(self.seed, self.seed + self.num_seeds))



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
        raise ValueError(f'smoothing must be 0 (automatic) or an odd number of frames, got '
                         f'{self.smoothing}')
      check.positive('fps', self.fps)
      if not isinstance(self.input_layout, str):
        raise ValueError(f'input_layout must be a layout name or \'\', got {self.input_layout!r}')
      check.boolean('render', self.render)

  def resolved(self, config: ml_collections.ConfigDict) -> PredictOptions:
    """The options with window, stride and smoothing filled in for the trained model."""
    window = self.window or default_window(config)
    stride = self.stride or max(window // 2, 1)
    if stride > window:
      raise ValueError(f'invalid predict option: stride {stride} is longer than the window '
                       f'{window}; frames between windows would never be seen')
    smoothing = self.smoothing or (stride | 1)
    return dataclasses.replace(self, window=window, stride=stride, smoothing=smoothing)


def default_window(config: ml_collections.ConfigDict) -> int:
  """min(2 * model.num_frames, data.max_frames) frames (micro_dualnet_jax/predict.py explains
  why)."""
  return int(min(_WINDOW_FACTOR * config.model.num_frames, config.data.max_frames))


def predict_options(config: ml_collections.ConfigDict | None = None,
                    **overrides: Any) -> PredictOptions:
  """PredictOptions from `config.predict` (when present) with the non-None `overrides` on top."""
  values: dict[str, Any] = {}
  if config is not None and 'predict' in config:
    values.update(config.predict.to_dict())
  values.update({k: v for k, v in overrides.items() if v is not None})
  return PredictOptions(**dataclass_kwargs(PredictOptions, values, 'predict options'))
