"""The optimizer: weight-decay mask, learning-rate schedule, gradient clipping, non-finite skip.

Each is checked against a hand computation: what AdamW must do to a parameter, the schedule's
formula at chosen steps, the clipped gradient in Adam's first moment.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from micro_dualnet_jax import sharding, steps
from micro_dualnet_jax.pipeline import datasets
from support import smoke_config, typed


def _config(**optim):
  config = smoke.get_config()
  for key, value in optim.items():
    config.optim[key] = value
  return typed(config)


def _params(config):
  """Zeros shaped like the model's parameters: these tests need their names and shapes only."""
  tx, _ = steps.make_optimizer(config.optim, 100)
  shapes = jax.eval_shape(lambda: steps.init_train_state(config.model, tx, 0)[1]['params'])
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _names(params):
  return {'/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path
                   if getattr(k, 'name', None) != 'value'): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def test_weight_decay_reaches_weight_matrices_only():
  """With zero gradients AdamW's update is -lr * wd * p exactly where decay applies."""
  lr, wd = 0.01, 0.5
  config = _config(learning_rate=lr, warmup_steps=0, weight_decay=wd, final_lr_ratio=1.0)
  params = jax.tree.map(jnp.ones_like, _params(config))   # no parameter hides at 0
  tx, _ = steps.make_optimizer(config.optim, 100)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  decayed = set()
  for name, update in _names(updates).items():
    value = _names(params)[name]
    if np.any(update != 0):
      np.testing.assert_allclose(update, -lr * wd * value, rtol=1e-6, err_msg=name)
      decayed.add(name)
  names = set(_names(params))
  assert decayed == {n for n in names if n.endswith('/kernel')}
  # What must not decay, by name: biases, LayerNorm scales, the learned embeddings.
  for part in ('/bias', '/scale', 'entity_embedding', 'position_embedding'):
    kept = [n for n in names if part in n]
    assert kept and not decayed & set(kept), part


@pytest.mark.parametrize('step, expected', [
    (0, 0.0), (5, 0.5e-3), (10, 1e-3),                    # linear warm-up over 10 steps
    (55, 1e-5 + 0.5 * (1e-3 - 1e-5)),                     # half-way through the cosine
    (100, 1e-5)])                                          # the end: lr * final_lr_ratio
def test_schedule_values(step, expected):
  config = _config(learning_rate=1e-3, warmup_steps=10, final_lr_ratio=0.01)
  _, schedule = steps.make_optimizer(config.optim, 100)
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_each_step_uses_the_scheduled_rate():
  """Adam's bias-corrected first step moves every parameter with a non-zero gradient by the
  learning rate (m / sqrt(v) = sign(g)); no decay with weight_decay 0."""
  config = _config(learning_rate=1e-3, warmup_steps=4, weight_decay=0.0, clip_norm=0.0)
  params = _params(config)
  tx, schedule = steps.make_optimizer(config.optim, 20)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)
  opt_state = tx.init(params)
  apply = jax.jit(tx.update)
  for step in range(3):
    updates, opt_state = apply(grads, opt_state, params)
    for update in jax.tree.leaves(updates):
      np.testing.assert_allclose(update, -float(schedule(step)), rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize('scale', [0.1, 10.0])
def test_gradients_are_clipped_to_the_global_norm(scale):
  clip = 1.0
  config = _config(clip_norm=clip)
  params = _params(config)
  tx, _ = steps.make_optimizer(config.optim, 100)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(0)
  grads = jax.tree.unflatten(treedef, [rng.normal(size=x.shape).astype(np.float32)
                                       for x in leaves])
  norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in jax.tree.leaves(grads)))
  grads = jax.tree.map(lambda g: g * (scale / norm), grads)       # global norm = scale
  _, opt_state = jax.jit(tx.update)(grads, tx.init(params), params)
  factor = min(1.0, clip / scale)
  adam = next(s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, 'mu'))
              if hasattr(s, 'mu'))
  b1 = config.optim.b1
  for mu, g in zip(jax.tree.leaves(adam.mu), jax.tree.leaves(grads)):
    np.testing.assert_allclose(mu, (1 - b1) * factor * g, rtol=1e-5, atol=1e-12)


@pytest.mark.slow   # fast: test_steps.py::test_a_non_finite_step_changes_nothing_but_the_counters
def test_a_non_finite_step_changes_nothing_but_the_counters(tmp_path):
  config = smoke_config(str(tmp_path / 'tfds'))
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, state = steps.create_train_state(config.model, tx, mesh, config.run.seed)
  step = steps.make_train_step(graphdef, tx, config, mesh)
  splits = datasets.load_splits(config)
  batch = next(datasets.make_loader(config, splits.train, config.run.batch_size,
                                    'train').train_batches())
  state, _ = step(state, sharding.to_global(batch, sharding.batch_sharding(mesh),
                                            config.run.batch_size))   # one good step first
  before = jax.device_get(state)
  poisoned = dict(batch, keypoints=batch['keypoints'].copy())
  present = batch['confidence'][0] > 0
  poisoned['keypoints'][0][present] = np.nan      # every present joint of one clip
  state, metrics = step(state, sharding.to_global(poisoned, sharding.batch_sharding(mesh),
                                                  config.run.batch_size))
  after = jax.device_get(state)
  assert not np.isfinite(metrics['loss'])
  assert int(after['step']) == int(before['step']) + 1
  assert int(after['nonfinite']) == int(before['nonfinite']) + 1
  # (The dropout streams' draw counts advance like the step counter.)
  for part in ('params', 'opt_state', 'rng'):
    for a, b in zip(jax.tree.leaves(after[part]), jax.tree.leaves(before[part])):
      np.testing.assert_array_equal(a, b, err_msg=part)
