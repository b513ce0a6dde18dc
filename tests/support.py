"""Helpers several test modules share."""

from configs import smoke
from micro_dualnet_jax.config_utils import set_path


def smoke_config(data_dir, **overrides):
  """configs/smoke.py with its data in `data_dir` and dotted-key overrides ('optim.lr': 1e-3)."""
  config = smoke.get_config()
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    set_path(config, key, value)
  return config
