"""Micro-DualNet, skeleton version (docs/method.md).

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

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.model import ModelConfig
from micro_dualnet_jax.models.embedding import EntityEmbedding, GlobalToken, masked_mean
from micro_dualnet_jax.models.routing import make_fusion
from micro_dualnet_jax.models.transformer import MLP, TransformerStack, attention_axis


class DualPathBranch(nnx.Module):
  """One path: second_stack( first_stack(X) + MLP(X) ): (B, T, K, D) -> (B, T, K, D).

  ST path: first_axis='entity' (or 'spatial'): Spatial-T, then Temporal-T; TS path:
  first_axis='time' (or 'temporal'): the other way round. The residual MLP re-injects the raw
  entity features before the second transformer.

  Args:
    width, num_heads, mlp_ratio, dropout: as in `TransformerStack`.
    first_axis: which attention comes first.
    spatial_layers, temporal_layers: layers of the Spatial-T and Temporal-T stacks.
    dtype: compute dtype.
    rngs: parameter initialisation and the dropout streams.
  """

  def __init__(self, width: int, num_heads: int, *, first_axis: str, spatial_layers: int = 3,
               temporal_layers: int = 3, mlp_ratio: int = 4, dropout: float = 0.0,
               dtype=jnp.float32, rngs: nnx.Rngs):
    first_axis = attention_axis(first_axis, 'first_axis')
    check.positive_int('spatial_layers', spatial_layers)
    check.positive_int('temporal_layers', temporal_layers)
    layers = {'entity': spatial_layers, 'time': temporal_layers}
    second_axis = 'time' if first_axis == 'entity' else 'entity'
    kwargs = dict(dropout=dropout, dtype=dtype, rngs=rngs)
    self.first = TransformerStack(width, num_heads, mlp_ratio, layers[first_axis], first_axis,
                                  **kwargs)
    self.reinject = MLP(width, width, dtype=dtype, rngs=rngs)
    self.second = TransformerStack(width, num_heads, mlp_ratio, layers[second_axis],
                                   second_axis, **kwargs)

  @classmethod
  def from_config(cls, config: ModelConfig, first_axis: str, *,
                  rngs: nnx.Rngs) -> DualPathBranch:
    c = config
    return cls(c.width, c.num_heads, first_axis=first_axis, spatial_layers=c.spatial_layers,
               temporal_layers=c.temporal_layers, mlp_ratio=c.mlp_ratio, dropout=c.dropout,
               dtype=c.compute_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, frame_mask: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    """x (B, T, K, D), frame_mask (B, T) -> H (B, T, K, D)."""
    h = self.first(x, frame_mask, deterministic=deterministic) + self.reinject(x)
    return self.second(h, frame_mask, deterministic=deterministic)


class ClassifierHead(nnx.Module):
  """LayerNorm -> Linear -> GELU -> Dropout -> Linear: (B, F) -> logits (B, num_classes)."""

  def __init__(self, in_features: int, width: int, num_classes: int, dropout: float, *,
               rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(in_features, epsilon=1e-5, rngs=rngs)
    self.mlp = MLP(in_features, width, num_classes, dropout=dropout, rngs=rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
    return self.mlp(self.norm(x.astype(jnp.float32)), deterministic=deterministic)


class MicroDualNet(nnx.Module):
  """The Micro-DualNet skeleton model as a Flax NNX module.

      model = MicroDualNet(ModelConfig(num_classes=32), rngs=nnx.Rngs(0))
      logits, aux = model(keypoints)          # training mode: dropout on
      model.eval()                            # or nnx.view(model, deterministic=True)
      logits, aux = model(keypoints, frame_mask)

  Like every NNX module it starts in training mode; `model.train()` / `model.eval()` switch
  dropout, whose masks come from RNG streams the model holds (forked at construction from the
  'dropout' stream of `rngs`, else its 'default' one), so a training step needs no key
  argument. `deterministic=` on a call overrides the mode for that call.

  Args (call):
    keypoints: (B, T, V, C_in) or one clip (T, V, C_in); C_in = C, or C + 1 with the joint
      confidence last (0 marks a missing joint: its coordinates are ignored, NaN included).
    frame_mask: (B, T) (or (T,)), 1 for real frames; None: every frame is real.
    frame_positions: (B, T) (or (T,)), each frame's place in its clip as a fraction in [0, 1]
      (read only with config.time_embedding='position'); None: a whole clip read uniformly,
      (t + 1/2) / T.

  Returns:
    logits (B, num_classes) float32, and an aux dict:
      'routing_weights' (B, K, 2): [a_st, a_ts] per entity (single-path models: one-hot);
      'pooled_st' / 'pooled_ts' (B, K, D): time-pooled path outputs (only the paths built);
      'mac_st' / 'mac_ts' (B, K, D/2): MAC projections (when config.mac_projection);
      'path_logits_st' / 'path_logits_ts' (B, num_classes): per-path heads (config.path_heads);
      'global_token' (B, D) (when config.global_token).
    For a single clip every output has no batch axis.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    if not isinstance(config, ModelConfig):
      raise TypeError(f'config must be a ModelConfig (ModelConfig.from_dict builds one from a '
                      f'dict), got {type(config).__name__}')
    self.config = config
    c = config
    dtype = c.compute_dtype
    self.embedding = EntityEmbedding(c.layout, c.entity_names, c.width, c.num_frames,
                                     velocity_scale=c.velocity_scale,
                                     joint_features=c.joint_features,
                                     time_embedding=c.time_embedding, dtype=dtype, rngs=rngs)
    self.st_path = (DualPathBranch.from_config(c, 'entity', rngs=rngs)
                    if c.paths in ('dual', 'st') else None)
    self.ts_path = (DualPathBranch.from_config(c, 'time', rngs=rngs)
                    if c.paths in ('dual', 'ts') else None)
    self.fusion = (make_fusion(c.fusion, c.num_entities, c.width, c.router_temperature,
                               rngs=rngs) if c.paths == 'dual' else None)
    self.global_token = GlobalToken(c.layout, c.width, dtype=dtype, rngs=rngs) if c.global_token \
        else None
    # Shared by both paths: D -> D -> D/2 (docs/method.md, "Mutual action consistency").
    self.mac_projection = (MLP(c.width, c.width, c.width // 2, rngs=rngs) if c.mac_projection
                           else None)
    # One linear classifier per path on its entity-and-time-pooled features (the 'kl' MAC).
    self.path_heads = (nnx.List([nnx.Linear(c.width, c.num_classes, rngs=rngs) for _ in range(2)])
                       if c.path_heads else None)
    head_in = c.width * (2 if c.global_token else 1)
    self.head = ClassifierHead(head_in, c.width, c.num_classes, c.dropout, rngs=rngs)

  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array | None = None, *,
               frame_positions: jax.Array | None = None, deterministic: bool | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    c = self.config
    keypoints = jnp.asarray(keypoints)
    single = keypoints.ndim == 3
    if single:
      keypoints = keypoints[None]
      frame_mask = None if frame_mask is None else jnp.asarray(frame_mask)[None]
      frame_positions = None if frame_positions is None else jnp.asarray(frame_positions)[None]
    if keypoints.ndim != 4 or keypoints.shape[2] != c.num_joints:
      raise ValueError(f'keypoints must be (B, T, {c.num_joints}, C) or (T, {c.num_joints}, C) '
                       f'for layout {c.layout!r}, got shape {keypoints.shape}')
    if keypoints.shape[1] == 0:
      raise ValueError('keypoints have T = 0 frames; the model needs at least one frame')
    if frame_mask is None:
      frame_mask = jnp.ones(keypoints.shape[:2], jnp.float32)
    if frame_mask.shape != keypoints.shape[:2]:
      raise ValueError(f'frame_mask shape {frame_mask.shape} does not match keypoints '
                       f'{keypoints.shape[:2]}')
    if frame_positions is not None and frame_positions.shape != keypoints.shape[:2]:
      raise ValueError(f'frame_positions shape {frame_positions.shape} does not match keypoints '
                       f'{keypoints.shape[:2]}')
    logits, aux = self._forward(keypoints, frame_mask.astype(jnp.float32), frame_positions,
                                deterministic)
    if single:
      return logits[0], {k: v[0] for k, v in aux.items()}
    return logits, aux

  def _forward(self, keypoints, frame_mask, frame_positions, deterministic):
    x = self.embedding(keypoints, frame_mask, frame_positions)    # (B, T, K, D)
    aux: dict[str, jax.Array] = {}
    pooled = {}
    for name, path in (('st', self.st_path), ('ts', self.ts_path)):
      if path is not None:
        h = path(x, frame_mask, deterministic=deterministic)
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
    if self.path_heads is not None:
      for name, head in zip(('st', 'ts'), self.path_heads):
        aux[f'path_logits_{name}'] = head(jnp.mean(pooled[name], axis=1)).astype(jnp.float32)
    logits = self.head(features, deterministic=deterministic).astype(jnp.float32)
    return logits, aux
