"""Temporal sampling, normalisation, augmentation and input streams, run on the device inside jit.

The host loader pads every clip of a batch to a common length L:

  batch = {'keypoints':  (B, L, V, C) float32, C = 2 (pixels) or 3 (metres),
           'confidence': (B, L, V) float32, 0 marks a missing joint,
           'num_frames': (B,) int32, the valid length n; frames n..L-1 are padding}

`train_inputs` and `eval_inputs` turn it into the model input of a fixed length T:

  {'keypoints':  (B, T, V, C + 1) float32,
   'frame_mask': (B, T) float32, 1 for real frames, 0 for padded ones}

**The contract with the model.** The last channel of `keypoints` is the confidence/visibility of
the joint: the detector confidence for 2D data, 1 where the joint is present for 3D data (what the
readers put in `confidence`), 0 for a missing joint. A missing joint also has all coordinates 0, and
every channel of a padded frame is 0. For the derived streams the channel is the visibility of the
derived quantity (see `bones` and `motion`).

Steps, each a public function, all pure and jit-able (shapes and the config are static):

1. `sample_frames` (indices from `frame_indices`): a window of the valid frames is read into T
   frames by nearest-frame indexing. Training: a random window; evaluation: the whole clip.
2. `normalize` (if `cfg.normalize`): root-centred, scale-normalised; then `align_yaw` (if
   `cfg.align_yaw`, 3D only): turned about the vertical axis to face the same way in every clip.
3. `augment` (training only): horizontal flip, rotation / scale / shear, joint dropout.
4. `to_stream`: joint, bone, joint motion or bone motion.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from micro_dualnet_jax.config.augment import STREAMS, AugmentConfig
from micro_dualnet_jax.skeleton import Layout

# A scale reference at or below this is treated as absent (normalisation then keeps the scale).
_MIN_SCALE = 1e-6


# ------------------------------------------------------------------------------------------------
# Temporal sampling.


def frame_indices(
    num_frames: jax.Array,
    max_frames: int,
    num_out: int,
    *,
    key: jax.Array | None = None,
    crop_min_ratio: float = 1.0,
    pad: bool = False,
    jitter: bool = False,
    random_order: bool = False,
    phase: tuple[int, int] = (1, 2),
) -> tuple[jax.Array, jax.Array]:
  """Which input frame feeds each of the `num_out` output frames.

  A window [start, start + length) of the n valid frames is read into m output frames by taking,
  for each of m equal segments of the window, the frame nearest its centre:

    index[t] = start + floor((t + 1/2) * length / m),   t < m.

  Normally m = num_out: short windows repeat frames, long ones are subsampled, and frame_mask is 1
  everywhere (e.g. n = 5, T = 10 gives [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]; n = 10, T = 5 gives
  [1, 3, 5, 7, 9]). With `pad`, m = min(length, num_out): a window no longer than num_out is read at
  its own speed (index[t] = start + t) and the remaining output frames are padding (frame_mask 0);
  a longer one is subsampled as before. Evaluation (`key` None) reads the whole clip; training
  draws length uniformly in [ceil(crop_min_ratio * n), n] (at least 1) and start uniformly in
  [0, n - length]. With `jitter` (training only), output frame t instead reads a frame drawn
  uniformly from segment t's frames [floor(t length / m), floor((t + 1) length / m)) (the first
  of them when the segment is empty): still non-decreasing, a different selection per draw, and a
  window no longer than m is still read whole.
  With `random_order` (training only, SkateFormer's sampling), a window of at least m frames is
  read as m distinct frames drawn uniformly at random from it, in increasing order; a shorter
  window is read by the segment rule (it has no m distinct frames to draw).
  `phase` = (p, q) moves the read point of every segment from its centre to the fraction p / q of
  it, index[t] = start + floor((t + p / q) * length / m) (default (1, 2): the centre); test-time
  multi-clip evaluation reads clip c of n at phase (2c + 1, 2n).
  Indices always point at valid frames (padded output slots repeat `start`).
  A row with n = 0 (a batch filler) gets frame_mask 0 everywhere.

  Args:
    num_frames: (B,) int, valid length n of each clip (clipped to [0, max_frames]).
    max_frames: L, the padded length of the input.
    num_out: T.
    key: PRNG key for a random training crop; None for deterministic evaluation sampling.
    crop_min_ratio: smallest fraction of the clip a training crop keeps.
    pad: pad short windows instead of resampling them.
    jitter: random frame within each segment (needs `key`).
    random_order: m distinct random frames of the window, in order (needs `key`).
    phase: (p, q) integers, 0 <= p < q: where in each segment the frame is read.

  Returns:
    indices: (B, T) int32 into the L input frames.
    frame_mask: (B, T) float32.
  """
  p, q = phase
  if not 0 <= p < q:
    raise ValueError(f'phase must be (p, q) with 0 <= p < q, got {phase}')
  n = jnp.clip(jnp.asarray(num_frames, jnp.int32), 0, max_frames)
  if key is None:
    start, length = jnp.zeros_like(n), n
  else:
    k_length, k_start = jax.random.split(key)
    shortest = jnp.minimum(jnp.maximum(jnp.ceil(crop_min_ratio * n).astype(jnp.int32), 1), n)
    length = shortest + _uniform_int(k_length, n - shortest + 1)
    start = _uniform_int(k_start, n - length + 1)
  m = jnp.minimum(length, num_out) if pad else jnp.full_like(length, num_out)
  m = jnp.maximum(m, 1)[:, None]
  t = jnp.arange(num_out, dtype=jnp.int32)
  # Integer arithmetic, so the rule is exact for any length.
  indices = start[:, None] + ((q * t + p) * length[:, None]) // (q * m)
  if jitter and key is not None:
    # Segment t holds frames [floor(t L / m), floor((t + 1) L / m)); draw one of them.
    # For t < m the segment ends at or before the window's end, so no index passes it.
    lower = (t * length[:, None]) // m
    upper = jnp.maximum(((t + 1) * length[:, None]) // m, lower + 1)
    # fold_in, not a third split: runs without jitter keep their crops.
    indices = start[:, None] + lower + _uniform_int(jax.random.fold_in(key, 2), upper - lower)
  if random_order and key is not None and max_frames >= num_out:
    # The num_out frames of the window with the smallest uniform draws, in frame order.
    frames = jnp.arange(max_frames, dtype=jnp.int32)
    in_window = (frames >= start[:, None]) & (frames < (start + length)[:, None])
    draws = jnp.where(in_window, jax.random.uniform(jax.random.fold_in(key, 5), in_window.shape),
                      2.0)
    drawn = jnp.sort(jax.lax.top_k(-draws, num_out)[1], axis=1).astype(jnp.int32)
    indices = jnp.where((length >= num_out)[:, None], drawn, indices)
  mask = (t < m) & (length[:, None] > 0)
  indices = jnp.where(mask, indices, start[:, None])
  return indices, mask.astype(jnp.float32)


def frame_positions(indices: jax.Array, num_frames: jax.Array, frame_mask: jax.Array
                    ) -> jax.Array:
  """Where each sampled frame lies in its clip: (index + 1/2) / n in (0, 1), 0 for padding.
  indices (B, T) from `frame_indices`, num_frames (B,) n, frame_mask (B, T) -> (B, T) float32."""
  n = jnp.maximum(jnp.asarray(num_frames, jnp.float32), 1.0)[:, None]
  return (indices.astype(jnp.float32) + 0.5) / n * frame_mask


def _uniform_int(key: jax.Array, count: jax.Array) -> jax.Array:
  """Integers drawn uniformly from [0, count) elementwise; 0 where count <= 1. count: any shape."""
  u = jax.random.uniform(key, count.shape)
  return jnp.clip(jnp.floor(u * count).astype(jnp.int32), 0, jnp.maximum(count - 1, 0))


def sample_frames(
    batch: Mapping[str, jax.Array],
    num_out: int,
    *,
    key: jax.Array | None = None,
    crop_min_ratio: float = 1.0,
    pad: bool = False,
    jitter: bool = False,
    random_order: bool = False,
    phase: tuple[int, int] = (1, 2),
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Reads T frames of every clip (rule: `frame_indices`) and zeroes what is not real.

  Args:
    batch: 'keypoints' (B, L, V, C), 'confidence' (B, L, V), 'num_frames' (B,).
    num_out, key, crop_min_ratio, pad, jitter, random_order, phase: as for `frame_indices`.

  Returns:
    keypoints (B, T, V, C) float32, 0 for missing joints and padded frames.
    confidence (B, T, V) float32, 0 for padded frames.
    frame_mask (B, T) float32.
  """
  indices, frame_mask = frame_indices(
      batch['num_frames'], np.shape(batch['keypoints'])[1], num_out, key=key,
      crop_min_ratio=crop_min_ratio, pad=pad, jitter=jitter, random_order=random_order,
      phase=phase)
  return read_frames(batch, indices, frame_mask)


def read_frames(batch: Mapping[str, jax.Array], indices: jax.Array, frame_mask: jax.Array
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`sample_frames` for given indices (B, T) and frame_mask (B, T) (`frame_indices`)."""
  keypoints = jnp.asarray(batch['keypoints'], jnp.float32)
  confidence = jnp.asarray(batch['confidence'], jnp.float32)
  take = jax.vmap(lambda x, i: x[i])
  confidence = take(confidence, indices) * frame_mask[:, :, None]
  keypoints = jnp.where((confidence > 0)[..., None], take(keypoints, indices), 0.0)
  return keypoints, confidence, frame_mask


# ------------------------------------------------------------------------------------------------
# Normalisation.


def normalize(
    keypoints: jax.Array, confidence: jax.Array, frame_mask: jax.Array, layout: Layout
) -> jax.Array:
  """Root-centres and scale-normalises every clip.

  The root of a frame is the mean of the visible `layout.center_joints`. Each clip is shifted by
  the root of its first frame that has one, so the root sits at the origin in that frame and the
  body's own movement (leaning, rising) is kept; if no frame has a visible root joint, by the mean
  of all visible joints. It is then divided by the median over frames of the `layout.scale_pair`
  distance, taken over the real frames given (in the pipeline: the T sampled ones) where both joints
  are visible (scale kept when there is none or it is ~0). Missing joints and padded frames stay 0.

  Args:
    keypoints: (B, T, V, C).
    confidence: (B, T, V); 0 marks a missing joint.
    frame_mask: (B, T).
    layout: the joint layout.

  Returns:
    (B, T, V, C) normalised keypoints.
  """
  center = np.asarray(layout.center_joints)
  a, b = layout.scale_pair

  def one_clip(x, conf, mask):  # (T, V, C), (T, V), (T,)
    visible = (conf > 0) & (mask[:, None] > 0)
    center_visible = visible[:, center]
    count = center_visible.sum(-1)
    root = (x[:, center] * center_visible[..., None]).sum(1) / jnp.maximum(count, 1)[:, None]
    centroid = (x * visible[..., None]).sum((0, 1)) / jnp.maximum(visible.sum(), 1)
    has_root = count > 0
    anchor = jnp.where(has_root.any(), root[jnp.argmax(has_root)], centroid)
    distance = jnp.linalg.norm(x[:, a] - x[:, b], axis=-1)
    median = jnp.nanmedian(jnp.where(visible[:, a] & visible[:, b], distance, jnp.nan))
    scale = jnp.where(jnp.isfinite(median) & (median > _MIN_SCALE), median, 1.0)
    return jnp.where(visible[..., None], (x - anchor) / scale, 0.0)

  return jax.vmap(one_clip)(keypoints, confidence, frame_mask)


def align_yaw(
    keypoints: jax.Array, confidence: jax.Array, frame_mask: jax.Array, layout: Layout
) -> jax.Array:
  """Turns every 3D clip about the vertical (y) axis to face one way (view alignment).

  The body's left-right axis a = sum over the visible `layout.torso_pairs` of x_left - x_right
  is taken in the first real frame where its horizontal part (a_x, a_z) is non-zero; the clip is
  rotated about y (through the origin, i.e. the root after `normalize`) by the angle that maps
  (a_x, a_z) to (|a|, 0):

    x' = c x + s z,   y' = y,   z' = -s x + c z,   (c, s) = (a_x, a_z) / |(a_x, a_z)|.

  A clip without such a frame is left as it is. The vertical is the camera's y axis (Kinect camera
  space), so only the azimuth is normalised; tilt and roll stay for the augmentation to cover.
  Horizontal flips keep aligned clips aligned (the flipped left-right axis is (a_x, -a_z)).

  Args:
    keypoints: (B, T, V, 3).
    confidence: (B, T, V); 0 marks a missing joint.
    frame_mask: (B, T).
    layout: a 3D layout with shoulder or hip flip pairs.

  Returns:
    (B, T, V, 3) rotated keypoints; missing joints and padded frames stay 0.
  """
  if layout.coord_dims != 3 or not layout.torso_pairs:
    raise ValueError(f'align_yaw needs a 3D layout with left/right shoulders or hips; '
                     f'{layout.name!r} has {layout.coord_dims}D coordinates and torso pairs '
                     f'{layout.torso_pairs}')
  left, right = (np.asarray(side) for side in zip(*layout.torso_pairs))

  def one_clip(x, conf, mask):  # (T, V, 3), (T, V), (T,)
    visible = (conf > 0) & (mask[:, None] > 0)
    pair_visible = (visible[:, left] & visible[:, right])[..., None]
    across = jnp.sum((x[:, left] - x[:, right]) * pair_visible, axis=1)   # (T, 3)
    horizontal = across[:, jnp.array([0, 2])]
    length = jnp.linalg.norm(horizontal, axis=-1)
    usable = length > _MIN_SCALE
    first = jnp.argmax(usable)
    cos_sin = jnp.where(usable.any(), horizontal[first] / jnp.maximum(length[first], _MIN_SCALE),
                        jnp.array([1.0, 0.0]))
    c, s = cos_sin[0], cos_sin[1]
    rotated = jnp.stack([c * x[..., 0] + s * x[..., 2], x[..., 1], -s * x[..., 0] + c * x[..., 2]],
                        axis=-1)
    return jnp.where(visible[..., None], rotated, 0.0)

  return jax.vmap(one_clip)(keypoints, confidence, frame_mask)


# ------------------------------------------------------------------------------------------------
# Spatial augmentation.


def flip(
    keypoints: jax.Array, confidence: jax.Array, layout: Layout
) -> tuple[jax.Array, jax.Array]:
  """Horizontal flip: negates x and swaps left/right joints (`layout.flip_permutation()`).

  Because the joints swap, a model that gathers entities by joint index sees the left and right
  hand entities swap too.

  Args:
    keypoints: (..., V, C).
    confidence: (..., V).
    layout: the joint layout.

  Returns:
    The flipped (keypoints, confidence), same shapes.
  """
  perm = layout.flip_permutation()
  sign = np.ones(keypoints.shape[-1], np.float32)
  sign[0] = -1.0
  return keypoints[..., perm, :] * sign, confidence[..., perm]


def rotation_matrix(angles: jax.Array) -> jax.Array:
  """(..., 3) angles in radians about x, y, z -> (..., 3, 3) rotation R = Rz @ Ry @ Rx."""
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  one, zero = jnp.ones_like(angles[..., 0]), jnp.zeros_like(angles[..., 0])

  def matrix(rows):
    return jnp.stack([jnp.stack(row, -1) for row in rows], -2)

  (cx, cy, cz), (sx, sy, sz) = jnp.moveaxis(cos, -1, 0), jnp.moveaxis(sin, -1, 0)
  rx = matrix([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
  ry = matrix([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
  rz = matrix([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
  return rz @ ry @ rx


def random_affine(
    key: jax.Array, batch_size: int, coord_dims: int, cfg: AugmentConfig
) -> jax.Array:
  """Random linear maps scale * R @ S, one per clip.

  R rotates by angles drawn uniformly in [-cfg.rotation, cfg.rotation] (degrees, about x, y, z;
  for 2D only the in-plane z angle), S is the identity plus off-diagonal shears in
  [-cfg.shear, cfg.shear], and scale is drawn in [1 - cfg.scale, 1 + cfg.scale].

  Returns:
    (B, C, C) matrices applied as x -> A @ x.
  """
  k_rot, k_scale, k_shear = jax.random.split(key, 3)
  angles = jax.random.uniform(
      k_rot, (batch_size, 3), minval=-1.0, maxval=1.0) * _max_angles(cfg, coord_dims)
  rotation = rotation_matrix(angles)[:, :coord_dims, :coord_dims]
  eye = np.eye(coord_dims, dtype=np.float32)
  shear = eye + (1.0 - eye) * cfg.shear * jax.random.uniform(
      k_shear, (batch_size, coord_dims, coord_dims), minval=-1.0, maxval=1.0)
  scale = 1.0 + cfg.scale * jax.random.uniform(
      k_scale, (batch_size, 1, 1), minval=-1.0, maxval=1.0)
  return scale * rotation @ shear


def _max_angles(cfg: AugmentConfig, coord_dims: int) -> np.ndarray:
  """(3,) maximum rotation angles in radians; 2D data rotates in-plane (about z) only."""
  angles = np.deg2rad(np.asarray(cfg.rotation, np.float32))
  return angles if coord_dims == 3 else angles * np.array([0.0, 0.0, 1.0], np.float32)


def augment(
    key: jax.Array, keypoints: jax.Array, confidence: jax.Array, layout: Layout,
    cfg: AugmentConfig
) -> tuple[jax.Array, jax.Array]:
  """Training-time spatial augmentation, per clip: flip, affine map, joint dropout, drop-axis,
  drop-joint (`AugmentConfig`).

  Flip, rotation, scale and shear act about the origin: in the pipeline they follow `normalize`,
  so they act about the body root (with normalize=False the data should already be centred). Each
  step is left out of the graph when its strength is 0. Linear maps keep missing joints at 0.

  Args:
    key: PRNG key.
    keypoints: (B, T, V, C).
    confidence: (B, T, V).
    layout: the joint layout.
    cfg: augmentation strengths.

  Returns:
    The augmented (keypoints, confidence), same shapes; dropped joints have both set to 0.
  """
  k_flip, k_affine, k_drop = jax.random.split(key, 3)
  batch_size, num_frames, num_joints, coord_dims = keypoints.shape
  if cfg.flip_prob > 0:
    do_flip = jax.random.bernoulli(k_flip, cfg.flip_prob, (batch_size,))
    flipped, flipped_conf = flip(keypoints, confidence, layout)
    keypoints = jnp.where(do_flip[:, None, None, None], flipped, keypoints)
    confidence = jnp.where(do_flip[:, None, None], flipped_conf, confidence)
  if _max_angles(cfg, coord_dims).any() or cfg.scale > 0 or cfg.shear > 0:
    affine = random_affine(k_affine, batch_size, coord_dims, cfg)
    # Full precision: default matmul precision on accelerators would round coordinates to bf16.
    keypoints = jnp.einsum(
        'btvc,bdc->btvd', keypoints, affine, precision=jax.lax.Precision.HIGHEST)
  if cfg.joint_dropout > 0:
    keep = jax.random.bernoulli(k_drop, 1.0 - cfg.joint_dropout, (batch_size, num_joints))
    keypoints = keypoints * keep[:, None, :, None]
    confidence = confidence * keep[:, None, :]
  # fold_in, not more splits: configs without these steps keep their random streams.
  if cfg.drop_axis_prob > 0:
    k_on, k_axis = jax.random.split(jax.random.fold_in(key, 3))
    on = jax.random.bernoulli(k_on, cfg.drop_axis_prob, (batch_size,))
    axis = _uniform_int(k_axis, jnp.full((batch_size,), coord_dims))
    zero = on[:, None] & (jnp.arange(coord_dims)[None] == axis[:, None])      # (B, C)
    keypoints = jnp.where(zero[:, None, None, :], 0.0, keypoints)
  if cfg.drop_joints_prob > 0:
    k_on, k_n, k_len, k_start, k_order = jax.random.split(jax.random.fold_in(key, 4), 5)
    on = jax.random.bernoulli(k_on, cfg.drop_joints_prob, (batch_size,))
    lo, hi = (min(v, num_joints) for v in cfg.drop_joints_count)
    count = lo + _uniform_int(k_n, jnp.full((batch_size,), hi - lo + 1))
    f_lo, f_hi = (min(v, num_frames) for v in cfg.drop_joints_frames)
    length = f_lo + _uniform_int(k_len, jnp.full((batch_size,), f_hi - f_lo + 1))
    start = _uniform_int(k_start, num_frames - length + 1)
    rank = jnp.argsort(jax.random.uniform(k_order, (batch_size, num_joints)), axis=1)
    joints = jnp.argsort(rank, axis=1) < count[:, None]                        # (B, V)
    t = jnp.arange(num_frames)[None]
    frames = (t >= start[:, None]) & (t < (start + length)[:, None])           # (B, T)
    drop = on[:, None, None] & frames[:, :, None] & joints[:, None, :]          # (B, T, V)
    keypoints = jnp.where(drop[..., None], 0.0, keypoints)
    confidence = jnp.where(drop, 0.0, confidence)
  return keypoints, confidence


# ------------------------------------------------------------------------------------------------
# Streams.


def bones(
    keypoints: jax.Array, confidence: jax.Array, layout: Layout
) -> tuple[jax.Array, jax.Array]:
  """Bone vectors: bone j = joint j - joint parents[j].

  The root's bone is 0 with the root's own confidence; any other bone is missing (0, confidence 0)
  when either end is missing, else its confidence is the smaller of the two.

  Args:
    keypoints: (..., V, C).
    confidence: (..., V).
    layout: the joint layout.

  Returns:
    (bones (..., V, C), confidence (..., V)).
  """
  parents = np.asarray(layout.parents)
  parents = np.where(parents < 0, np.arange(len(parents)), parents)  # root: its own parent
  parent_conf = confidence[..., parents]
  present = (confidence > 0) & (parent_conf > 0)
  vectors = jnp.where(present[..., None], keypoints - keypoints[..., parents, :], 0.0)
  return vectors, jnp.where(present, jnp.minimum(confidence, parent_conf), 0.0)


def motion(
    keypoints: jax.Array, confidence: jax.Array, frame_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Frame differences x[t + 1] - x[t].

  Missing (0, confidence 0) where either frame is padded or the joint is missing in either, and in
  the last frame; otherwise the confidence is the smaller of the two frames'.

  Args:
    keypoints: (B, T, V, C).
    confidence: (B, T, V).
    frame_mask: (B, T).

  Returns:
    (motion (B, T, V, C), confidence (B, T, V)).
  """
  def next_frame(x):
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)

  confidence = confidence * frame_mask[:, :, None]
  next_conf = next_frame(confidence)
  present = (confidence > 0) & (next_conf > 0)
  vectors = jnp.where(present[..., None], next_frame(keypoints) - keypoints, 0.0)
  return vectors, jnp.where(present, jnp.minimum(confidence, next_conf), 0.0)


def to_stream(
    keypoints: jax.Array, confidence: jax.Array, frame_mask: jax.Array, layout: Layout,
    stream: str
) -> tuple[jax.Array, jax.Array]:
  """Converts joints to one of STREAMS. Shapes as for `motion`; returns (values, confidence)."""
  if stream not in STREAMS:
    raise ValueError(f'unknown stream {stream!r}; choose one of {STREAMS}')
  if stream.startswith('bone'):
    keypoints, confidence = bones(keypoints, confidence, layout)
  if stream.endswith('motion'):
    keypoints, confidence = motion(keypoints, confidence, frame_mask)
  return keypoints, confidence


# ------------------------------------------------------------------------------------------------
# Entry points.


def train_inputs(
    batch: Mapping[str, jax.Array], key: jax.Array, layout: Layout, cfg: AugmentConfig
) -> dict[str, jax.Array]:
  """Model inputs for a training step: random crop, normalisation, augmentation, stream.

  Args:
    batch: 'keypoints' (B, L, V, C), 'confidence' (B, L, V), 'num_frames' (B,) (other keys are
      ignored).
    key: PRNG key; the same key gives the same inputs.
    layout: the joint layout (V joints, C = layout.coord_dims).
    cfg: the pipeline settings.

  Returns:
    'keypoints' (B, T, V, C + 1) float32, the last channel the confidence/visibility (module
    docstring); 'frame_mask' (B, T) float32; 'frame_positions' (B, T) float32, where each
    sampled frame lies in its clip (`frame_positions`; read by models with
    time_embedding='position').
  """
  _check_batch(batch, layout)
  k_time, k_space = jax.random.split(key)
  indices, frame_mask = frame_indices(
      batch['num_frames'], np.shape(batch['keypoints'])[1], cfg.num_frames, key=k_time,
      crop_min_ratio=cfg.crop_min_ratio, pad=cfg.pad_instead_of_resample,
      jitter=cfg.temporal_jitter, random_order=cfg.temporal_sampling == 'random')
  keypoints, confidence, frame_mask = read_frames(batch, indices, frame_mask)
  keypoints = _canonical_pose(keypoints, confidence, frame_mask, layout, cfg)
  keypoints, confidence = augment(k_space, keypoints, confidence, layout, cfg)
  return {**_model_inputs(keypoints, confidence, frame_mask, layout, cfg.stream),
          'frame_positions': frame_positions(indices, batch['num_frames'], frame_mask)}


def eval_inputs(
    batch: Mapping[str, jax.Array], layout: Layout, cfg: AugmentConfig, *,
    phase: tuple[int, int] = (1, 2), mirrored: bool = False,
) -> dict[str, jax.Array]:
  """Deterministic model inputs: the whole clip sampled uniformly, normalised, no augmentation.

  Arguments and result as for `train_inputs` (without the key). Test-time augmentation views:
  `phase` picks where in each segment the frame is read (`frame_indices`), `mirrored` flips the
  normalised pose (`flip`).
  """
  _check_batch(batch, layout)
  keypoints, confidence, frame_mask = sample_frames(
      batch, cfg.num_frames, pad=cfg.pad_instead_of_resample, phase=phase)
  keypoints = _canonical_pose(keypoints, confidence, frame_mask, layout, cfg)
  if mirrored:
    keypoints, confidence = flip(keypoints, confidence, layout)
  return _model_inputs(keypoints, confidence, frame_mask, layout, cfg.stream)


def _canonical_pose(keypoints, confidence, frame_mask, layout, cfg: AugmentConfig) -> jax.Array:
  """Step 2 of the pipeline, shared by training and evaluation: `normalize`, `align_yaw`."""
  if cfg.normalize:
    keypoints = normalize(keypoints, confidence, frame_mask, layout)
  if cfg.align_yaw:
    keypoints = align_yaw(keypoints, confidence, frame_mask, layout)
  return keypoints


def _model_inputs(keypoints, confidence, frame_mask, layout, stream) -> dict[str, jax.Array]:
  keypoints, confidence = to_stream(keypoints, confidence, frame_mask, layout, stream)
  return {'keypoints': jnp.concatenate([keypoints, confidence[..., None]], axis=-1),
          'frame_mask': frame_mask}


def _check_batch(batch: Mapping[str, jax.Array], layout: Layout) -> None:
  """Static shape checks (shapes are known at trace time). np.shape, not jnp.shape: jax2onnx
  replaces jnp.shape with a traced op while it converts (--mode=export, format onnx)."""
  shape = np.shape(batch['keypoints'])
  expected = (layout.num_joints, layout.coord_dims)
  if len(shape) != 4 or shape[2:] != expected:
    raise ValueError(f'keypoints must be (B, L, V, C) = (B, L, {expected[0]}, {expected[1]}) '
                     f'for layout {layout.name!r}, got {shape}')
  if np.shape(batch['confidence']) != shape[:3]:
    raise ValueError(
        f'confidence shape {np.shape(batch["confidence"])} does not match keypoints {shape}')
  if np.shape(batch['num_frames']) != shape[:1]:
    raise ValueError(
        f'num_frames must be (B,) = ({shape[0]},), got {np.shape(batch["num_frames"])}')
