"""The jitted steps on hand-made batches, without a dataset: test-time views, gradient
accumulation. (The end-to-end equalities on real data are the slow tests of test_train.py.)"""

import jax
import numpy as np
import pytest
from flax import nnx

from support import smoke_config
from micro_dualnet_jax import steps
from micro_dualnet_jax.pipeline import augment
from micro_dualnet_jax.skeleton import get_layout


def hand_made_batch(batch: int, length: int, layout_name: str = 'openpose22', seed: int = 0,
                    num_frames=None) -> dict[str, np.ndarray]:
  """Random poses that change from frame to frame, so every read frame shows in the logits."""
  layout = get_layout(layout_name)
  rng = np.random.default_rng(seed)
  return {
      'keypoints': rng.normal(size=(batch, length, layout.num_joints,
                                    layout.coord_dims)).astype(np.float32),
      'confidence': np.ones((batch, length, layout.num_joints), np.float32),
      'num_frames': np.asarray(num_frames or [length] * batch, np.int32),
      'label': (np.arange(batch) % 15).astype(np.int32),
      'weight': np.ones(batch, np.float32)}


# ----------------------------------------------------------------------------- test-time views


VIEWS = {'test_time.num_clips': 2, 'test_time.flip': True, 'augment.flip_prob': 0.5}


@pytest.fixture(scope='module')
def routed_model():
  """The smoke model with its router's output layer moved off zero, so routing depends on the
  input (an untrained router gives exactly 0.5 to every entity of every view)."""
  config = smoke_config('unused', **VIEWS)
  model = steps.build_model(config.model, 0)
  router = model.fusion.logits
  keys = jax.random.split(jax.random.key(7), 2)
  router.kernel[...] = 2.0 * jax.random.normal(keys[0], router.kernel[...].shape)
  router.bias[...] = jax.random.normal(keys[1], router.bias[...].shape)
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  batch = hand_made_batch(3, 30, num_frames=[30, 17, 9])
  out = jax.jit(steps.eval_step_fn(graphdef, config))(params, model_state, batch)

  @jax.jit
  def each_view(params, model_state, batch):
    """(clip c, mirrored) -> the model on that view alone, in the order the views are listed."""
    model = nnx.merge(graphdef, params, model_state)
    layout, aug = get_layout(config.model.layout), config.augment
    views = {}
    for clip in (0, 1):
      for mirrored in (False, True):
        inputs = augment.eval_inputs(batch, layout, aug, phase=(2 * clip + 1, 4),
                                     mirrored=mirrored)
        views[clip, mirrored] = model(inputs['keypoints'], inputs['frame_mask'],
                                      deterministic=True)
    return views

  return out, each_view(params, model_state, batch)


def test_test_time_logits_are_the_mean_over_clips_reading_their_own_frames(routed_model):
  """num_clips = 2: clip c reads each segment at (2c + 1) / 4; with flip, each also mirrored."""
  out, views = routed_model
  logits = {view: np.asarray(v[0]) for view, v in views.items()}
  np.testing.assert_allclose(out['logits'], sum(logits.values()) / 4, rtol=1e-5, atol=1e-6)
  # The views differ, so a view read twice instead of another shows in the mean.
  assert np.abs(logits[0, False] - logits[1, False]).max() > 1e-3
  assert np.abs(logits[0, False] - logits[0, True]).max() > 1e-3


def test_test_time_routing_is_the_mean_over_the_unmirrored_views(routed_model):
  """Mirroring swaps the left and right entities: a mirrored view's routing would put the right
  hand's weights on the left hand, so only the unmirrored views are averaged."""
  out, views = routed_model
  routing = {view: np.asarray(v[1]['routing_weights']) for view, v in views.items()}
  np.testing.assert_allclose(out['routing_weights'], (routing[0, False] + routing[1, False]) / 2,
                             rtol=1e-5, atol=1e-6)
  # The router is not at 0.5 and the mirrored views route otherwise: averaging them in would
  # move the result by this much.
  assert np.abs(routing[0, False] - 0.5).min() > 1e-3
  assert np.abs(routing[0, True] - routing[0, False]).max() > 1e-2


# ----------------------------------------------------------------------------- accumulation


# No stochastic part and a per-sample loss (no MAC), so two half batches average to the full
# batch exactly; one path and no global token keep the step small to compile.
DETERMINISTIC = {'model.dropout': 0.0, 'loss.mac': 'none', 'augment.crop_min_ratio': 1.0,
                 'augment.rotation': (0.0, 0.0, 0.0), 'augment.scale': 0.0,
                 'augment.shear': 0.0, 'augment.joint_dropout': 0.0, 'optim.warmup_steps': 1,
                 'model.paths': 'st', 'model.global_token': False, 'batch_size': 4}


@pytest.fixture(scope='module')
def deterministic_steps():
  """(config, initial state, jitted train step) for grad_accum 1 and 2, and a batch of 4."""
  out = {}
  for accum in (1, 2):
    config = smoke_config('unused', **DETERMINISTIC, **{'optim.grad_accum': accum})
    tx, _ = steps.make_optimizer(config.optim, 10)
    graphdef, state = steps.init_train_state(config.model, tx, 0)
    out[accum] = config, state, jax.jit(steps.train_step_fn(graphdef, tx, config))
  return out, hand_made_batch(4, 20)


def test_gradient_accumulation_averages_the_micro_batch_gradients(deterministic_steps):
  by_accum, batch = deterministic_steps
  # Step 0: learning rate 0; Adam's moments fill.
  (full_state, full), (accum_state, accum) = [
      jax.device_get(step(state, batch)) for _, state, step in (by_accum[1], by_accum[2])]
  for key in ('loss', 'ce', 'accuracy', 'grad_norm'):
    np.testing.assert_allclose(accum[key], full[key], rtol=1e-5, err_msg=key)
  # Adam's first moment after one step is (1 - b1) * the gradient: a sum over the micro-batches
  # instead of their mean doubles it.
  for a, b in zip(jax.tree.leaves(accum_state['opt_state']),
                  jax.tree.leaves(full_state['opt_state'])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
  assert float(full['grad_norm']) > 1e-3


def test_a_non_finite_step_changes_nothing_but_the_counters(deterministic_steps):
  by_accum, batch = deterministic_steps
  _, state, step = by_accum[1]
  state, _ = step(state, batch)
  state, _ = step(state, batch)              # a step at a learning rate above 0
  before = jax.device_get(state)
  poisoned = dict(batch, keypoints=batch['keypoints'].copy())
  poisoned['keypoints'][0] = np.nan          # every joint of one clip
  state, metrics = step(state, poisoned)
  after = jax.device_get(state)
  assert not np.isfinite(metrics['loss'])
  assert int(after['step']) == int(before['step']) + 1 == 3
  assert int(after['nonfinite']) == int(before['nonfinite']) + 1 == 1
  for part in ('params', 'opt_state', 'rng'):
    for a, b in zip(jax.tree.leaves(after[part]), jax.tree.leaves(before[part])):
      np.testing.assert_array_equal(a, b, err_msg=part)
  moved = jax.device_get(step(state, batch)[0])   # and the next finite step trains on
  assert not np.array_equal(jax.tree.leaves(moved['params'])[0],
                            jax.tree.leaves(after['params'])[0])
