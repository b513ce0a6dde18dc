"""Tiny: a whole train/eval/checkpoint cycle in seconds, for tests and CI."""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.data.max_frames = 48
  config.data.options.num_train = 64
  config.data.options.num_test = 24
  config.model.num_frames = 16
  config.model.width = 16
  config.model.num_heads = 2
  config.model.spatial_layers = 1
  config.model.temporal_layers = 1
  config.model.mlp_ratio = 2
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_epochs = 0
  config.num_train_steps = 8
  config.optim.warmup_steps = 2
  config.log_every_steps = 2
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 4
  config.async_checkpoints = False
  config.steps_per_call = 1   # tests stop runs at exact steps
  return config
