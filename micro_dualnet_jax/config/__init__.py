"""The run configuration: one typed value built once from a config file (no JAX, no TFDS).

Sections, each a frozen dataclass that checks its own values:

  model      ModelConfig      config/model.py       the network's hyper-parameters
  data       DataConfig       config/data.py        dataset, folders, splits, padding length
  augment    AugmentConfig    config/augment.py     frame sampling, normalisation, augmentation
  loss       LossConfig       config/training.py    CE + MAC
  optim      OptimConfig      config/training.py    AdamW, schedule, clipping, accumulation
  (top)      RunSettings      config/training.py    seeds, batch sizes, budget, intervals
  test_time  TestTimeConfig   config/inference.py   evaluation views
  predict    PredictOptions   config/inference.py   --mode=predict on recordings

`RunConfig` (config/run.py) holds them all and the rules that join them; `configs/*.py` are the
files users edit, assembled from these defaults.
"""

from micro_dualnet_jax.config.augment import STREAMS, AugmentConfig
from micro_dualnet_jax.config.data import DataConfig
from micro_dualnet_jax.config.dicts import field_defaults, set_path
from micro_dualnet_jax.config.inference import PredictOptions, TestTimeConfig, default_window
from micro_dualnet_jax.config.model import ModelConfig
from micro_dualnet_jax.config.run import RunConfig
from micro_dualnet_jax.config.training import (BEST_METRICS, MAC_KINDS, LossConfig, OptimConfig,
                                               RunSettings)

__all__ = ['AugmentConfig', 'BEST_METRICS', 'DataConfig', 'LossConfig', 'MAC_KINDS', 'ModelConfig',
           'OptimConfig', 'PredictOptions', 'RunConfig', 'RunSettings', 'STREAMS',
           'TestTimeConfig', 'default_window', 'field_defaults', 'set_path']
