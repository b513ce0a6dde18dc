"""Train Micro-DualNet from Linen code, with dropout working (`MicroDualNetLinen`).

    python examples/linen_bridge.py --steps=30

`MicroDualNetLinen` wraps the NNX module with `flax.nnx.bridge.ToLinen`: Linen's `init` /
`apply`, its variables dict, and a `train` argument; training mode needs a 'dropout' RNG
(`rngs={'dropout': key}`), a new one every step.
"""

import argparse

import jax
import numpy as np
import optax

from micro_dualnet_jax import (AugmentConfig, LossConfig, MicroDualNetLinen, ModelConfig,
                               eval_inputs, get_layout, pad_clips, total_loss)
from micro_dualnet_jax.data import synthetic


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--steps', type=int, default=30)
  args = parser.parse_args()
  layout = get_layout('openpose22')
  aug = AugmentConfig(num_frames=16)
  clips = pad_clips(synthetic.generate_split('train', num_clips=64, seed=0), 150)
  inputs = jax.jit(lambda b: eval_inputs(b, layout, aug))(clips)
  keypoints, frame_mask = inputs['keypoints'], inputs['frame_mask']
  labels = jax.numpy.asarray(clips['label'])
  config = ModelConfig(num_classes=len(synthetic.class_names()), num_frames=16, width=32,
                       num_heads=2, spatial_layers=1, temporal_layers=1, mlp_ratio=2,
                       dropout=0.2)
  model = MicroDualNetLinen(config)
  variables = model.init(jax.random.key(0), keypoints[:2], frame_mask[:2])
  tx = optax.adam(3e-3)
  opt_state = tx.init(variables['params'])

  @jax.jit
  def step(params, opt_state, rows, key):
    def loss_fn(params):
      logits, aux = model.apply({'params': params}, keypoints[rows], frame_mask[rows],
                                train=True, rngs={'dropout': key})
      return total_loss(logits, aux, labels[rows], LossConfig())[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params = variables['params']
  rng = np.random.default_rng(0)
  for i in range(args.steps):
    params, opt_state, loss = step(params, opt_state, rng.choice(64, 16, replace=False),
                                   jax.random.key(i))
  print(f'final training loss {float(loss):.3f}')
  a, _ = model.apply({'params': params}, keypoints[:4], frame_mask[:4], train=True,
                     rngs={'dropout': jax.random.key(1)})
  b, _ = model.apply({'params': params}, keypoints[:4], frame_mask[:4], train=True,
                     rngs={'dropout': jax.random.key(2)})
  c, _ = model.apply({'params': params}, keypoints[:4], frame_mask[:4])
  d, _ = model.apply({'params': params}, keypoints[:4], frame_mask[:4])
  print('training mode, two dropout keys differ:', not np.allclose(a, b))
  print('evaluation mode is deterministic:', bool(np.array_equal(c, d)))


if __name__ == '__main__':
  main()
