"""Micro-DualNet, skeleton version (DESIGN.md Section 1).

  X = EntityEmbedding(keypoints)                                  (B, T, K, D)
  H_st = Temporal-T_st( Spatial-T_st(X) + MLP_s(X) )              ST path
  H_ts = Spatial-T_ts( Temporal-T_ts(X) + MLP_t(X) )              TS path
  [a_st, a_ts] = fusion(mean_t H_st, mean_t H_ts)                 (B, K, 2)
  F = a_st * H_st + a_ts * H_ts
  logits = Head([mean_{t,k} F ; global token])                    (B, num_classes)

Because the routing weights are constant over time, mean_t F = a_st * mean_t H_st +
a_ts * mean_t H_ts, so F is pooled without being materialised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from micro_dualnet_jax.models.config import ModelConfig
from micro_dualnet_jax.models.embedding import EntityEmbedding, GlobalToken, masked_mean
from micro_dualnet_jax.models.routing import make_fusion
from micro_dualnet_jax.models.transformer import MLP, TransformerStack
from micro_dualnet_jax.skeleton import get_layout


class DualPathBranch(nnx.Module):
  """One path: second_stack( first_stack(X) + MLP(X) ).

  ST path: first='entity' (Spatial-T), second='time' (Temporal-T); TS path the other way round.
  The residual MLP re-injects the raw entity features before the second transformer.
  """

  def __init__(self, config: ModelConfig, first_axis: str, *, rngs: nnx.Rngs):
    c = config
    layers = {'entity': c.spatial_layers, 'time': c.temporal_layers}
    second_axis = 'time' if first_axis == 'entity' else 'entity'
    kwargs = dict(dropout=c.dropout, dtype=c.compute_dtype, rngs=rngs)
    self.first = TransformerStack(c.width, c.num_heads, c.mlp_ratio, layers[first_axis],
                                  first_axis, **kwargs)
    self.reinject = MLP(c.width, c.width, dtype=c.compute_dtype, rngs=rngs)
    self.second = TransformerStack(c.width, c.num_heads, c.mlp_ratio, layers[second_axis],
                                   second_axis, **kwargs)

  def __call__(self, x: jax.Array, frame_mask: jax.Array,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    """x (B, T, K, D) -> H (B, T, K, D)."""
    return self.second(self.first(x, frame_mask, rngs) + self.reinject(x), frame_mask, rngs)


class ClassifierHead(nnx.Module):
  """LayerNorm -> Linear -> GELU -> Dropout -> Linear: (B, F) -> logits (B, num_classes)."""

  def __init__(self, in_features: int, width: int, num_classes: int, dropout: float, *,
               rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(in_features, epsilon=1e-5, rngs=rngs)
    self.mlp = MLP(in_features, width, num_classes, dropout=dropout, rngs=rngs)

  def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
    return self.mlp(self.norm(x.astype(jnp.float32)), rngs)


class MicroDualNet(nnx.Module):
  """The Micro-DualNet skeleton model as a Flax NNX module.

  Call with keypoints (B, T, V, C_in) (C_in = C, or C + 1 with the confidence last) and a frame
  mask (B, T); pass `rngs=nnx.Rngs(dropout=key)` to train with dropout, nothing to evaluate.

  Returns:
    logits (B, num_classes) float32, and an aux dict:
      'routing_weights' (B, K, 2): [a_st, a_ts] per entity (single-path models: one-hot);
      'pooled_st' / 'pooled_ts' (B, K, D): time-pooled path outputs (only the paths built);
      'mac_st' / 'mac_ts' (B, K, D/2): MAC projections (when config.mac_projection);
      'global_token' (B, D) (when config.global_token).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    c = config
    layout = get_layout(c.layout)
    dtype = c.compute_dtype
    self.embedding = EntityEmbedding(layout, c.entity_names, c.width, c.num_frames,
                                     velocity_scale=c.velocity_scale, dtype=dtype, rngs=rngs)
    self.st_path = DualPathBranch(c, 'entity', rngs=rngs) if c.paths in ('dual', 'st') else None
    self.ts_path = DualPathBranch(c, 'time', rngs=rngs) if c.paths in ('dual', 'ts') else None
    self.fusion = (make_fusion(c.fusion, c.num_entities, c.width, c.router_temperature,
                               rngs=rngs) if c.paths == 'dual' else None)
    self.global_token = GlobalToken(layout, c.width, dtype=dtype, rngs=rngs) if c.global_token \
        else None
    # Shared by both paths: D -> D -> D/2 (DESIGN.md Section 1, item 7).
    self.mac_projection = (MLP(c.width, c.width, c.width // 2, rngs=rngs) if c.mac_projection
                           else None)
    head_in = c.width * (2 if c.global_token else 1)
    self.head = ClassifierHead(head_in, c.width, c.num_classes, c.dropout, rngs=rngs)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array, *,
               rngs: nnx.Rngs | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    c = self.config
    if keypoints.ndim != 4 or keypoints.shape[2] != c.num_joints:
      raise ValueError(f'keypoints must be (B, T, {c.num_joints}, C) for layout {c.layout!r}, '
                       f'got shape {keypoints.shape}')
    if frame_mask.shape != keypoints.shape[:2]:
      raise ValueError(f'frame_mask shape {frame_mask.shape} does not match keypoints '
                       f'{keypoints.shape[:2]}')
    frame_mask = frame_mask.astype(jnp.float32)
    x = self.embedding(keypoints, frame_mask)                     # (B, T, K, D)
    aux: dict[str, jax.Array] = {}
    pooled = {}
    for name, path in (('st', self.st_path), ('ts', self.ts_path)):
      if path is not None:
        h = path(x, frame_mask, rngs)
        pooled[name] = masked_mean(h.astype(jnp.float32), frame_mask, axis=1)   # (B, K, D)
        aux[f'pooled_{name}'] = pooled[name]
    if self.fusion is not None:
      weights = self.fusion(pooled['st'], pooled['ts'])
      fused = weights[..., 0:1] * pooled['st'] + weights[..., 1:2] * pooled['ts']
    else:
      (only_name, fused), = pooled.items()
      one_hot = jnp.array([1.0, 0.0] if only_name == 'st' else [0.0, 1.0])
      weights = jnp.broadcast_to(one_hot, (*fused.shape[:2], 2))
    aux['routing_weights'] = weights
    features = jnp.mean(fused, axis=1)                             # (B, D)
    if self.global_token is not None:
      token = self.global_token(keypoints, frame_mask).astype(jnp.float32)
      aux['global_token'] = token
      features = jnp.concatenate([features, token], axis=-1)
    if self.mac_projection is not None:
      aux['mac_st'] = self.mac_projection(pooled['st'])
      aux['mac_ts'] = self.mac_projection(pooled['ts'])
    logits = self.head(features, rngs).astype(jnp.float32)
    return logits, aux
