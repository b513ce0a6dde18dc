"""The paper's defaults (docs/method.md): width 256, 8 heads, 3 layers per transformer, T = 64.

Every default lives in its config dataclass (`ModelConfig`, `LossConfig`, `AugmentConfig`,
`OptimConfig`, `TestTimeConfig`, `RunSettings`, `PredictOptions`); this file assembles them into
the run config the dataset configs start from. Every value can be overridden on the command
line, e.g. --config.model.width=128; unknown keys are refused.
"""

import ml_collections

from micro_dualnet_jax.config_utils import field_defaults
from micro_dualnet_jax.data.augment import AugmentConfig
from micro_dualnet_jax.losses import LossConfig
from micro_dualnet_jax.models import ModelConfig
from micro_dualnet_jax.settings import PredictOptions, RunSettings
from micro_dualnet_jax.steps import OptimConfig, TestTimeConfig


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(field_defaults(RunSettings))
  # seed: replica s of num_seeds trains with seed + s (steps.py, "Seeds as a batch axis").
  # batch_size / eval_batch_size: global, over all devices and processes.
  # num_train_steps > 0 overrides num_epochs; max_steps_per_run > 0: checkpoint and exit after
  # this many steps (scheduler time slots).

  # mac_projection and path_heads follow loss.mac (steps.model_config).
  config.model = ml_collections.ConfigDict(field_defaults(
      ModelConfig, exclude=('mac_projection', 'path_heads')))
  config.model.entities = ml_collections.FieldReference(None, field_type=tuple)
  config.loss = ml_collections.ConfigDict(field_defaults(LossConfig))

  config.data = ml_collections.ConfigDict(dict(
      name='synthetic', data_dir='~/micro_dualnet_data', manual_dir='',
      train_split='train', eval_split='test',
      max_frames=150,        # host padding length L (longer clips are subsampled to L)
  ))
  config.data.options = ml_collections.ConfigDict()

  config.augment = ml_collections.ConfigDict(field_defaults(AugmentConfig))
  config.augment.num_frames = config.model.get_ref('num_frames')
  config.optim = ml_collections.ConfigDict(field_defaults(OptimConfig))
  config.test_time = ml_collections.ConfigDict(field_defaults(TestTimeConfig))
  # --mode=predict on new pose data and long recordings (micro_dualnet_jax/predict.py).
  config.predict = ml_collections.ConfigDict(field_defaults(PredictOptions))
  return config
