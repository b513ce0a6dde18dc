"""Entity embedding and global token (docs/method.md, "Entity tokens" and "Global token").

Inputs everywhere: keypoints (B, T, V, C_in) with C_in = C (coordinates only) or C + 1 (last
channel is the joint confidence / visibility; 0 marks a missing joint), frame_mask (B, T) with 1
for real frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.model import TIME_EMBEDDINGS, check_joint_features
from micro_dualnet_jax.models.transformer import dense, token_dense
from micro_dualnet_jax.skeleton import Layout, get_layout


def as_layout(layout: Layout | str) -> Layout:
  """A registered layout name or a `Layout` -> the `Layout`."""
  if isinstance(layout, Layout):
    return layout
  if isinstance(layout, str):
    return get_layout(layout)
  raise TypeError(f'layout must be a layout name or a Layout, got {type(layout).__name__}')


def split_keypoints(keypoints: jax.Array, frame_mask: jax.Array,
                    coord_dims: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Splits model input into coordinates, confidence and visibility.

  Args:
    keypoints: (B, T, V, C) or (B, T, V, C + 1) with C = coord_dims.
    frame_mask: (B, T), 1 for real frames.
    coord_dims: C, 2 or 3.

  Returns:
    coords (B, T, V, C) with missing joints zeroed, confidence (B, T, V) and visibility (B, T, V)
    in {0, 1}: joint present and frame real. A joint with confidence 0 (or a NaN confidence) is
    missing whatever its coordinates hold, NaN included: they are replaced, not multiplied by 0.
  """
  channels = keypoints.shape[-1]
  if channels not in (coord_dims, coord_dims + 1):
    raise ValueError(
        f'keypoints have {channels} channels; the layout has {coord_dims} coordinates, so '
        f'expected {coord_dims} (no confidence) or {coord_dims + 1} (confidence last)')
  frame = frame_mask.astype(keypoints.dtype)[:, :, None]
  if channels == coord_dims + 1:
    confidence = keypoints[..., coord_dims]
    present = (confidence > 0) & (frame > 0)
    confidence = jnp.where(present, confidence, 0.0)
  else:
    present = jnp.broadcast_to(frame > 0, keypoints.shape[:3])
    confidence = present.astype(keypoints.dtype)
  visibility = present.astype(keypoints.dtype)
  coords = jnp.where(present[..., None], keypoints[..., :coord_dims], 0.0)
  return coords, confidence, visibility


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
  """Mean of x over `axis` where mask is 1 (mask broadcast from x's leading dims); 0 if empty."""
  while mask.ndim < x.ndim:
    mask = mask[..., None]
  mask = mask.astype(x.dtype)
  total = jnp.sum(x * mask, axis=axis)
  count = jnp.sum(jnp.broadcast_to(mask, x.shape), axis=axis)
  return total / jnp.maximum(count, 1.0)


class PerEntityLinear(nnx.Module):
  """K independent linear maps applied in one batched einsum: (..., K, F) -> (..., K, D).

  The matmul runs in `dtype` and returns float32 (mixed precision, see models/transformer.py).
  """

  def __init__(self, num_entities: int, in_features: int, out_features: int, *,
               dtype=jnp.float32, zero_init: bool = False, rngs: nnx.Rngs):
    for name, value in (('num_entities', num_entities), ('in_features', in_features),
                        ('out_features', out_features)):
      check.positive_int(name, value)
    init = (nnx.initializers.zeros if zero_init else
            nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal', in_axis=1,
                                              out_axis=2, batch_axis=(0,)))
    self.kernel = nnx.Param(init(rngs.params(), (num_entities, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((num_entities, out_features)))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel[...].astype(self.dtype)
    y = jnp.einsum('...kf,kfd->...kd', x.astype(self.dtype), kernel)
    return y.astype(jnp.float32) + self.bias[...]


DEFAULT_JOINT_FEATURES = ('center', 'root', 'velocity', 'confidence')


class EntityEmbedding(nnx.Module):
  """Body-part tokens from keypoints: X (B, T, K, D).

  Per entity k and frame t, its joints (padded to the largest entity J, with a joint mask) give
  per joint the `joint_features`, from
    'center'     position relative to the entity centre (C);
    'root'       position relative to the body root of the same frame (C);
    'position'   the position itself (C): after the pipeline's normalisation, relative to the
                 clip's first root, so where the body is in the clip (locomotion) shows;
    'velocity'   s * (x_t - x_{t-1}) (C, zero at the first frame and wherever either end is
                 missing);
    'confidence' the joint confidence (1).
  The default is ('center', 'root', 'velocity', 'confidence'), J * (3C + 1) features. Between
  sampled frames a joint moves ~10x less than its spread around the root, so s =
  `velocity_scale` (default 10) brings motion to the scale of position; at s = 1 the rest-pose
  motion classes of the synthetic set stay near chance (docs/method.md). The features go through
  a per-entity MLP (PerEntityLinear, GELU, PerEntityLinear); a learned entity embedding (K, D)
  and a temporal embedding are added. The temporal embedding reads a learned table E (R, D),
  R = max_frames:
    'slot'      frame t gets E[t];
    'position'  a frame at place p in [0, 1] of its clip gets E read at row u = p R - 1/2
                (clipped to [0, R - 1]) by linear interpolation,
                (1 - (u - floor u)) E[floor u] + (u - floor u) E[floor u + 1].
  A whole clip read uniformly into T = R frames has p = (t + 1/2) / T, so u = t: the two agree
  on evaluation inputs, and 'position' tells the model where randomly drawn frames really lie.

  Args:
    layout: a `Layout` or a registered layout name.
    entity_names: the entities to embed (None: all of the layout's, canonical order).
    width: D.
    max_frames: the largest T accepted (length of the position embedding).
    velocity_scale: s above.
    joint_features: the per-joint features above, in order.
    time_embedding: 'slot' or 'position' (above).
    dtype: compute dtype (parameters stay float32).
    rngs: parameter initialisation.
  """

  def __init__(self, layout: Layout | str, entity_names: tuple[str, ...] | None, width: int,
               max_frames: int, *, velocity_scale: float = 10.0,
               joint_features: tuple[str, ...] = DEFAULT_JOINT_FEATURES,
               time_embedding: str = 'slot', dtype=jnp.float32, rngs: nnx.Rngs):
    layout = as_layout(layout)
    check.positive_int('width', width)
    check.positive_int('max_frames', max_frames)
    check.positive('velocity_scale', velocity_scale)
    entity_names = tuple(entity_names or layout.entity_names)
    index, joint_mask = layout.entity_index_table(entity_names)
    # Static gather tables (hashable tuples, so they live in the graphdef, not the state).
    self.entity_index = tuple(map(tuple, index.tolist()))          # (K, J)
    self.joint_mask = tuple(map(tuple, joint_mask.tolist()))       # (K, J)
    self.center_joints = tuple(layout.center_joints)
    self.coord_dims = layout.coord_dims
    self.velocity_scale = float(velocity_scale)
    self.features = check_joint_features(joint_features)
    self.time_embedding = check.one_of('time_embedding', time_embedding, TIME_EMBEDDINGS)
    num_entities, joints = index.shape
    features = joints * sum(1 if f == 'confidence' else self.coord_dims for f in self.features)
    self.in_proj = PerEntityLinear(num_entities, features, width, dtype=dtype, rngs=rngs)
    self.out_proj = PerEntityLinear(num_entities, width, width, dtype=dtype, rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.entity_embedding = nnx.Param(init(rngs.params(), (num_entities, width)))
    self.position_embedding = nnx.Param(init(rngs.params(), (max_frames, width)))
    self.dtype = dtype

  def joint_features(self, keypoints: jax.Array, frame_mask: jax.Array) -> jax.Array:
    """(B, T, V, C_in), (B, T) -> per-entity joint features (B, T, K, J * F), F the summed
    sizes of `self.features`."""
    coords, confidence, visibility = split_keypoints(keypoints, frame_mask, self.coord_dims)
    center = np.array(self.center_joints)
    index, joint_mask = np.array(self.entity_index), np.array(self.joint_mask, np.float32)
    x = coords[:, :, index]                                     # (B, T, K, J, C)
    vis = visibility[:, :, index] * joint_mask                  # (B, T, K, J)
    parts = {}
    if 'center' in self.features:
      entity_center = masked_mean(x, vis, axis=3)               # (B, T, K, C)
      parts['center'] = (x - entity_center[:, :, :, None]) * vis[..., None]
    if 'root' in self.features:
      root = masked_mean(coords[:, :, center], visibility[:, :, center], axis=2)  # (B, T, C)
      parts['root'] = (x - root[:, :, None, None]) * vis[..., None]
    if 'position' in self.features:
      parts['position'] = x * vis[..., None]
    if 'velocity' in self.features:
      # Backward difference: appending padded frames never changes earlier frames.
      prev_x = jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0), (0, 0)))[:, :-1]
      prev_vis = jnp.pad(vis, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
      parts['velocity'] = (x - prev_x) * (vis * prev_vis)[..., None] * self.velocity_scale
    if 'confidence' in self.features:
      parts['confidence'] = (confidence[:, :, index] * joint_mask)[..., None]
    feats = jnp.concatenate([parts[f] for f in self.features], axis=-1)
    return feats.reshape(*feats.shape[:3], -1)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array,
               frame_positions: jax.Array | None = None) -> jax.Array:
    """(B, T, V, C_in), (B, T), optional (B, T) places in [0, 1] -> X (B, T, K, D)."""
    num_frames = keypoints.shape[1]
    if num_frames == 0:
      raise ValueError('keypoints have T = 0 frames; the model needs at least one frame')
    if num_frames > self.position_embedding.shape[0]:
      raise ValueError(f'input has {num_frames} frames; the model was built for at most '
                       f'{self.position_embedding.shape[0]} (model num_frames)')
    h = jax.nn.gelu(self.in_proj(self.joint_features(keypoints, frame_mask)))
    h = self.out_proj(h)
    if self.time_embedding == 'slot':
      pos = self.position_embedding[:num_frames][None]                       # (1, T, D)
    else:
      pos = self.time_at(frame_positions if frame_positions is not None else
                         (jnp.arange(num_frames) + 0.5)[None] / num_frames)  # (B, T, D)
    return h + self.entity_embedding[...] + pos[:, :, None, :]

  def time_at(self, positions: jax.Array) -> jax.Array:
    """The 'position' temporal embedding (class docstring): places (..., T) -> (..., T, D)."""
    table = self.position_embedding[...]
    rows = table.shape[0]
    u = jnp.clip(jnp.asarray(positions, jnp.float32) * rows - 0.5, 0.0, rows - 1.0)
    low = jnp.floor(u).astype(jnp.int32)
    frac = (u - low)[..., None]
    return (1.0 - frac) * table[low] + frac * table[jnp.minimum(low + 1, rows - 1)]


class GlobalToken(nnx.Module):
  """Whole-body token: an MLP over all joints of each frame, mean-pooled over real frames.

  (B, T, V, C_in), (B, T) -> (B, D). Input per frame: root-relative coordinates and the
  confidence of all V joints (the skeleton stand-in for the paper's global CNN feature).
  """

  def __init__(self, layout: Layout | str, width: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    layout = as_layout(layout)
    check.positive_int('width', width)
    self.coord_dims = layout.coord_dims
    self.center_joints = tuple(layout.center_joints)
    in_features = layout.num_joints * (layout.coord_dims + 1)
    self.fc1 = dense(in_features, width, dtype=dtype, rngs=rngs)
    self.fc2 = dense(width, width, dtype=dtype, rngs=rngs)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array) -> jax.Array:
    coords, confidence, visibility = split_keypoints(keypoints, frame_mask, self.coord_dims)
    center = np.array(self.center_joints)
    root = masked_mean(coords[:, :, center], visibility[:, :, center], axis=2)
    rel = (coords - root[:, :, None]) * visibility[..., None]
    x = jnp.concatenate([rel, confidence[..., None]], axis=-1)
    x = x.reshape(*x.shape[:2], -1)
    h = token_dense(self.fc2, jax.nn.gelu(token_dense(self.fc1, x)))    # (B, T, D)
    return masked_mean(h, frame_mask, axis=1)
