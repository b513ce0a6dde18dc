"""Micro-DualNet as a Linen module, for Linen code (through `flax.nnx.bridge.ToLinen`).

    model = MicroDualNetLinen(ModelConfig(num_classes=32))
    variables = model.init(jax.random.key(0), keypoints)
    logits, aux = model.apply(variables, keypoints, train=True,
                              rngs={'dropout': jax.random.key(step)})
    logits, aux = model.apply(variables, keypoints)              # evaluation

Training mode needs a 'dropout' RNG: without one the call is refused (with plain `ToLinen` the
NNX module would fall back to a fixed default key, the same mask every step).
"""

from __future__ import annotations

import jax
from flax import linen
from flax.nnx import bridge

from micro_dualnet_jax.config.model import ModelConfig
from micro_dualnet_jax.models.micro_dualnet import MicroDualNet


class MicroDualNetLinen(linen.Module):
  """`MicroDualNet` in Linen: the same parameters and outputs; `train` switches dropout."""
  config: ModelConfig

  @linen.compact
  def __call__(self, keypoints: jax.Array, frame_mask: jax.Array | None = None, *,
               train: bool = False):
    if train and not self.has_rng('dropout'):
      raise ValueError("train=True needs a 'dropout' RNG: apply(..., rngs={'dropout': key}) with "
                       'a new key every step')
    return bridge.ToLinen(MicroDualNet, args=(self.config,), name='model')(
        keypoints, frame_mask, deterministic=not train)
