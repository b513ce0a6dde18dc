"""A functional `init` / `apply` pair for plain JAX users (no NNX objects to hold).

    graphdef, state = init(jax.random.key(0), ModelConfig(num_classes=32))
    logits, aux = jax.jit(apply, static_argnums=0)(graphdef, state, keypoints, frame_mask)

`state` is a pytree of arrays (parameters included); `graphdef` is static and hashable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from micro_dualnet_jax.models.config import ModelConfig
from micro_dualnet_jax.models.micro_dualnet import MicroDualNet


def init(rng: jax.Array, config: ModelConfig | Mapping[str, Any]
         ) -> tuple[nnx.GraphDef, nnx.State]:
  """Builds the model from `config` (ModelConfig, dict or ConfigDict) -> (graphdef, state)."""
  if not isinstance(config, ModelConfig):
    config = ModelConfig.from_dict(config)
  model = MicroDualNet(config, rngs=nnx.Rngs(params=rng))
  return nnx.split(model)


def apply(graphdef: nnx.GraphDef, state: nnx.State, keypoints: jax.Array,
          frame_mask: jax.Array, *, dropout_rng: jax.Array | None = None
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs the model: keypoints (B, T, V, C_in), frame_mask (B, T) -> (logits, aux).

  dropout_rng: a PRNG key to train with dropout; None evaluates deterministically.
  """
  model = nnx.merge(graphdef, state)
  rngs = None if dropout_rng is None else nnx.Rngs(dropout=dropout_rng)
  return model(keypoints, frame_mask, rngs=rngs)
