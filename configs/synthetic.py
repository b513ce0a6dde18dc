"""The built-in synthetic micro-action benchmark (no download): the README's main command.

Sized to train and evaluate on a 2-core laptop CPU in under 10 minutes.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'synthetic'
  config.data.max_frames = 150
  config.data.options.num_train = 2400
  config.data.options.num_test = 400
  config.data.options.seed = 0
  config.data.options.layout = 'openpose22'
  config.model.num_classes = 15
  config.model.num_frames = 64
  config.model.width = 64
  config.model.num_heads = 4
  config.model.spatial_layers = 1
  config.model.temporal_layers = 2
  config.model.mlp_ratio = 2
  config.augment.flip_prob = 0.0   # left/right matter in the synthetic classes
  config.batch_size = 32
  config.eval_batch_size = 200
  config.num_epochs = 0
  config.num_train_steps = 1000
  config.augment.crop_min_ratio = 0.9  # the action is 1-3 s of a 2-5 s clip: keep it in view
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  return config
