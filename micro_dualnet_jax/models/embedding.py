"""Entity embedding and global token (DESIGN.md Section 1, items 1-2).

Inputs everywhere: keypoints (B, T, V, C_in) with C_in = C (coordinates only) or C + 1 (last
channel is the joint confidence / visibility; 0 marks a missing joint), frame_mask (B, T) with 1
for real frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from micro_dualnet_jax.models.transformer import token_dense
from micro_dualnet_jax.skeleton import Layout


def split_keypoints(keypoints: jax.Array, frame_mask: jax.Array,
                    coord_dims: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Splits model input into coordinates, confidence and visibility.

  Args:
    keypoints: (B, T, V, C) or (B, T, V, C + 1) with C = coord_dims.
    frame_mask: (B, T), 1 for real frames.
    coord_dims: C, 2 or 3.

  Returns:
    coords (B, T, V, C) with missing joints zeroed, confidence (B, T, V) and visibility (B, T, V)
    in {0, 1}: joint present and frame real.
  """
  channels = keypoints.shape[-1]
  if channels not in (coord_dims, coord_dims + 1):
    raise ValueError(
        f'keypoints have {channels} channels; the layout has {coord_dims} coordinates, so '
        f'expected {coord_dims} (no confidence) or {coord_dims + 1} (confidence last)')
  frame = frame_mask.astype(keypoints.dtype)[:, :, None]
  if channels == coord_dims + 1:
    confidence = keypoints[..., coord_dims] * frame
  else:
    confidence = jnp.broadcast_to(frame, keypoints.shape[:3])
  visibility = (confidence > 0).astype(keypoints.dtype)
  coords = keypoints[..., :coord_dims] * visibility[..., None]
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
  """K independent linear maps applied in one batched einsum: (..., K, F) -> (..., K, D)."""

  def __init__(self, num_entities: int, in_features: int, out_features: int, *,
               dtype=jnp.float32, zero_init: bool = False, rngs: nnx.Rngs):
    init = (nnx.initializers.zeros if zero_init else
            nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal', in_axis=1,
                                              out_axis=2, batch_axis=(0,)))
    self.kernel = nnx.Param(init(rngs.params(), (num_entities, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((num_entities, out_features)))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel[...].astype(self.dtype)
    y = jnp.einsum('...kf,kfd->...kd', x.astype(self.dtype), kernel)
    return y + self.bias[...].astype(self.dtype)


class EntityEmbedding(nnx.Module):
  """Body-part tokens from keypoints: X (B, T, K, D).

  Per entity k and frame t, its joints (padded to the largest entity J, with a joint mask) give
  per joint: position relative to the entity centre (C), relative to the body root (C), velocity
  s * (x_t - x_{t-1}) (C, zero at the first frame and wherever either end is missing) and
  confidence (1). Between sampled frames a joint moves ~10x less than its spread around the
  root, so s = `velocity_scale` (default 10) brings motion to the scale of position; at s = 1 the
  rest-pose motion classes of the synthetic set stay near chance (README.md, Measured results).
  The J * (3C + 1) features go through a per-entity MLP (PerEntityLinear, GELU, PerEntityLinear);
  a learned entity embedding (K, D) and temporal position embedding (T, D) are added.
  """

  def __init__(self, layout: Layout, entity_names: tuple[str, ...], width: int,
               max_frames: int, *, velocity_scale: float = 10.0, dtype=jnp.float32,
               rngs: nnx.Rngs):
    index, joint_mask = layout.entity_index_table(entity_names)
    # Static gather tables (hashable tuples, so they live in the graphdef, not the state).
    self.entity_index = tuple(map(tuple, index.tolist()))          # (K, J)
    self.joint_mask = tuple(map(tuple, joint_mask.tolist()))       # (K, J)
    self.center_joints = tuple(layout.center_joints)
    self.coord_dims = layout.coord_dims
    self.velocity_scale = float(velocity_scale)
    num_entities, joints = index.shape
    features = joints * (3 * self.coord_dims + 1)
    self.in_proj = PerEntityLinear(num_entities, features, width, dtype=dtype, rngs=rngs)
    self.out_proj = PerEntityLinear(num_entities, width, width, dtype=dtype, rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.entity_embedding = nnx.Param(init(rngs.params(), (num_entities, width)))
    self.position_embedding = nnx.Param(init(rngs.params(), (max_frames, width)))
    self.dtype = dtype

  def joint_features(self, keypoints: jax.Array, frame_mask: jax.Array) -> jax.Array:
    """(B, T, V, C_in), (B, T) -> per-entity joint features (B, T, K, J * (3C + 1))."""
    coords, confidence, visibility = split_keypoints(keypoints, frame_mask, self.coord_dims)
    center = np.array(self.center_joints)
    root = masked_mean(coords[:, :, center], visibility[:, :, center], axis=2)  # (B, T, C)
    index, joint_mask = np.array(self.entity_index), np.array(self.joint_mask, np.float32)
    x = coords[:, :, index]                                     # (B, T, K, J, C)
    vis = visibility[:, :, index] * joint_mask                  # (B, T, K, J)
    conf = confidence[:, :, index] * joint_mask
    entity_center = masked_mean(x, vis, axis=3)                 # (B, T, K, C)
    rel_center = (x - entity_center[:, :, :, None]) * vis[..., None]
    rel_root = (x - root[:, :, None, None]) * vis[..., None]
    # Backward difference: appending padded frames never changes earlier frames.
    prev_x = jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0), (0, 0)))[:, :-1]
    prev_vis = jnp.pad(vis, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    velocity = (x - prev_x) * (vis * prev_vis)[..., None] * self.velocity_scale
    feats = jnp.concatenate([rel_center, rel_root, velocity, conf[..., None]], axis=-1)
    return feats.reshape(*feats.shape[:3], -1)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array) -> jax.Array:
    """(B, T, V, C_in), (B, T) -> X (B, T, K, D)."""
    num_frames = keypoints.shape[1]
    if num_frames > self.position_embedding.shape[0]:
      raise ValueError(f'input has {num_frames} frames; the model was built for at most '
                       f'{self.position_embedding.shape[0]} (model num_frames)')
    h = jax.nn.gelu(self.in_proj(self.joint_features(keypoints, frame_mask)))
    h = self.out_proj(h)
    pos = self.position_embedding[:num_frames].astype(self.dtype)
    return h + self.entity_embedding[...].astype(self.dtype) + pos[None, :, None, :]


class GlobalToken(nnx.Module):
  """Whole-body token: an MLP over all joints of each frame, mean-pooled over real frames.

  (B, T, V, C_in), (B, T) -> (B, D). Input per frame: root-relative coordinates and the
  confidence of all V joints (the skeleton stand-in for the paper's global CNN feature).
  """

  def __init__(self, layout: Layout, width: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.coord_dims = layout.coord_dims
    self.center_joints = tuple(layout.center_joints)
    in_features = layout.num_joints * (layout.coord_dims + 1)
    self.fc1 = nnx.Linear(in_features, width, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(width, width, dtype=dtype, rngs=rngs)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array) -> jax.Array:
    coords, confidence, visibility = split_keypoints(keypoints, frame_mask, self.coord_dims)
    center = np.array(self.center_joints)
    root = masked_mean(coords[:, :, center], visibility[:, :, center], axis=2)
    rel = (coords - root[:, :, None]) * visibility[..., None]
    x = jnp.concatenate([rel, confidence[..., None]], axis=-1)
    x = x.reshape(*x.shape[:2], -1)
    h = token_dense(self.fc2, jax.nn.gelu(token_dense(self.fc1, x)))    # (B, T, D)
    return masked_mean(h, frame_mask, axis=1)
