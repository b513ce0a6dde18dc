"""Every shipped config resolves to valid model and pipeline settings (no training)."""

from __future__ import annotations

import importlib

import pytest

from micro_dualnet_jax import train
from micro_dualnet_jax.data.readers import nwucla
from micro_dualnet_jax.skeleton import get_layout

CONFIGS = ('default', 'smoke', 'synthetic', 'imigue', 'ma52', 'nwucla')


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_valid_model_and_pipeline_settings(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  model = train.model_config(config)
  pipeline = train.augment_config(config)
  num_clips, _ = train.test_time_views(config)
  assert pipeline.num_frames == model.num_frames and num_clips >= 1
  assert len(model.entity_names) in (5, 6)


def test_nwucla_config_is_the_cross_view_protocol():
  config = importlib.import_module('configs.nwucla').get_config()
  model = train.model_config(config)
  assert (model.layout, len(model.entity_names), model.num_classes) == ('kinect20', 6, 10)
  assert get_layout(model.layout).coord_dims == 3
  assert nwucla.SPLIT_VIEWS[config.data.train_split] == (1, 2)
  assert nwucla.SPLIT_VIEWS[config.data.eval_split] == (3,)
  # The model-selection splits never hold the test view.
  assert 3 not in nwucla.SPLIT_VIEWS['view1'] + nwucla.SPLIT_VIEWS['view2']
