"""Every shipped config resolves to a valid typed run configuration (no training), built once."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import subprocess
import sys

import ml_collections
import pytest

import micro_dualnet_jax
from micro_dualnet_jax import config as config_lib
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.data.readers import nwucla
from micro_dualnet_jax.skeleton import get_layout

CONFIGS = ('default', 'smoke', 'synthetic', 'imigue', 'ma52', 'nwucla')


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_a_valid_run_config(name):
  config = RunConfig.from_config_dict(importlib.import_module(f'configs.{name}').get_config())
  assert config.augment.num_frames == config.model.num_frames
  assert config.test_time.num_clips >= 1
  assert len(config.model.entity_names) in (5, 6)
  assert config.model.mac_projection == (config.loss.mac == 'infonce')
  # config.json holds the ConfigDict's shape, and reads back to the same config.
  stored = json.loads(json.dumps(config.to_dict()))
  assert stored.keys() == importlib.import_module(f'configs.{name}').get_config().to_dict().keys()
  assert RunConfig.from_dict(stored) == config


def test_nwucla_config_is_the_cross_view_protocol():
  config = RunConfig.from_config_dict(importlib.import_module('configs.nwucla').get_config())
  model = config.model
  assert (model.layout, len(model.entity_names), model.num_classes) == ('kinect20', 6, 10)
  assert get_layout(model.layout).coord_dims == 3
  assert nwucla.SPLIT_VIEWS[config.data.train_split] == (1, 2)
  assert nwucla.SPLIT_VIEWS[config.data.eval_split] == (3,)
  # The model-selection splits never hold the test view.
  assert 3 not in nwucla.SPLIT_VIEWS['view1'] + nwucla.SPLIT_VIEWS['view2']


def test_defaults_live_in_the_dataclasses():
  """configs/default.py takes every section's defaults from its dataclass."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  sections = {'model': config_lib.ModelConfig, 'loss': config_lib.LossConfig,
              'augment': config_lib.AugmentConfig, 'optim': config_lib.OptimConfig,
              'test_time': config_lib.TestTimeConfig, 'predict': config_lib.PredictOptions,
              'data': config_lib.DataConfig}
  for section, cls in sections.items():
    for field in dataclasses.fields(cls):
      if field.name in ('mac_projection', 'path_heads', 'options'):
        continue
      value = config[section][field.name]
      assert value == field.default or (
          isinstance(value, (list, tuple)) and tuple(value) == tuple(field.default)), (
              section, field.name)
  for field in dataclasses.fields(config_lib.RunSettings):
    assert config[field.name] == field.default, field.name


@pytest.mark.parametrize('override, message', [
    ({'augment.num_frames': 80}, 'augment.num_frames=80 exceeds model.num_frames=64'),
    ({'test_time.flip': True, 'augment.flip_prob': 0.0}, 'test_time.flip=True needs'),
    ({'best_metric': 'f1_mean'}, "best_metric 'f1_mean' is not reported for dataset 'synthetic'"),
    ({'data.name': 'kinetics'}, "unknown dataset 'kinetics'"),
    ({'data.max_frames': 0}, 'max_frames must be a positive integer, got 0'),
    ({'data.options': {'size': 3}}, r"unknown synthetic options \['size'\]"),
    ({'model.time_embedding': 'position', 'augment.pad_instead_of_resample': True},
     "time_embedding='position' needs clips read across all T frames"),
    ({'augment.temporal_sampling': 'random', 'augment.temporal_jitter': True},
     "temporal_jitter=True picks a frame within each segment"),
    ({'augment.temporal_sampling': 'shuffled'}, "temporal_sampling must be one of"),
    ({'model.time_embedding': 'frame'}, "time_embedding must be one of"),
])
def test_rules_across_sections_are_checked_once_when_built(override, message):
  from configs import default  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=message):
    RunConfig.from_dict(default.get_config().to_dict()).replace(**override)


def test_derived_model_fields_follow_the_loss_and_cannot_be_set():
  from configs import default  # pylint: disable=g-import-not-at-top
  config = RunConfig.from_config_dict(default.get_config())
  assert config.replace(**{'loss.mac': 'kl'}).model.path_heads
  assert not config.replace(**{'loss.mac': 'none'}).model.mac_projection
  values = config.to_dict()
  values['model']['mac_projection'] = False
  with pytest.raises(ValueError, match='follow loss.mac'):
    RunConfig.from_dict(values)


def test_loading_a_config_file_imports_neither_jax_nor_flax():
  code = ('import sys; from configs import nwucla; from micro_dualnet_jax.config import '
          'RunConfig; RunConfig.from_config_dict(nwucla.get_config()); '
          "print(sorted(m for m in ('jax', 'flax', 'optax', 'tensorflow_datasets') "
          'if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       cwd=str(__import__('pathlib').Path(__file__).resolve().parents[1]))
  assert out.stdout.strip() == '[]', out.stdout + out.stderr


def test_no_package_function_takes_a_config_dict():
  """Only RunConfig.from_config_dict reads an ml_collections ConfigDict; everything below takes
  the typed config (signatures and annotations of every public module's functions)."""
  import pkgutil  # pylint: disable=g-import-not-at-top
  offenders = []
  for info in pkgutil.walk_packages(micro_dualnet_jax.__path__, 'micro_dualnet_jax.'):
    module = importlib.import_module(info.name)
    source = inspect.getsource(module)
    if 'ml_collections' in source and info.name != 'micro_dualnet_jax.config.run':
      offenders.append(f'{info.name} mentions ml_collections')
  assert not offenders, offenders
  assert ml_collections   # the config files themselves stay ml_collections


def test_no_module_outside_the_registry_compares_a_dataset_name():
  import pathlib  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  names = '|'.join(('imigue', 'ma52', 'nwucla', 'synthetic'))
  pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*['"]({names})['"]|['"]({names})['"]\s*(==|!=)""")
  package = pathlib.Path(micro_dualnet_jax.__file__).parent
  found = [f'{path.relative_to(package)}: {line.strip()}'
           for path in package.rglob('*.py') if path.name != 'registry.py'
           for line in path.read_text().splitlines() if pattern.search(line)]
  assert not found, found
