"""A functional `init` / `apply` pair for plain JAX users (no NNX objects to hold).

    graphdef, state = init(jax.random.key(0), ModelConfig(num_classes=32))
    logits, aux = jax.jit(apply, static_argnums=0)(graphdef, state, keypoints, frame_mask)
    logits, aux = apply(graphdef, state, keypoints, train=True, dropout_rng=key)   # training

`state` is a pytree of arrays (parameters and the dropout RNG streams); `graphdef` is static and
hashable. `apply` is pure: training mode reseeds the dropout streams from `dropout_rng` for that
call, so pass a new key every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from micro_dualnet_jax.config.model import ModelConfig
from micro_dualnet_jax.models.micro_dualnet import MicroDualNet


def init(rng: jax.Array | int, config: ModelConfig | Mapping[str, Any]
         ) -> tuple[nnx.GraphDef, nnx.State]:
  """Builds the model from `config` (ModelConfig, dict or ConfigDict) -> (graphdef, state)."""
  if not isinstance(config, ModelConfig):
    config = ModelConfig.from_dict(config)
  model = MicroDualNet(config, rngs=nnx.Rngs(rng))
  return nnx.split(model)


def apply(graphdef: nnx.GraphDef, state: nnx.State, keypoints: jax.Array,
          frame_mask: jax.Array | None = None, *, train: bool = False,
          dropout_rng: jax.Array | int | None = None
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs the model: keypoints (B, T, V, C_in), frame_mask (B, T) or None -> (logits, aux).

  train: dropout on, with masks from `dropout_rng` (required then); False evaluates
  deterministically.
  """
  model = nnx.merge(graphdef, state)
  if not train:
    return model(keypoints, frame_mask, deterministic=True)
  if dropout_rng is None:
    raise ValueError('apply(train=True) needs dropout_rng, a new key every step')
  nnx.reseed(model, dropout=dropout_rng)
  return model(keypoints, frame_mask, deterministic=False)
