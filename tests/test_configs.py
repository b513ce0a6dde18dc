"""Every shipped config resolves to valid model and pipeline settings (no training)."""

from __future__ import annotations

import importlib

import pytest

from micro_dualnet_jax import steps, train
from micro_dualnet_jax.data.readers import nwucla
from micro_dualnet_jax.skeleton import get_layout

CONFIGS = ('default', 'smoke', 'synthetic', 'imigue', 'ma52', 'nwucla')


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_valid_model_and_pipeline_settings(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  train.check_config(config)              # every section, as training checks it
  model = steps.model_config(config)
  pipeline = steps.augment_config(config)
  views = steps.test_time_config(config)
  assert pipeline.num_frames == model.num_frames and views.num_clips >= 1
  assert len(model.entity_names) in (5, 6)


def test_nwucla_config_is_the_cross_view_protocol():
  config = importlib.import_module('configs.nwucla').get_config()
  model = steps.model_config(config)
  assert (model.layout, len(model.entity_names), model.num_classes) == ('kinect20', 6, 10)
  assert get_layout(model.layout).coord_dims == 3
  assert nwucla.SPLIT_VIEWS[config.data.train_split] == (1, 2)
  assert nwucla.SPLIT_VIEWS[config.data.eval_split] == (3,)
  # The model-selection splits never hold the test view.
  assert 3 not in nwucla.SPLIT_VIEWS['view1'] + nwucla.SPLIT_VIEWS['view2']


def test_defaults_live_in_the_dataclasses():
  """configs/default.py takes every section's defaults from its dataclass."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax import predict  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.data.augment import AugmentConfig  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.losses import LossConfig  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.models import ModelConfig  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  sections = {'model': ModelConfig, 'loss': LossConfig, 'augment': AugmentConfig,
              'optim': steps.OptimConfig, 'test_time': steps.TestTimeConfig,
              'predict': predict.PredictOptions}
  for section, cls in sections.items():
    for field in dataclasses.fields(cls):
      if field.name in ('mac_projection', 'path_heads'):
        continue
      value = config[section][field.name]
      assert value == field.default or (
          isinstance(value, (list, tuple)) and tuple(value) == tuple(field.default)), (
              section, field.name)
  for field in dataclasses.fields(train.RunSettings):
    assert config[field.name] == field.default, field.name
