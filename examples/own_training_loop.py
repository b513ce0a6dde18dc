"""Train `MicroDualNet` in your own optax loop: nothing of micro_dualnet_jax's training code.

    python examples/own_training_loop.py --steps=200

The model is a Flax NNX module: `nnx.Optimizer` holds AdamW, `nnx.jit` compiles the step, the
model's own dropout streams give the masks (`model.train()`), and `train_inputs` does the
on-device frame sampling, normalisation and augmentation the project's trainer does.
"""

import argparse

import jax
import numpy as np
import optax
from flax import nnx

from micro_dualnet_jax import (AugmentConfig, LossConfig, MicroDualNet, ModelConfig, eval_inputs,
                               get_layout, pad_clips, total_loss, train_inputs)
from micro_dualnet_jax.data import synthetic


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--width', type=int, default=32)
  parser.add_argument('--train_clips', type=int, default=480)
  args = parser.parse_args()

  layout = get_layout('openpose22')
  train = pad_clips(synthetic.generate_split('train', num_clips=args.train_clips, seed=0), 150)
  test = pad_clips(synthetic.generate_split('test', num_clips=150, seed=0), 150)
  config = ModelConfig(layout='openpose22', num_classes=len(synthetic.class_names()),
                       num_frames=16, width=args.width, num_heads=2, spatial_layers=1,
                       temporal_layers=1, mlp_ratio=2)
  aug = AugmentConfig(num_frames=16, flip_prob=0.0)   # left/right tell these classes apart
  losses = LossConfig()
  model = MicroDualNet(config, rngs=nnx.Rngs(params=0, dropout=1))
  optimizer = nnx.Optimizer(model, optax.adamw(3e-3, weight_decay=0.05), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch, key):
    inputs = train_inputs(batch, key, layout, aug)

    def loss_fn(model):
      logits, aux = model(inputs['keypoints'], inputs['frame_mask'])
      return total_loss(logits, aux, batch['label'], losses)[0]

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  @nnx.jit
  def predict(model, batch):
    inputs = eval_inputs(batch, layout, aug)
    return model(inputs['keypoints'], inputs['frame_mask'])[0].argmax(-1)

  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  model.train()
  for step in range(args.steps):
    rows = rng.choice(len(train['label']), 32, replace=False)
    batch = {k: v[rows] for k, v in train.items()}
    loss = train_step(model, optimizer, batch, jax.random.fold_in(key, step))
    if step % 50 == 0 or step == args.steps - 1:
      print(f'step {step}: loss {float(loss):.3f}')
  model.eval()
  accuracy = float((predict(model, test) == test['label']).mean())
  print(f'held-out accuracy {100 * accuracy:.1f} % (chance {100 / config.num_classes:.1f} %)')


if __name__ == '__main__':
  main()
