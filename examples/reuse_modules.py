"""A model of your own built from micro_dualnet_jax's pieces: the entity embedding, a temporal
transformer and the entity router.

    python examples/reuse_modules.py --steps=50

The two branches here are a Temporal-T stack and a plain temporal mean; the router learns, per
body part and per clip, how much of each to use, as Micro-DualNet does with its two paths.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from micro_dualnet_jax import (EntityEmbedding, EntityRouter, TransformerStack, cross_entropy,
                               eval_inputs, get_layout, pad_clips, AugmentConfig)
from micro_dualnet_jax.data import synthetic
from micro_dualnet_jax.models import masked_mean


class TwoBranchModel(nnx.Module):
  """Entity tokens -> (Temporal-T | temporal mean) -> per-entity router -> linear head."""

  def __init__(self, layout: str, num_classes: int, width: int, *, rngs: nnx.Rngs):
    self.embedding = EntityEmbedding(layout, None, width, max_frames=32, rngs=rngs)
    self.temporal = TransformerStack(width, num_heads=2, mlp_ratio=2, num_layers=1,
                                     axis='temporal', dropout=0.1, rngs=rngs)
    num_entities = get_layout(layout).num_entities
    self.router = EntityRouter(num_entities, width, rngs=rngs)
    self.head = nnx.Linear(width, num_classes, rngs=rngs)

  def __call__(self, keypoints, frame_mask):
    tokens = self.embedding(keypoints, frame_mask)                       # (B, T, K, D)
    attended = masked_mean(self.temporal(tokens, frame_mask), frame_mask, axis=1)
    averaged = masked_mean(tokens, frame_mask, axis=1)                   # (B, K, D)
    weights = self.router(attended, averaged)                            # (B, K, 2)
    fused = weights[..., :1] * attended + weights[..., 1:] * averaged
    return self.head(fused.mean(axis=1)), weights


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--steps', type=int, default=50)
  args = parser.parse_args()
  layout = get_layout('openpose22')
  aug = AugmentConfig(num_frames=16)
  clips = pad_clips(synthetic.generate_split('train', num_clips=96, seed=0), 150)
  inputs = jax.jit(lambda b: eval_inputs(b, layout, aug))(clips)
  model = TwoBranchModel('openpose22', len(synthetic.class_names()), 32, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, keypoints, frame_mask, labels):
    def loss_fn(model):
      logits, _ = model(keypoints, frame_mask)
      return cross_entropy(logits, labels, label_smoothing=0.1)
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  rng = np.random.default_rng(0)
  for i in range(args.steps):
    rows = rng.choice(96, 32, replace=False)
    loss = step(model, optimizer, inputs['keypoints'][rows], inputs['frame_mask'][rows],
                jnp.asarray(clips['label'][rows]))
  model.eval()
  _, weights = model(inputs['keypoints'][:4], inputs['frame_mask'][:4])
  print(f'final loss {float(loss):.3f}')
  for name, (a_attn, a_mean) in zip(layout.entity_names, np.asarray(weights).mean(0)):
    print(f'{name:<12} Temporal-T {a_attn:.2f}   temporal mean {a_mean:.2f}')


if __name__ == '__main__':
  main()
