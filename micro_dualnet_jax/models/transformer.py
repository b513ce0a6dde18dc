"""Pre-LN transformer stacks over entity tokens (DESIGN.md Section 1, item 3).

Tokens stay in one (B, T, K, D) layout for both kinds of attention; `axis` picks what a token
attends over:
  * 'entity' (Spatial-T): the K entity tokens of the same frame;
  * 'time' (Temporal-T): the T frames of the same entity, with a key mask for padded frames.
Keeping one layout means the ST and TS paths never transpose the token tensor between stacks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

AXES = ('entity', 'time')


def token_dense(layer: nnx.Linear, x: jax.Array) -> jax.Array:
  """Applies `layer` to the last axis of x (..., D_in) through a 2-D (N, D_in) matmul.

  Same result as layer(x); on CPU, XLA otherwise copies a transposed 4-D activation for the
  weight gradient and picks a slower matmul (measured: fc1 75 ms -> 43 ms, qkv 54 -> 27 ms
  forward + backward at the default shapes, benchmarks/README.md).
  """
  return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def dropout_keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Bernoulli(1 - rate) keep-mask from an integer hash of the element index, seeded by one draw
  from `key`.

  Statistically adequate for dropout (not for cryptography) and about 6x cheaper on CPU than one
  threefry draw per element, which took ~20% of a training step (benchmarks/README.md).
  """
  seed = jax.random.bits(key, (), jnp.uint32)
  x = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape)
  x = x * jnp.uint32(0x9E3779B9) + seed       # lowbias32 hash of (index, seed)
  x ^= x >> 16
  x *= jnp.uint32(0x7FEB352D)
  x ^= x >> 15
  x *= jnp.uint32(0x846CA68B)
  x ^= x >> 16
  return x >= jnp.uint32(min(int(rate * 2.0 ** 32), 2 ** 32 - 1))


class Dropout(nnx.Module):
  """Inverted dropout; active only when called with `rngs` (which supplies the 'dropout' key)."""

  def __init__(self, rate: float):
    self.rate = rate

  def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
    if rngs is None or self.rate == 0.0:
      return x
    keep = dropout_keep_mask(rngs.dropout(), x.shape, self.rate)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype)).astype(x.dtype)


class Attention(nnx.Module):
  """Multi-head self-attention along one token axis, with a fused q/k/v projection."""

  def __init__(self, width: int, num_heads: int, axis: str, *, dropout: float = 0.0,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if axis not in AXES:
      raise ValueError(f'attention axis must be one of {AXES}, got {axis!r}')
    self.axis, self.num_heads = axis, num_heads
    self.qkv = nnx.Linear(width, 3 * width, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
    self.attn_dropout = Dropout(dropout)

  def __call__(self, x: jax.Array, frame_mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    """x (B, T, K, D), frame_mask (B, T) -> (B, T, K, D)."""
    b, t, k, d = x.shape
    h = self.num_heads
    q, key, v = jnp.split(token_dense(self.qkv, x).reshape(b, t, k, 3 * h, d // h), 3, axis=3)
    q = q * (d // h) ** -0.5
    if self.axis == 'entity':
      scores = jnp.einsum('btqhc,btshc->bthqs', q, key, preferred_element_type=jnp.float32)
    else:
      scores = jnp.einsum('bqkhc,bskhc->bkhqs', q, key, preferred_element_type=jnp.float32)
      key_mask = frame_mask.astype(bool)[:, None, None, None, :]    # (B, 1, 1, 1, T)
      scores = jnp.where(key_mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    probs = self.attn_dropout(probs, rngs)
    if self.axis == 'entity':
      y = jnp.einsum('bthqs,btshc->btqhc', probs, v)
    else:
      y = jnp.einsum('bkhqs,bskhc->bqkhc', probs, v)
    return token_dense(self.out, y.reshape(b, t, k, d))


class MLP(nnx.Module):
  """Token-wise Linear-GELU-(Dropout)-Linear: (..., width) -> (..., out_features or width)."""

  def __init__(self, width: int, hidden: int, out_features: int | None = None, *,
               dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, out_features or width, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout)

  def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
    h = jax.nn.gelu(token_dense(self.fc1, x))
    return token_dense(self.fc2, self.dropout(h, rngs))


class EncoderLayer(nnx.Module):
  """Pre-LN layer: x + Drop(Attn(LN(x))), then x + Drop(MLP(LN(x)))."""

  def __init__(self, width: int, num_heads: int, mlp_ratio: int, axis: str, *,
               dropout: float, dtype=jnp.float32, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(width, epsilon=1e-5, rngs=rngs)
    self.attention = Attention(width, num_heads, axis, dropout=dropout, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, epsilon=1e-5, rngs=rngs)
    self.mlp = MLP(width, mlp_ratio * width, dropout=dropout, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout)

  def __call__(self, x: jax.Array, frame_mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    dtype = x.dtype
    h = self.attention(self.norm1(x).astype(dtype), frame_mask, rngs)
    x = x + self.dropout(h, rngs)
    h = self.mlp(self.norm2(x).astype(dtype), rngs)
    return x + self.dropout(h, rngs)


class TransformerStack(nnx.Module):
  """`num_layers` encoder layers with their own weights, all attending along `axis`.

  axis='entity' is the paper's Spatial-T, axis='time' its Temporal-T. (B, T, K, D) in and out.
  """

  def __init__(self, width: int, num_heads: int, mlp_ratio: int, num_layers: int, axis: str, *,
               dropout: float, dtype=jnp.float32, rngs: nnx.Rngs):
    self.axis = axis
    self.layers = nnx.List([
        EncoderLayer(width, num_heads, mlp_ratio, axis, dropout=dropout, dtype=dtype, rngs=rngs)
        for _ in range(num_layers)])

  def __call__(self, x: jax.Array, frame_mask: jax.Array,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    for layer in self.layers:
      x = layer(x, frame_mask, rngs)
    return x
