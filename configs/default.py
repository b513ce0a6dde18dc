"""The paper's defaults (docs/method.md): width 256, 8 heads, 3 layers per transformer, T = 64.

Every default lives in its config dataclass (`micro_dualnet_jax/config/`: `ModelConfig`,
`DataConfig`, `LossConfig`, `AugmentConfig`, `OptimConfig`, `TestTimeConfig`, `RunSettings`,
`PredictOptions`); this file assembles them into the run config the dataset configs start from.
Every value can be overridden on the command line, e.g. --config.model.width=128; unknown keys
are refused. Loading it imports neither jax nor flax.
"""

import ml_collections

from micro_dualnet_jax.config import (AugmentConfig, DataConfig, LossConfig, ModelConfig,
                                      OptimConfig, PredictOptions, RunSettings, TestTimeConfig,
                                      field_defaults)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(field_defaults(RunSettings))
  # seed: replica s of num_seeds trains with seed + s (steps.py, "Seeds as a batch axis").
  # batch_size / eval_batch_size: global, over all devices and processes.
  # num_train_steps > 0 overrides num_epochs; max_steps_per_run > 0: checkpoint and exit after
  # this many steps (scheduler time slots). steps_per_call: optimizer steps per jitted call
  # (0: about a second's worth); compilation_cache_dir: '' turns JAX's persistent cache off.

  # mac_projection and path_heads follow loss.mac (config/run.py).
  config.model = ml_collections.ConfigDict(field_defaults(
      ModelConfig, exclude=('mac_projection', 'path_heads')))
  config.model.entities = ml_collections.FieldReference(None, field_type=tuple)
  config.loss = ml_collections.ConfigDict(field_defaults(LossConfig))

  # max_frames: the host padding length L (longer clips are subsampled to L). pipeline: 'device'
  # keeps the training split on the devices, 'host' streams it, 'auto' picks by
  # device_memory_budget_mb.
  config.data = ml_collections.ConfigDict(field_defaults(DataConfig, exclude=('options',)))
  config.data.options = ml_collections.ConfigDict()

  config.augment = ml_collections.ConfigDict(field_defaults(AugmentConfig))
  config.augment.num_frames = config.model.get_ref('num_frames')
  config.optim = ml_collections.ConfigDict(field_defaults(OptimConfig))
  config.test_time = ml_collections.ConfigDict(field_defaults(TestTimeConfig))
  # --mode=predict on new pose data and long recordings (micro_dualnet_jax/predict.py).
  config.predict = ml_collections.ConfigDict(field_defaults(PredictOptions))
  return config
