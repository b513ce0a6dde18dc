"""NW-UCLA (10 actions, Kinect v1 3D skeletons), cross-view: train views 1-2, test view 3.

Read from ../shared/datasets/nw_ucla (or --config.data.manual_dir); never copied into the repo.
Streams: --config.augment.stream=joint|bone|joint_motion|bone_motion; combine trained streams with
--mode=ensemble. The recipe was chosen across the training views only (train on view 1, evaluate
on view 2: `benchmarks/nwucla.py --heldout`; results in benchmarks/results/nwucla_selection.json)
before the test view was scored: whole clips (crop_min_ratio 1) and +-60 deg rotations about x and
y (74.4 -> 77.0 % on view 2), width 96 (-> 79.2 %), T = 32 instead of 52 (78.2 %, at 0.59x the
time); then shear 0.3 (-> 80.6 %) with batch 16 (-> 81.2 %), and scoring each clip as 4 temporal
phases, each also mirrored (-> 82.3 %). Tried there without gain: 90 or 100 epochs, yaw alignment,
temporal jitter, shear 0.5. Later, 3 seeds per setting, by the 95 % interval of the difference of
means (docs/results.md): 200 epochs instead of 60 gave -0.99 [-2.29, +0.31] (paired by seed), so
the recipe keeps 60; clip-normalised positions and drop-joint were worse.
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
  config.model.num_frames = 32
  config.model.width = 96
  config.model.num_heads = 4
  config.model.spatial_layers = 2
  config.model.temporal_layers = 2
  config.augment.crop_min_ratio = 1.0
  config.augment.rotation = (60.0, 60.0, 0.0)
  config.augment.scale = 0.1
  config.augment.shear = 0.3
  config.augment.flip_prob = 0.5
  config.test_time.num_clips = 4
  config.test_time.flip = True
  config.batch_size = 16
  config.num_epochs = 60
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 300
  config.eval_every_steps = 1000
  return config
