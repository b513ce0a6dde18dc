"""The train and eval steps lower for TPU and CUDA from this CPU machine (`jax.export` with
`platforms=`): nothing CPU-only (host callbacks, CPU custom calls) enters the model or the steps.
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import smoke
from micro_dualnet_jax import sharding, steps
from micro_dualnet_jax.pipeline import device_data
from support import typed

PLATFORMS = ('tpu', 'cuda')


def _abstract_states(config, tx, mesh, seeds):
  """(graphdef, the stacked train state of `seeds` as ShapeDtypeStructs replicated on `mesh`):
  what `steps.create_train_states` gives, without initialising (exporting needs shapes only)."""
  graphdef = nnx.split(nnx.eval_shape(lambda: steps.build_model(config.model, seeds[0])))[0]
  shapes = jax.eval_shape(lambda: steps.stack_states(
      [steps.init_train_state(config.model, tx, s)[1] for s in seeds]))
  replicated = sharding.replicated(mesh)
  return graphdef, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes)


def _batch(config, seeds=None):
  lead = (seeds,) if seeds else ()
  b, length = config.run.batch_size, config.data.max_frames
  spec = {'keypoints': ((b, length, 22, 2), jnp.float32), 'confidence': ((b, length, 22),
                                                                          jnp.float32),
          'num_frames': ((b,), jnp.int32), 'label': ((b,), jnp.int32),
          'weight': ((b,), jnp.float32), 'index': ((b,), jnp.int32)}
  return {k: jax.ShapeDtypeStruct(lead + shape, dtype) for k, (shape, dtype) in spec.items()}


def _check(exported):
  text = exported.mlir_module()
  assert 'callback' not in text and '@cpu' not in text
  assert set(exported.platforms) == set(PLATFORMS)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_the_train_step_of_several_seeds_lowers_for_tpu_and_cuda(dtype):
  config = smoke.get_config()
  config.model.dtype = dtype
  config = typed(config)
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, state = _abstract_states(config, tx, mesh, [0, 1])
  step = steps.make_train_step(graphdef, tx, config, mesh, seeds_axis=True)
  _check(jax.export.export(step, platforms=PLATFORMS)(state, _batch(config, 2)))


def test_many_steps_on_device_data_lower_for_tpu_and_cuda():
  """The loop of steps_per_call steps that draws its batches from the split on the device."""
  config = typed(smoke.get_config())
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, state = _abstract_states(config, tx, mesh, [0, 1])
  loop = steps.make_train_loop(graphdef, tx, config, mesh, max_steps=4, data_on_device=True)
  replicated = sharding.replicated(mesh)
  frames, clips = 600, 10
  packed = device_data.PackedSplit(
      keypoints=jax.ShapeDtypeStruct((frames, 22, 2), jnp.float32, sharding=replicated),
      confidence=jax.ShapeDtypeStruct((frames, 22), jnp.float32, sharding=replicated),
      offsets=jax.ShapeDtypeStruct((clips,), jnp.int32, sharding=replicated),
      lengths=jax.ShapeDtypeStruct((clips,), jnp.int32, sharding=replicated),
      labels=jax.ShapeDtypeStruct((clips,), jnp.int32, sharding=replicated),
      max_frames=config.data.max_frames)
  seeds = jax.ShapeDtypeStruct((2,), jnp.int32, sharding=replicated)
  count = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
  _check(jax.export.export(loop, platforms=PLATFORMS)(state, packed, seeds, count))


def test_the_eval_step_with_test_time_views_lowers_for_tpu_and_cuda():
  config = smoke.get_config()
  config.augment.flip_prob = 0.5
  config.test_time.num_clips, config.test_time.flip = 2, True
  config = typed(config)
  mesh = sharding.make_mesh(jax.devices()[:1])
  tx, _ = steps.make_optimizer(config.optim, 10)
  graphdef, states = _abstract_states(config, tx, mesh, [0])
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=x.sharding),
                       states)
  step = steps.make_eval_step(graphdef, config, mesh)
  batch = {k: v for k, v in _batch(config).items() if k in ('keypoints', 'confidence',
                                                            'num_frames')}
  _check(jax.export.export(step, platforms=PLATFORMS)(state, batch))
