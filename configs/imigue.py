"""iMiGUE (32 micro-gestures, 2D OpenPose upper body, cross-subject): openpose22, K = 5.

Point --config.data.manual_dir at the release as downloaded, raw CSV or processed npy/pkl; the
reader is chosen by what the folder holds. Metrics: Top-1, Top-5; writes Submission.csv.
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'imigue'
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.data.max_frames = 150
  # 'raw' or 'processed' picks the release when the manual folder holds both (None: the one there).
  config.data.options.source = ml_collections.FieldReference(None, field_type=str)
  config.model.layout = 'openpose22'
  config.model.num_classes = 32
  config.model.num_frames = 64
  config.augment.rotation = (10.0, 10.0, 10.0)
  config.augment.flip_prob = 0.0   # left/right-specific gestures keep their side
  config.batch_size = 64
  config.num_epochs = 60
  return config
