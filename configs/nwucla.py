"""NW-UCLA (10 actions, Kinect v1 3D skeletons), cross-view: train views 1-2, test view 3.

Read from ../shared/datasets/nw_ucla (or --config.data.manual_dir); never copied into the repo.
Streams: --config.augment.stream=joint|bone|joint_motion|bone_motion; combine trained streams with
--mode=ensemble. The recipe (width 64, 60 epochs) was checked on held-out training views
(train[:90%] -> train[90%:], benchmarks/nwucla.py --heldout) before the test view was scored.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'nwucla'
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.data.max_frames = 208
  config.model.layout = 'kinect20'
  config.model.num_classes = 10
  config.model.num_frames = 52
  config.model.width = 64
  config.model.num_heads = 4
  config.model.spatial_layers = 2
  config.model.temporal_layers = 2
  config.augment.rotation = (30.0, 30.0, 30.0)
  config.augment.scale = 0.1
  config.augment.flip_prob = 0.5
  config.batch_size = 32
  config.num_epochs = 60
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 150
  config.eval_every_steps = 500
  return config
