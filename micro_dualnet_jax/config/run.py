"""The whole run configuration as one typed, checked value, built once from the config file.

    config = RunConfig.from_dict(ml_collections_config.to_dict())   # or a run's config.json
    config.model.width, config.data.spec.scorer, config.run.seeds

A config file (`configs/*.py`) stays an ml_collections ConfigDict, so command-line overrides and
the refusal of unknown keys work as before; `from_config_dict` turns it into a `RunConfig` at the
door (main.py) and nothing below sees the dict. `to_dict` gives back the dict a run stores as
config.json (the same shape as the ConfigDict's), and `from_dict` reads one back.

The rules that join sections live here: the model holds the MAC projection exactly when
`loss.mac` is 'infonce' and per-path heads exactly when it is 'kl'; the input pipeline samples at
most `model.num_frames` frames (`augment.num_frames` defaults to it); mirrored test-time views
need a model trained with mirroring; `best_metric` must be one the dataset's scorer reports.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.config.augment import AugmentConfig
from micro_dualnet_jax.config.data import DataConfig
from micro_dualnet_jax.config.dicts import set_path
from micro_dualnet_jax.config.inference import PredictOptions, TestTimeConfig, default_window
from micro_dualnet_jax.config.model import ModelConfig
from micro_dualnet_jax.config.training import LossConfig, OptimConfig, RunSettings
from micro_dualnet_jax.errors import ConfigError

# The model fields a run config does not set: they follow loss.mac.
DERIVED_MODEL_FIELDS = ('mac_projection', 'path_heads')
# Metrics every scorer reports (a dataset's spec adds its own, e.g. MA-52's f1_mean).
COMMON_METRICS = ('top1', 'top5', 'f1_macro', 'f1_micro', 'mean_class_accuracy')


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Every section of a run config, checked together. `run` holds the top-level values."""
  run: RunSettings
  model: ModelConfig
  data: DataConfig
  augment: AugmentConfig
  loss: LossConfig
  optim: OptimConfig
  test_time: TestTimeConfig
  predict: PredictOptions

  def __post_init__(self):
    if self.augment.num_frames > self.model.num_frames:
      raise ConfigError(f'invalid run config: augment.num_frames={self.augment.num_frames} '
                       f'exceeds model.num_frames={self.model.num_frames}')
    if self.model.mac_projection != (self.loss.mac == 'infonce') or \
        self.model.path_heads != (self.loss.mac == 'kl'):
      raise ConfigError(f'invalid run config: the model\'s MAC pieces (mac_projection='
                       f'{self.model.mac_projection}, path_heads={self.model.path_heads}) must '
                       f'follow loss.mac={self.loss.mac!r}')
    if self.model.time_embedding == 'position' and self.augment.pad_instead_of_resample:
      raise ConfigError("invalid run config: model.time_embedding='position' needs clips read "
                       'across all T frames (evaluation gives the model the positions of a '
                       'whole clip sampled uniformly); set augment.pad_instead_of_resample=False')
    if self.test_time.flip and self.augment.flip_prob == 0:
      raise ConfigError('test_time.flip=True needs a model trained with mirroring '
                       '(augment.flip_prob > 0): with flip_prob 0 left and right tell classes '
                       'apart, and a mirrored view would vote for the other side\'s class')
    spec = self.data.spec
    if self.run.best_metric not in COMMON_METRICS + spec.best_metrics:
      raise ConfigError(f'invalid run config: best_metric {self.run.best_metric!r} is not '
                       f'reported for dataset {spec.name!r} (choose from '
                       f'{COMMON_METRICS + spec.best_metrics})')

  # ------------------------------------------------------------------- building

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
    """From a run config as a dict (a ConfigDict's `to_dict()`, or a run's config.json).

    Raises ValueError naming the section, the field and the value.
    """
    values = copy.deepcopy(dict(values))
    sections = {name: dict(values.pop(name, None) or {}) for name in _SECTION_NAMES}
    run = RunSettings.from_dict(values)   # what is left: the top-level values
    loss = LossConfig.from_dict(sections['loss'])
    model_values = sections['model']
    given = sorted(set(model_values) & set(DERIVED_MODEL_FIELDS))
    if given:
      raise ConfigError(f'invalid model config: {given} follow loss.mac and cannot be set')
    model = ModelConfig.from_dict({**model_values, 'mac_projection': loss.mac == 'infonce',
                                   'path_heads': loss.mac == 'kl'})
    sections['augment'].setdefault('num_frames', model.num_frames)
    return cls(run=run, model=model, loss=loss,
               data=DataConfig.from_dict(sections['data']),
               augment=AugmentConfig.from_dict(sections['augment']),
               optim=OptimConfig.from_dict(sections['optim']),
               test_time=TestTimeConfig.from_dict(sections['test_time']),
               predict=PredictOptions.from_dict(sections['predict']))

  @classmethod
  def from_config_dict(cls, config: Any) -> RunConfig:
    """From an ml_collections ConfigDict (a `configs/*.py` file with its command-line overrides):
    the one place the package reads one."""
    return cls.from_dict(config.to_dict())

  def to_dict(self) -> dict[str, Any]:
    """The config as config.json stores it: the top-level values, then one dict per section."""
    out = dataclasses.asdict(self.run)
    for name in _SECTION_NAMES:
      out[name] = dataclasses.asdict(getattr(self, name))
    for name in DERIVED_MODEL_FIELDS:
      del out['model'][name]
    return out

  def replace(self, **dotted: Any) -> RunConfig:
    """A copy with values replaced by dotted key, e.g. `replace(**{'optim.learning_rate': 1e-3,
    'batch_size': 8})` (top-level keys are the `run` section's), checked like any other."""
    values = self.to_dict()
    for key, value in dotted.items():
      set_path(values, key, value)
    return RunConfig.from_dict(values)

  # ------------------------------------------------------------------- derived values

  @property
  def seeds(self) -> list[int]:
    return self.run.seeds

  def default_predict_window(self) -> int:
    return default_window(self.model.num_frames, self.data.max_frames)


_SECTION_NAMES = ('model', 'loss', 'data', 'augment', 'optim', 'test_time', 'predict')
