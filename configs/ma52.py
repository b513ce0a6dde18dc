"""MA-52 (52 micro-actions in 7 body groups, whole body, OpenPose-28): K = 6.

Evaluation on the validation split reports the official metrics (action/body Top-1, F1 micro and
macro, F1_mean); writes prediction.csv for the benchmark server.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'ma52'
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.max_frames = 300
  config.model.layout = 'openpose28'
  config.model.num_classes = 52
  config.model.num_frames = 64
  config.augment.flip_prob = 0.0
  config.batch_size = 64
  config.num_epochs = 60
  config.best_metric = 'f1_mean'
  return config
