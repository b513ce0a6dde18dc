"""Helpers several test modules share."""

from configs import smoke
from micro_dualnet_jax.config import RunConfig, set_path


def smoke_config(data_dir, **overrides) -> RunConfig:
  """configs/smoke.py with its data in `data_dir` and dotted-key overrides ('optim.lr': 1e-3),
  as the typed config main.py builds from it."""
  config = smoke.get_config()
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    set_path(config, key, value)
  return RunConfig.from_config_dict(config)


def typed(config) -> RunConfig:
  """A config file's ConfigDict (changed by a test) as main.py hands it on."""
  return RunConfig.from_config_dict(config)
