"""Tests for the on-device input pipeline (micro_dualnet_jax/pipeline/augment.py)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from micro_dualnet_jax.pipeline import augment
from micro_dualnet_jax.pipeline.augment import AugmentConfig
from micro_dualnet_jax.skeleton import Layout, get_layout

# A 3-joint chain 0 <- 1 <- 2 (3D), for exact bone values.
CHAIN = Layout(
    name='chain3', joint_names=('a', 'b', 'c'), parents=(-1, 0, 1), flip_pairs=(),
    center_joints=(0,), scale_pair=(0, 1), entities={'torso': (0, 1, 2)}, coord_dims=3)
NO_SPATIAL = dict(rotation=0.0, scale=0.0, shear=0.0, flip_prob=0.0, joint_dropout=0.0)
FULL_AUG = dict(rotation=30.0, scale=0.1, shear=0.1, flip_prob=0.5, joint_dropout=0.2)


def random_batch(layout: Layout, batch_size=4, length=20, seed=0, missing=0.1):
  """A padded batch with random lengths, some missing joints and sentinel values in padding."""
  rng = np.random.default_rng(seed)
  v, c = layout.num_joints, layout.coord_dims
  keypoints = rng.normal(size=(batch_size, length, v, c)).astype(np.float32) * 3 + 5
  confidence = rng.uniform(0.2, 1.0, size=(batch_size, length, v)).astype(np.float32)
  confidence[rng.uniform(size=confidence.shape) < missing] = 0.0
  num_frames = rng.integers(1, length + 1, batch_size).astype(np.int32)
  for b, n in enumerate(num_frames):
    keypoints[b, n:] = 777.0
    confidence[b, n:] = 0.5
  return {'keypoints': keypoints, 'confidence': confidence, 'num_frames': num_frames}


def frame_id_batch(num_frames, length, layout=CHAIN):
  """Frame t of every clip holds the value t + 1 everywhere; padding holds a sentinel -50."""
  v, c = layout.num_joints, layout.coord_dims
  t = np.arange(length, dtype=np.float32)[None, :, None, None] + 1
  valid = np.arange(length)[None, :] < np.asarray(num_frames)[:, None]
  keypoints = np.where(valid[..., None, None], t, -50.0) * np.ones((1, 1, v, c), np.float32)
  return {'keypoints': keypoints.astype(np.float32),
          'confidence': np.ones(keypoints.shape[:3], np.float32),
          'num_frames': np.asarray(num_frames, np.int32)}


# ------------------------------------------------------------------------------------------------
# Config.


def test_config_from_dict():
  cfg = AugmentConfig.from_dict({'num_frames': 32, 'rotation': 10, 'stream': 'bone'})
  assert cfg.num_frames == 32 and cfg.stream == 'bone'
  assert cfg.rotation == (10.0, 10.0, 10.0)
  assert AugmentConfig.from_dict({'rotation': [1, 2, 3]}).rotation == (1.0, 2.0, 3.0)
  hash(cfg)  # usable as a static jit argument
  with pytest.raises(ValueError, match='unknown augmentation settings'):
    AugmentConfig.from_dict({'rotaton': 3})
  with pytest.raises(ValueError, match="stream must be one of .*, got 'velocity'"):
    AugmentConfig(stream='velocity')
  with pytest.raises(ValueError, match='crop_min_ratio'):
    AugmentConfig(crop_min_ratio=0.0)


def test_wrong_batch_shape_is_refused():
  batch = random_batch(get_layout('coco17'))
  with pytest.raises(ValueError, match="layout 'kinect20'"):
    augment.eval_inputs(batch, get_layout('kinect20'), AugmentConfig())


# ------------------------------------------------------------------------------------------------
# Temporal sampling.


def test_eval_indices_exact():
  indices, mask = augment.frame_indices(jnp.array([5, 10, 1, 0]), 12, 10)
  np.testing.assert_array_equal(indices[0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
  np.testing.assert_array_equal(indices[1], np.arange(10))
  np.testing.assert_array_equal(indices[2], np.zeros(10))
  np.testing.assert_array_equal(mask, [[1] * 10] * 3 + [[0] * 10])  # n = 0: a filler row
  indices, mask = augment.frame_indices(jnp.array([10, 7]), 12, 5)
  np.testing.assert_array_equal(indices, [[1, 3, 5, 7, 9], [0, 2, 3, 4, 6]])
  np.testing.assert_array_equal(mask, np.ones((2, 5)))


def test_phase_moves_the_read_point_within_each_segment():
  n = jnp.array([10, 5])
  centre, _ = augment.frame_indices(n, 12, 5)
  np.testing.assert_array_equal(augment.frame_indices(n, 12, 5, phase=(1, 2))[0], centre)
  early, _ = augment.frame_indices(n, 12, 5, phase=(1, 4))   # floor((t + 1/4) n / 5)
  late, _ = augment.frame_indices(n, 12, 5, phase=(3, 4))    # floor((t + 3/4) n / 5)
  np.testing.assert_array_equal(early, [[0, 2, 4, 6, 8], [0, 1, 2, 3, 4]])
  np.testing.assert_array_equal(late, [[1, 3, 5, 7, 9], [0, 1, 2, 3, 4]])
  # Two test-time clips of a 10-frame clip read every frame once between them.
  np.testing.assert_array_equal(np.sort(np.concatenate([early[0], late[0]])), np.arange(10))
  with pytest.raises(ValueError, match='phase'):
    augment.frame_indices(n, 12, 5, phase=(2, 2))


def test_mirrored_eval_inputs_are_the_flipped_pose():
  layout = get_layout('kinect20')
  batch = random_batch(layout, missing=0.0)
  cfg = AugmentConfig(num_frames=8)
  plain = augment.eval_inputs(batch, layout, cfg)
  mirrored = augment.eval_inputs(batch, layout, cfg, mirrored=True)
  pose, conf = augment.flip(plain['keypoints'][..., :3], plain['keypoints'][..., 3], layout)
  np.testing.assert_array_equal(mirrored['keypoints'][..., :3], pose)
  np.testing.assert_array_equal(mirrored['keypoints'][..., 3], conf)
  assert not np.allclose(mirrored['keypoints'], plain['keypoints'])


def test_pad_instead_of_resample_indices():
  indices, mask = augment.frame_indices(jnp.array([3, 5, 10]), 12, 5, pad=True)
  np.testing.assert_array_equal(indices, [[0, 1, 2, 0, 0], [0, 1, 2, 3, 4], [1, 3, 5, 7, 9]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1] * 5, [1] * 5])


def test_train_crop_reads_only_valid_frames_and_respects_min_ratio():
  num_frames = np.array([1, 3, 8, 20, 37, 40])
  batch = frame_id_batch(num_frames, 40)
  for pad in (False, True):
    cfg = AugmentConfig(num_frames=48, crop_min_ratio=0.5, normalize=False,
                        pad_instead_of_resample=pad, **NO_SPATIAL)
    run = jax.jit(functools.partial(augment.train_inputs, layout=CHAIN, cfg=cfg))
    lengths = []
    for seed in range(10):
      out = run(batch, jax.random.key(seed))
      values = np.asarray(out['keypoints'][..., 0, 0])  # frame id + 1, or 0 where masked
      mask = np.asarray(out['frame_mask'])
      assert not np.any(values == -50.0)
      for b, n in enumerate(num_frames):
        read = values[b][mask[b] > 0]
        assert 1 <= read.min() and read.max() <= n
        # T >= n, so every frame of the crop is read exactly once (pad) or at least once.
        crop = np.arange(read.min(), read.max() + 1)
        np.testing.assert_array_equal(np.unique(read), crop)
        assert len(crop) >= np.ceil(0.5 * n)
        assert np.all(np.diff(read) >= 0)
        if pad:
          np.testing.assert_array_equal(mask[b], np.arange(48) < len(crop))
          np.testing.assert_array_equal(read, crop)
        else:
          assert mask[b].all()
        lengths.append(len(crop) / n)
    assert min(lengths) < 0.8 and max(lengths) == 1.0  # lengths do vary


def test_temporal_jitter_reads_one_frame_per_segment_in_order_and_varies():
  num_frames = np.array([1, 5, 26, 52, 130, 200])
  batch = frame_id_batch(num_frames, 200)
  cfg = AugmentConfig(num_frames=52, crop_min_ratio=1.0, temporal_jitter=True, normalize=False,
                      **NO_SPATIAL)
  run = jax.jit(functools.partial(augment.train_inputs, layout=CHAIN, cfg=cfg))
  draws = []
  for seed in range(8):
    out = run(batch, jax.random.key(seed))
    values = np.asarray(out['keypoints'][..., 0, 0]).astype(int) - 1   # frame ids read
    assert np.asarray(out['frame_mask']).all()
    for b, n in enumerate(num_frames):
      read = values[b]
      assert np.all(np.diff(read) >= 0) and read.min() >= 0 and read.max() < n
      # Output frame t reads from its own segment [floor(t n / 52), floor((t + 1) n / 52)).
      t = np.arange(52)
      lower = (t * n) // 52
      upper = np.maximum(((t + 1) * n) // 52, lower + 1)
      assert np.all((lower <= read) & (read < upper))
      if n <= 52:
        np.testing.assert_array_equal(np.unique(read), np.arange(n))   # nothing skipped
    draws.append(values)
  draws = np.stack(draws)
  # Long clips are read differently from draw to draw; without jitter the read is fixed.
  assert len({tuple(d[4]) for d in draws}) == 8
  plain = jax.jit(functools.partial(augment.train_inputs, layout=CHAIN,
                                    cfg=dataclasses.replace(cfg, temporal_jitter=False)))
  centre = np.asarray(plain(batch, jax.random.key(0))['keypoints'][4, :, 0, 0]).astype(int) - 1
  np.testing.assert_array_equal(centre, (2 * np.arange(52) + 1) * 130 // 104)


def test_eval_is_independent_of_host_padding():
  layout = get_layout('openpose22')
  short = random_batch(layout, length=12, seed=3)
  long = {k: v for k, v in short.items()}
  extra = np.full((4, 30) + short['keypoints'].shape[2:], 123.0, np.float32)
  long['keypoints'] = np.concatenate([short['keypoints'], extra], 1)
  long['confidence'] = np.concatenate([short['confidence'], np.ones((4, 30, 22), np.float32)], 1)
  for pad in (False, True):
    cfg = AugmentConfig(num_frames=16, stream='joint_motion', pad_instead_of_resample=pad)
    a = augment.eval_inputs(short, layout, cfg)
    b = augment.eval_inputs(long, layout, cfg)
    np.testing.assert_array_equal(a['keypoints'], b['keypoints'])
    np.testing.assert_array_equal(a['frame_mask'], b['frame_mask'])


# ------------------------------------------------------------------------------------------------
# Entry points under jit.


@pytest.mark.parametrize('layout_name', ['openpose22', 'kinect20'])
def test_shapes_dtypes_and_determinism_under_jit(layout_name):
  layout = get_layout(layout_name)
  batch = random_batch(layout, batch_size=3, length=15)
  cfg = AugmentConfig(num_frames=8, stream='bone_motion', **FULL_AUG)
  train = jax.jit(functools.partial(augment.train_inputs, layout=layout, cfg=cfg))
  evaluate = jax.jit(functools.partial(augment.eval_inputs, layout=layout, cfg=cfg))
  c_in = layout.coord_dims + 1
  for out in (train(batch, jax.random.key(0)), evaluate(batch)):
    assert out['keypoints'].shape == (3, 8, layout.num_joints, c_in)
    assert out['frame_mask'].shape == (3, 8)
    assert out['keypoints'].dtype == out['frame_mask'].dtype == jnp.float32
    assert np.all(np.isfinite(out['keypoints']))
  a, b = train(batch, jax.random.key(1)), train(batch, jax.random.key(1))
  np.testing.assert_array_equal(a['keypoints'], b['keypoints'])
  c = train(batch, jax.random.key(2))
  assert not np.allclose(a['keypoints'], c['keypoints'])
  np.testing.assert_array_equal(evaluate(batch)['keypoints'], evaluate(batch)['keypoints'])


@pytest.mark.parametrize('stream', augment.STREAMS)
def test_missing_joints_stay_zero_after_every_transform(stream):
  layout = get_layout('openpose28')
  batch = random_batch(layout, batch_size=6, length=10, missing=0.3)
  batch['keypoints'][batch['confidence'] == 0] = 9.0  # garbage under missing joints
  cfg = AugmentConfig(num_frames=12, stream=stream, pad_instead_of_resample=True, **FULL_AUG)
  for out in (augment.train_inputs(batch, jax.random.key(4), layout, cfg),
              augment.eval_inputs(batch, layout, cfg)):
    x = np.asarray(out['keypoints'])
    missing = x[..., -1] == 0
    assert missing.any() and (~missing).any()
    np.testing.assert_array_equal(x[missing], 0.0)
    np.testing.assert_array_equal(x[np.asarray(out['frame_mask']) == 0], 0.0)


# ------------------------------------------------------------------------------------------------
# Normalisation.


def test_normalize_root_at_origin_and_unit_median_scale():
  layout = get_layout('coco17')  # root = mean of shoulders 5, 6; scale = distance 5-6
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 5, 17, 2)).astype(np.float32) * 50 + 300
  conf = np.ones((1, 5, 17), np.float32)
  conf[0, 0, [5, 6]] = 0.0  # no root in frame 0: frame 1 is the anchor
  conf[0, 2, 6] = 0.0  # frame 2: left shoulder only, scale pair incomplete
  conf[0, 1, 3] = 0.0
  x[0, :, 6] = x[0, :, 5] + np.array([[0, 2], [0, 4], [0, 1000], [0, 6], [0, 8]])
  mask = np.array([[1, 1, 1, 1, 0]], np.float32)  # frame 4 is padding
  out = np.asarray(augment.normalize(x, conf, mask, layout))
  np.testing.assert_allclose(out[0, 1, [5, 6]].mean(0), [0, 0], atol=1e-5)
  # Median of the distances 4 (frame 1) and 6 (frame 3) is 5.
  np.testing.assert_allclose(np.linalg.norm(out[0, :, 5] - out[0, :, 6], axis=-1)[[1, 3]],
                             [4 / 5, 6 / 5], rtol=1e-5)
  anchor = (x[0, 1, 5] + x[0, 1, 6]) / 2
  np.testing.assert_allclose(out[0, 3, 0], (x[0, 3, 0] - anchor) / 5, rtol=1e-5)
  np.testing.assert_array_equal(out[0, 0, [5, 6]], 0.0)
  np.testing.assert_array_equal(out[0, 1, 3], 0.0)
  np.testing.assert_array_equal(out[0, 4], 0.0)
  # Invariant to translation and scale of the input.
  moved = np.asarray(augment.normalize(x * 3 - 40, conf, mask, layout))
  np.testing.assert_allclose(moved, out, atol=1e-4)


def test_normalize_without_scale_reference_keeps_scale():
  x = np.array([[[[1., 2, 3], [4, 4, 4], [0, 0, 0]]]], np.float32)  # (1, 1, 3, 3)
  conf = np.array([[[1., 0, 1]]], np.float32)  # joint 1 (scale pair partner) missing
  out = np.asarray(augment.normalize(x, conf, np.ones((1, 1), np.float32), CHAIN))
  np.testing.assert_allclose(out[0, 0], [[0, 0, 0], [0, 0, 0], [-1, -2, -3]])


def yaw(points: np.ndarray, degrees: float) -> np.ndarray:
  """Rotates (..., 3) points about the y axis."""
  c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
  return points @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]], np.float32).T


def test_align_yaw_puts_the_first_frame_left_right_axis_on_x_and_removes_camera_azimuth():
  layout = get_layout('kinect20')  # torso pairs: shoulders (4, 8) and hips (12, 16)
  assert layout.torso_pairs == ((4, 8), (12, 16))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 6, 20, 3)).astype(np.float32)
  conf = np.ones((1, 6, 20), np.float32)
  conf[0, 0, [4, 12]] = 0.0             # frame 0 has no visible pair: frame 1 is the reference
  conf[0, 3, 7] = 0.0
  mask = np.array([[1, 1, 1, 1, 1, 0]], np.float32)
  x = np.where(conf[..., None] > 0, x, 0.0)
  out = np.asarray(augment.align_yaw(x, conf, mask, layout))
  across = out[0, 1, 4] - out[0, 1, 8] + out[0, 1, 12] - out[0, 1, 16]
  assert across[0] > 0 and abs(across[2]) < 1e-5
  np.testing.assert_allclose(out[0, :5, :, 1], x[0, :5, :, 1])          # heights unchanged
  np.testing.assert_allclose(np.linalg.norm(out[0, :5, :, [0, 2]], axis=0),
                             np.linalg.norm(x[0, :5, :, [0, 2]], axis=0), rtol=1e-5)
  np.testing.assert_array_equal(out[0, 3, 7], 0.0)
  np.testing.assert_array_equal(out[0, 5], 0.0)
  # The same clip seen from another azimuth gives the same aligned clip.
  for degrees in (37.0, -120.0, 180.0):
    turned = np.asarray(augment.align_yaw(yaw(x, degrees), conf, mask, layout))
    np.testing.assert_allclose(turned, out, atol=1e-5)


def test_align_yaw_leaves_clips_without_a_reference_and_refuses_2d_layouts():
  layout = get_layout('kinect20')
  x = np.random.default_rng(1).normal(size=(1, 3, 20, 3)).astype(np.float32)
  conf = np.ones((1, 3, 20), np.float32)
  conf[0, :, [8, 16]] = 0.0             # no right shoulder or hip anywhere
  x = np.where(conf[..., None] > 0, x, 0.0)
  out = np.asarray(augment.align_yaw(x, conf, np.ones((1, 3), np.float32), layout))
  np.testing.assert_array_equal(out, x)
  with pytest.raises(ValueError, match="align_yaw needs a 3D layout.*'coco17' has 2D"):
    augment.align_yaw(np.zeros((1, 2, 17, 2)), np.ones((1, 2, 17)), np.ones((1, 2)),
                      get_layout('coco17'))


def test_aligned_eval_inputs_do_not_depend_on_the_camera_azimuth():
  layout = get_layout('kinect20')
  batch = random_batch(layout, missing=0.0)
  cfg = AugmentConfig(num_frames=8, align_yaw=True, **NO_SPATIAL)
  turned = dict(batch, keypoints=yaw(batch['keypoints'], 75.0))
  np.testing.assert_allclose(np.asarray(augment.eval_inputs(turned, layout, cfg)['keypoints']),
                             np.asarray(augment.eval_inputs(batch, layout, cfg)['keypoints']),
                             atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Spatial augmentation.


@pytest.mark.parametrize('layout_name', ['openpose22', 'kinect20', 'coco17'])
def test_flip(layout_name):
  layout = get_layout(layout_name)
  batch = random_batch(layout, batch_size=2, length=6)
  x, conf = batch['keypoints'], batch['confidence']
  fx, fconf = augment.flip(x, conf, layout)
  twice = augment.flip(fx, fconf, layout)
  np.testing.assert_array_equal(twice[0], x)
  np.testing.assert_array_equal(twice[1], conf)
  left = layout.joint_names.index('left_wrist')
  right = layout.joint_names.index('right_wrist')
  sign = np.array([-1.0] + [1.0] * (layout.coord_dims - 1))
  np.testing.assert_array_equal(fx[..., left, :], x[..., right, :] * sign)
  np.testing.assert_array_equal(fx[..., right, :], x[..., left, :] * sign)
  np.testing.assert_array_equal(fconf[..., left], conf[..., right])
  # Gathering entities by joint index: the flipped left hand is the original right hand.
  index, mask = layout.entity_index_table()
  k_left, k_right = layout.entity_names.index('left_hand'), layout.entity_names.index('right_hand')
  hands = (index[k_left][mask[k_left] > 0], index[k_right][mask[k_right] > 0])
  np.testing.assert_array_equal(fx[..., hands[0], :], x[..., hands[1], :] * sign)
  np.testing.assert_array_equal(fx[..., hands[1], :], x[..., hands[0], :] * sign)
  perm = layout.entity_flip_permutation()
  assert perm[k_left] == k_right and perm[k_right] == k_left


def test_flip_prob_one_flips_every_clip():
  layout = get_layout('body25')
  batch = random_batch(layout, batch_size=2, length=5, missing=0.0)
  cfg = AugmentConfig(**{**NO_SPATIAL, 'flip_prob': 1.0})
  x, conf = jnp.asarray(batch['keypoints']), jnp.asarray(batch['confidence'])
  out = augment.augment(jax.random.key(0), x, conf, layout, cfg)
  expected = augment.flip(x, conf, layout)
  np.testing.assert_array_equal(out[0], expected[0])
  np.testing.assert_array_equal(out[1], expected[1])


def test_rotation_preserves_bone_lengths_3d():
  layout = get_layout('kinect25')
  batch = random_batch(layout, batch_size=4, length=6, missing=0.0)
  x, conf = jnp.asarray(batch['keypoints']), jnp.asarray(batch['confidence'])
  cfg = AugmentConfig(**{**NO_SPATIAL, 'rotation': (30.0, 30.0, 30.0)})
  rx, _ = augment.augment(jax.random.key(0), x, conf, layout, cfg)
  assert not np.allclose(rx, x)
  before = np.linalg.norm(augment.bones(x, conf, layout)[0], axis=-1)
  after = np.linalg.norm(augment.bones(rx, conf, layout)[0], axis=-1)
  np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
  r = np.asarray(augment.random_affine(jax.random.key(1), 64, 3, cfg))
  np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  angles = np.abs(np.arctan2(r[:, 1, 0], r[:, 0, 0]))  # z angle of Rz Ry Rx
  assert angles.max() <= np.deg2rad(30) + 1e-5 and angles.max() > np.deg2rad(20)


def test_2d_rotation_is_in_plane_and_scale_shear_ranges():
  cfg = AugmentConfig(**{**NO_SPATIAL, 'rotation': (90.0, 90.0, 10.0)})
  r = np.asarray(augment.random_affine(jax.random.key(0), 256, 2, cfg))
  np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(2), r.shape),
                             atol=1e-5)
  angles = np.arctan2(r[:, 1, 0], r[:, 0, 0])
  assert np.abs(angles).max() <= np.deg2rad(10) + 1e-6
  cfg = AugmentConfig(**{**NO_SPATIAL, 'scale': 0.1})
  s = np.asarray(augment.random_affine(jax.random.key(0), 256, 2, cfg))
  np.testing.assert_allclose(s[:, 0, 1], 0.0, atol=1e-7)
  assert 0.9 <= s[:, 0, 0].min() < 0.92 and 1.08 < s[:, 0, 0].max() <= 1.1
  np.testing.assert_array_equal(s[:, 0, 0], s[:, 1, 1])
  cfg = AugmentConfig(**{**NO_SPATIAL, 'shear': 0.2})
  h = np.asarray(augment.random_affine(jax.random.key(0), 256, 3, cfg))
  np.testing.assert_allclose(np.diagonal(h, axis1=1, axis2=2), 1.0)
  assert 0.18 < np.abs(h[:, 0, 1]).max() <= 0.2


def test_drop_axis_zeroes_one_axis_of_a_whole_clip():
  layout = get_layout('kinect20')
  x = jnp.ones((200, 8, 20, 3), jnp.float32)
  conf = jnp.ones((200, 8, 20), jnp.float32)
  cfg = AugmentConfig(**{**NO_SPATIAL, 'drop_axis_prob': 0.5})
  dx, dconf = augment.augment(jax.random.key(0), x, conf, layout, cfg)
  dx = np.asarray(dx)
  zero_axes = (dx == 0).all(axis=(1, 2))                      # (B, C): axis zero everywhere
  assert set(zero_axes.sum(1)) == {0, 1}                      # none or exactly one axis
  assert np.all((dx == 0) == zero_axes[:, None, None, :])     # nothing else changes
  assert abs(zero_axes.any(1).mean() - 0.5) < 0.1 and zero_axes.sum(0).min() > 0
  np.testing.assert_array_equal(dconf, conf)                   # the joints stay present


def test_drop_joints_removes_a_block_of_joints_over_a_run_of_frames():
  layout = get_layout('kinect20')
  x = jnp.ones((100, 32, 20, 3), jnp.float32)
  conf = jnp.ones((100, 32, 20), jnp.float32)
  cfg = AugmentConfig(num_frames=32, **{**NO_SPATIAL, 'drop_joints_prob': 0.5,
                                        'drop_joints_count': (4, 12),
                                        'drop_joints_frames': (16, 32)})
  dx, dconf = augment.augment(jax.random.key(1), x, conf, layout, cfg)
  dropped = np.asarray(dconf) == 0
  np.testing.assert_array_equal(np.asarray(dx)[dropped], 0.0)
  hit = dropped.any(axis=(1, 2))
  assert 0.35 < hit.mean() < 0.65
  for clip in dropped[hit]:
    frames, joints = clip.any(axis=1), clip.any(axis=0)
    assert 4 <= joints.sum() <= 12 and 16 <= frames.sum() <= 32
    run = np.flatnonzero(frames)
    assert run[-1] - run[0] + 1 == len(run)                   # consecutive frames
    assert np.all(clip == frames[:, None] & joints[None, :])  # the same joints in each
  with pytest.raises(ValueError, match='drop_joints_count must be'):
    AugmentConfig(drop_joints_count=(5, 2))


def test_joint_dropout_rate_and_whole_clip():
  layout = get_layout('kinect25')
  x = jnp.ones((64, 4, 25, 3), jnp.float32)
  conf = jnp.ones((64, 4, 25), jnp.float32)
  cfg = AugmentConfig(**{**NO_SPATIAL, 'joint_dropout': 0.2})
  dx, dconf = augment.augment(jax.random.key(0), x, conf, layout, cfg)
  dropped = np.asarray(dconf) == 0
  assert np.all(dropped == dropped[:, :1])  # a joint is dropped for the whole clip
  assert abs(dropped.mean() - 0.2) < 0.03  # 1600 Bernoulli draws: sd 0.01
  np.testing.assert_array_equal(np.asarray(dx)[dropped], 0.0)
  np.testing.assert_array_equal(np.asarray(dx)[~dropped], 1.0)


# ------------------------------------------------------------------------------------------------
# Streams.


def test_bone_stream_on_a_chain():
  x = np.array([[[0., 0, 0], [1, 0, 0], [1, 2, 0]],
                [[5., 5, 5], [9, 9, 9], [1, 1, 1]]], np.float32)[None]  # (1, 2, 3, 3)
  conf = np.array([[[1., 0.5, 0.8], [1, 0, 1]]], np.float32)
  b, c = augment.bones(x, conf, CHAIN)
  np.testing.assert_array_equal(b[0, 0], [[0, 0, 0], [1, 0, 0], [0, 2, 0]])
  np.testing.assert_array_equal(c[0, 0], [1, 0.5, 0.5])
  # Joint 1 missing in frame 1: bones 1 and 2 are missing.
  np.testing.assert_array_equal(b[0, 1], np.zeros((3, 3)))
  np.testing.assert_array_equal(c[0, 1], [1, 0, 0])


def test_motion_streams_exact():
  x = np.zeros((1, 4, 3, 3), np.float32)
  x[0, :, :, 0] = np.array([[0, 1, 2], [1, 3, 5], [3, 6, 9], [9, 9, 9]])
  conf = np.ones((1, 4, 3), np.float32)
  conf[0, 2, 2] = 0.0
  mask = np.array([[1, 1, 1, 0]], np.float32)  # frame 3 is padding
  m, c = augment.motion(x, conf, mask)
  np.testing.assert_array_equal(m[0, :, :, 0], [[1, 2, 3], [2, 3, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(m[..., 1:], 0.0)
  np.testing.assert_array_equal(c[0], [[1, 1, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
  bm, bc = augment.to_stream(x, conf, mask, CHAIN, 'bone_motion')
  # Bones along x: frame 0 [0, 1, 1], frame 1 [0, 2, 2], frame 2 [0, 3, missing].
  np.testing.assert_array_equal(bm[0, :, :, 0], [[0, 1, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(bc[0], [[1, 1, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_eval_inputs_exact_on_hand_made_clip():
  batch = frame_id_batch([5], 8)
  cfg = AugmentConfig(num_frames=10, normalize=False, stream='joint')
  out = augment.eval_inputs(batch, CHAIN, cfg)
  np.testing.assert_array_equal(out['keypoints'][0, :, 1, 0],
                                np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]) + 1)
  np.testing.assert_array_equal(out['keypoints'][0, :, :, 3], 1.0)  # confidence channel
  out = augment.eval_inputs(batch, CHAIN, dataclasses.replace(cfg, stream='joint_motion'))
  np.testing.assert_array_equal(out['keypoints'][0, :, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1, 0, 0])


def test_random_sampling_draws_distinct_frames_in_order_with_their_places():
  """temporal_sampling='random': T distinct frames of the clip, increasing, a new draw per key,
  uniform over the clip; shorter clips are read by the segment rule; frame_positions are the
  frames' places (index + 1/2) / n."""
  num_frames = np.array([1, 5, 26, 52, 130, 200])
  batch = frame_id_batch(num_frames, 200)
  cfg = AugmentConfig(num_frames=52, crop_min_ratio=1.0, temporal_sampling='random',
                      normalize=False, **NO_SPATIAL)
  run = jax.jit(functools.partial(augment.train_inputs, layout=CHAIN, cfg=cfg))
  segments = jax.jit(functools.partial(
      augment.train_inputs, layout=CHAIN, cfg=dataclasses.replace(cfg, temporal_sampling='segments')))
  shorter = np.asarray(segments(batch, jax.random.key(0))['keypoints'][:3, :, 0, 0])
  counts = np.zeros(200)
  draws = []
  for seed in range(40):
    out = run(batch, jax.random.key(seed))
    read = np.asarray(out['keypoints'][..., 0, 0]).astype(int) - 1       # frame ids read
    np.testing.assert_array_equal(np.asarray(out['keypoints'][:3, :, 0, 0]), shorter)
    for b, n in enumerate(num_frames[3:], start=3):
      assert np.all(np.diff(read[b]) > 0) and read[b].min() >= 0 and read[b].max() < n
    np.testing.assert_allclose(np.asarray(out['frame_positions']),
                               (read + 0.5) / num_frames[:, None], rtol=1e-6)
    np.add.at(counts, read[5], 1)
    draws.append(tuple(read[4]))
  assert len(set(draws)) == 40
  # Every frame of the 200-frame clip is drawn with probability 52 / 200: 10.4 times in 40 draws.
  assert counts.min() >= 1 and abs(counts.mean() - 10.4) < 1e-9 and counts.max() <= 25


def test_eval_has_no_frame_positions_and_training_keeps_its_draws():
  """The default sampling is unchanged by the positions: the same key reads the same frames as
  the segment rule of `frame_indices`."""
  num_frames = np.array([7, 130])
  batch = frame_id_batch(num_frames, 200)
  cfg = AugmentConfig(num_frames=16, crop_min_ratio=0.5, normalize=False, **NO_SPATIAL)
  out = augment.train_inputs(batch, jax.random.key(3), CHAIN, cfg)
  indices, mask = augment.frame_indices(jnp.asarray(num_frames), 200, 16,
                                        key=jax.random.split(jax.random.key(3))[0],
                                        crop_min_ratio=0.5)
  np.testing.assert_array_equal(np.asarray(out['keypoints'][..., 0, 0]).astype(int) - 1, indices)
  np.testing.assert_allclose(np.asarray(out['frame_positions']),
                             (np.asarray(indices) + 0.5) / num_frames[:, None] * np.asarray(mask))
  assert set(augment.eval_inputs(batch, CHAIN, cfg)) == {'keypoints', 'frame_mask'}
