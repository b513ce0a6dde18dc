"""Entity-level fusion of the two paths (docs/method.md, "Entity-level routing").

Every fusion returns weights (B, K, 2) = [a_st, a_ts] with a_st + a_ts = 1 per entity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.model import FUSIONS
from micro_dualnet_jax.models.embedding import PerEntityLinear


class EntityRouter(nnx.Module):
  """Input-dependent routing: [a_st, a_ts] = softmax(R_k([mean_t H_st ; mean_t H_ts]) / tau).

  R_k is a per-entity 2-layer MLP (2D -> D/2 -> 2, own weights per entity, one batched einsum).
  Its output layer starts at zero, so every entity starts at exactly 0.5 / 0.5.
  """

  def __init__(self, num_entities: int, width: int, temperature: float = 1.0, *,
               rngs: nnx.Rngs):
    check.positive_int('num_entities', num_entities)
    check.positive_int('width', width)
    if width < 2:
      raise ValueError(f'width must be >= 2 (the hidden layer is width // 2), got {width}')
    check.positive('temperature', temperature)
    self.hidden = PerEntityLinear(num_entities, 2 * width, width // 2, rngs=rngs)
    self.logits = PerEntityLinear(num_entities, width // 2, 2, zero_init=True, rngs=rngs)
    self.temperature = temperature

  def __call__(self, pooled_st: jax.Array, pooled_ts: jax.Array) -> jax.Array:
    """pooled_st, pooled_ts (B, K, D) -> weights (B, K, 2)."""
    x = jnp.concatenate([pooled_st, pooled_ts], axis=-1).astype(jnp.float32)
    logits = self.logits(jax.nn.gelu(self.hidden(x)))
    return jax.nn.softmax(logits / self.temperature, axis=-1)


class StaticRouter(nnx.Module):
  """Input-independent routing: learned per-entity logits (K, 2), zero-initialised."""

  def __init__(self, num_entities: int, temperature: float = 1.0):
    check.positive_int('num_entities', num_entities)
    check.positive('temperature', temperature)
    self.logits = nnx.Param(jnp.zeros((num_entities, 2)))
    self.temperature = temperature

  def __call__(self, pooled_st: jax.Array, pooled_ts: jax.Array) -> jax.Array:
    weights = jax.nn.softmax(self.logits[...] / self.temperature, axis=-1)
    return jnp.broadcast_to(weights, (pooled_st.shape[0], *weights.shape))


class MeanFusion(nnx.Module):
  """Fixed 0.5 / 0.5 for every entity (no parameters)."""

  def __call__(self, pooled_st: jax.Array, pooled_ts: jax.Array) -> jax.Array:
    return jnp.full((*pooled_st.shape[:2], 2), 0.5, jnp.float32)


def make_fusion(kind: str, num_entities: int, width: int, temperature: float, *,
                rngs: nnx.Rngs) -> nnx.Module:
  """'routing' | 'static' | 'mean' -> the fusion module (its weights: (B, K, 2))."""
  if kind == 'routing':
    return EntityRouter(num_entities, width, temperature, rngs=rngs)
  if kind == 'static':
    return StaticRouter(num_entities, temperature)
  if kind == 'mean':
    return MeanFusion()
  raise ValueError(f'fusion must be one of {FUSIONS}, got {kind!r}')
