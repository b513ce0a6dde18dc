"""Pre-LN transformer stacks over entity tokens (docs/method.md, "Spatial-T and Temporal-T").

Tokens stay in one (B, T, K, D) layout for both kinds of attention; `axis` picks what a token
attends over:
  * 'entity' (Spatial-T): the K entity tokens of the same frame;
  * 'time' (Temporal-T): the T frames of the same entity, with a key mask for padded frames.
Keeping one layout means the ST and TS paths never transpose the token tensor between stacks.

Mixed precision: with `dtype=bfloat16` every matmul takes bfloat16 operands (XLA accumulates in
float32) and its result is converted to float32 at once; the activations between matmuls
(residual stream, LayerNorm, GELU, softmax, dropout) stay float32. (A bf16 x bf16 -> f32 dot is
not implemented by every XLA:CPU dot kernel, so the conversion is a separate, fused op.) On CPUs without native bf16 arithmetic, elementwise
work in bf16 is emulated through converts and cost more than the matmuls saved; on GPUs and TPUs
this is the usual mixed-precision recipe (the MXU / tensor cores accumulate in f32 anyway).

Dropout follows the NNX conventions: `model.train()` / `model.eval()` (or
`nnx.view(model, deterministic=...)`) switch it, and each dropout layer draws its masks from an
RNG stream it holds (forked from the 'dropout' stream, else the 'default' one, of the `nnx.Rngs`
the module was built with). Every `__call__` also takes `deterministic=` to override the mode
for that call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from micro_dualnet_jax.config import checks as check

# The paper's names for the two attention axes, accepted wherever an axis is named.
AXIS_ALIASES = {'entity': 'entity', 'spatial': 'entity', 'time': 'time', 'temporal': 'time'}


def attention_axis(axis: str, name: str = 'axis') -> str:
  """'entity' | 'spatial' -> 'entity', 'time' | 'temporal' -> 'time'; anything else raises."""
  if axis not in AXIS_ALIASES:
    raise ValueError(f'{name} must be one of {sorted(AXIS_ALIASES)}, got {axis!r}')
  return AXIS_ALIASES[axis]


class Dense(nnx.Module):
  """y = x @ kernel + bias with the matmul in `dtype` and y in float32 (mixed precision, module
  doc); the bias is added in float32, so its gradient is a float32 reduction. Parameters
  `kernel` (in, out) and `bias` (out,) in float32, initialised as `nnx.Linear` does (LeCun
  normal, zeros)."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    check.positive_int('in_features', in_features)
    check.positive_int('out_features', out_features)
    self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                            (in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """(..., in) -> (..., out) float32."""
    y = jnp.matmul(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    return y.astype(jnp.float32) + self.bias[...]


def dense(in_features: int, out_features: int, *, dtype=jnp.float32, rngs: nnx.Rngs) -> Dense:
  return Dense(in_features, out_features, dtype=dtype, rngs=rngs)


def token_dense(layer: Dense | nnx.Linear, x: jax.Array) -> jax.Array:
  """Applies `layer` to the last axis of x (..., D_in) through a 2-D (N, D_in) matmul.

  Same result as layer(x), as float32; on CPU, XLA otherwise copies a transposed 4-D activation
  for the weight gradient and picks a slower matmul (measured: fc1 75 ms -> 43 ms, qkv 54 ->
  27 ms forward + backward at the default shapes, benchmarks/README.md).
  """
  return layer(x.reshape(-1, x.shape[-1])).astype(jnp.float32).reshape(*x.shape[:-1], -1)


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


def _dropout_stream(rngs: nnx.Rngs | nnx.RngStream | None) -> nnx.RngStream | None:
  """A new stream tagged 'dropout', keyed by one draw from rngs' 'dropout' stream (else its
  'default' one); None when rngs has neither. The tag lets `nnx.reseed(model, dropout=key)`
  reseed every dropout layer of a model."""
  if rngs is None:
    return None
  if isinstance(rngs, nnx.Rngs):
    try:
      rngs = rngs['dropout']
    except (KeyError, AttributeError):
      return None
  if not isinstance(rngs, nnx.RngStream):
    raise TypeError(f'rngs must be an nnx.Rngs or nnx.RngStream, got {type(rngs).__name__}')
  return nnx.RngStream(rngs(), tag='dropout')


class Dropout(nnx.Module):
  """Inverted dropout with hashed masks (`dropout_keep_mask`), in NNX train/eval style.

  Args:
    rate: the probability of dropping an element.
    rngs: where the layer's own RNG stream is forked from ('dropout', else 'default'); needed
      only to run in training mode with rate > 0.
    deterministic: the initial mode (False: training, as every NNX module starts).
  """

  def __init__(self, rate: float, *, rngs: nnx.Rngs | nnx.RngStream | None = None,
               deterministic: bool = False):
    check.number_in('rate', rate, 0.0, 1.0, high_open=True)
    self.rate = float(rate)
    self.deterministic = bool(deterministic)
    self.rngs = nnx.data(_dropout_stream(rngs) if self.rate > 0 else None)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
    deterministic = self.deterministic if deterministic is None else deterministic
    if deterministic or self.rate == 0.0:
      return x
    if self.rngs is None:
      raise ValueError(
          'dropout is in training mode but this module was built without a dropout RNG '
          "stream: build it with rngs=nnx.Rngs(params=..., dropout=...) (or nnx.Rngs(seed)), "
          'or call model.eval() to run without dropout')
    keep = dropout_keep_mask(self.rngs(), x.shape, self.rate)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype)).astype(x.dtype)

  def set_view(self, deterministic: bool | None = None):
    """Used by `nnx.view(model, deterministic=...)`."""
    if deterministic is not None:
      self.deterministic = deterministic


class Attention(nnx.Module):
  """Multi-head self-attention along one token axis, with a fused q/k/v projection.

  (B, T, K, D) -> (B, T, K, D); axis 'entity' (or 'spatial') attends over K, 'time' (or
  'temporal') over T with padded frames masked out as keys.
  """

  def __init__(self, width: int, num_heads: int, axis: str, *, dropout: float = 0.0,
               dtype=jnp.float32, rngs: nnx.Rngs):
    check.positive_int('width', width)
    check.positive_int('num_heads', num_heads)
    check.divisible('width', width, 'num_heads', num_heads)
    self.axis, self.num_heads = attention_axis(axis), num_heads
    self.qkv = dense(width, 3 * width, dtype=dtype, rngs=rngs)
    self.out = dense(width, width, dtype=dtype, rngs=rngs)
    self.dtype = dtype
    self.attn_dropout = Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, frame_mask: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    """x (B, T, K, D), frame_mask (B, T) -> (B, T, K, D)."""
    b, t, k, d = x.shape
    h = self.num_heads
    q, key, v = jnp.split(token_dense(self.qkv, x).reshape(b, t, k, 3 * h, d // h), 3, axis=3)
    q = (q * (d // h) ** -0.5).astype(self.dtype)
    key, v = key.astype(self.dtype), v.astype(self.dtype)
    if self.axis == 'entity':
      scores = jnp.einsum('btqhc,btshc->bthqs', q, key, preferred_element_type=jnp.float32)
    else:
      scores = jnp.einsum('bqkhc,bskhc->bkhqs', q, key, preferred_element_type=jnp.float32)
      key_mask = frame_mask.astype(bool)[:, None, None, None, :]    # (B, 1, 1, 1, T)
      scores = jnp.where(key_mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    probs = self.attn_dropout(probs, deterministic=deterministic).astype(self.dtype)
    if self.axis == 'entity':
      y = jnp.einsum('bthqs,btshc->btqhc', probs, v)
    else:
      y = jnp.einsum('bkhqs,bskhc->bqkhc', probs, v)
    return token_dense(self.out, y.astype(jnp.float32).reshape(b, t, k, d))


class MLP(nnx.Module):
  """Token-wise Linear-GELU-(Dropout)-Linear: (..., width) -> (..., out_features or width)."""

  def __init__(self, width: int, hidden: int, out_features: int | None = None, *,
               dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
    check.positive_int('width', width)
    check.positive_int('hidden', hidden)
    if out_features is not None:
      check.positive_int('out_features', out_features)
    self.fc1 = dense(width, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = dense(hidden, out_features or width, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
    h = jax.nn.gelu(token_dense(self.fc1, x))
    return token_dense(self.fc2, self.dropout(h, deterministic=deterministic))


class EncoderLayer(nnx.Module):
  """Pre-LN layer: x + Drop(Attn(LN(x))), then x + Drop(MLP(LN(x)))."""

  def __init__(self, width: int, num_heads: int, mlp_ratio: int, axis: str, *,
               dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
    check.positive_int('mlp_ratio', mlp_ratio)
    self.norm1 = nnx.LayerNorm(width, epsilon=1e-5, rngs=rngs)
    self.attention = Attention(width, num_heads, axis, dropout=dropout, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, epsilon=1e-5, rngs=rngs)
    self.mlp = MLP(width, mlp_ratio * width, dropout=dropout, dtype=dtype, rngs=rngs)
    self.dropout = Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, frame_mask: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    h = self.attention(self.norm1(x), frame_mask, deterministic=deterministic)
    x = x + self.dropout(h, deterministic=deterministic)
    h = self.mlp(self.norm2(x), deterministic=deterministic)
    return x + self.dropout(h, deterministic=deterministic)


class TransformerStack(nnx.Module):
  """`num_layers` encoder layers with their own weights, all attending along `axis`.

  axis='entity' (or 'spatial') is the paper's Spatial-T, axis='time' (or 'temporal') its
  Temporal-T. (B, T, K, D) and frame_mask (B, T) in, (B, T, K, D) out.
  """

  def __init__(self, width: int, num_heads: int, mlp_ratio: int, num_layers: int, axis: str, *,
               dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
    check.positive_int('num_layers', num_layers)
    self.axis = attention_axis(axis)
    self.layers = nnx.List([
        EncoderLayer(width, num_heads, mlp_ratio, self.axis, dropout=dropout, dtype=dtype,
                     rngs=rngs)
        for _ in range(num_layers)])

  def __call__(self, x: jax.Array, frame_mask: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    for layer in self.layers:
      x = layer(x, frame_mask, deterministic=deterministic)
    return x
