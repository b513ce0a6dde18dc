"""Paper defaults (DESIGN.md Section 1): width 256, 8 heads, 3 layers per transformer, T = 64.

Every value can be overridden on the command line, e.g. --config.model.width=128; unknown keys
are refused. The dataset configs start from this one.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict(dict(
      layout='openpose22', num_classes=32, num_frames=64, entities=None,
      width=256, num_heads=8, spatial_layers=3, temporal_layers=3, mlp_ratio=4, dropout=0.1,
      paths='dual',          # dual | st | ts
      fusion='routing',      # routing | static | mean
      router_temperature=1.0, global_token=True,
      velocity_scale=10.0,   # frame differences x10: motion at the scale of position
      dtype='float32',       # float32 | bfloat16 (compute; parameters stay float32)
  ))
  config.model.entities = ml_collections.FieldReference(None, field_type=tuple)

  config.loss = ml_collections.ConfigDict(dict(
      label_smoothing=0.1,
      mac='infonce',         # infonce | none
      mac_weight=0.1, mac_temperature=0.1,
  ))

  config.data = ml_collections.ConfigDict(dict(
      name='synthetic', data_dir='~/micro_dualnet_data', manual_dir='',
      train_split='train', eval_split='test',
      max_frames=150,        # host padding length L (longer clips are subsampled to L)
  ))
  config.data.options = ml_collections.ConfigDict()

  config.augment = ml_collections.ConfigDict(dict(
      num_frames=config.model.get_ref("num_frames"), crop_min_ratio=0.5,
      temporal_jitter=False,  # training: random frame per segment instead of its centre
      rotation=(10.0, 10.0, 10.0),  # degrees about x, y, z (2D data: z only, in-plane)
      scale=0.1, shear=0.05, flip_prob=0.5, joint_dropout=0.05, stream='joint', normalize=True,
      align_yaw=False,       # 3D: turn each clip to face one way (multi-view sets)
  ))

  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, final_lr_ratio=0.01, warmup_steps=500, weight_decay=0.05,
      b1=0.9, b2=0.999, clip_norm=1.0, grad_accum=1,
  ))

  # Evaluation views (test-time augmentation; make_eval_step): num_clips temporal phases per clip,
  # each also mirrored with flip; the logits are averaged. 1 / False: one deterministic pass.
  config.test_time = ml_collections.ConfigDict(dict(num_clips=1, flip=False))

  config.batch_size = 64            # global, over all devices and processes
  config.eval_batch_size = 128
  config.num_epochs = 100
  config.num_train_steps = 0        # > 0 overrides num_epochs
  config.max_steps_per_run = 0      # > 0: checkpoint and exit after this many steps (time slots)
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.async_checkpoints = True
  config.best_metric = 'top1'

  # --mode=predict on new pose data and long recordings (micro_dualnet_jax/predict.py).
  config.predict = ml_collections.ConfigDict(dict(
      window=0,          # frames; 0 = min(2 * model.num_frames, data.max_frames)
      stride=0,          # frames; 0 = window // 2
      batch_size=32,     # windows per jit call (rounded up to a multiple of the device count)
      top_k=5,
      smoothing=0,       # odd majority-filter width in frames; 0 = stride rounded up; 1 = off
      fps=30.0,          # for the times in the outputs
      input_layout='',   # layout of .npy / PYSKL inputs; '' = recognised by joint count
      background_class='background',
      render=True,       # clip.gif for short inputs
  ))
  return config
