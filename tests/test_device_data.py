"""The training split on the devices, and many steps per jitted call (steps.make_train_loop)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from micro_dualnet_jax import sharding, steps, train
from micro_dualnet_jax.pipeline import datasets, device_data
from micro_dualnet_jax.errors import ConfigError
from support import smoke_config


@pytest.fixture(scope='module')
def split(data_dir):
  config = smoke_config(data_dir)
  splits = datasets.load_splits(config)
  loader = datasets.make_loader(config, splits.train, config.run.batch_size, 'train')
  return config, loader, device_data.pack_split(loader)


def test_a_device_batch_equals_the_host_loader_batch_of_the_same_clips(split):
  _, loader, packed = split
  assert packed.num_clips == len(loader) == 64
  assert packed.keypoints.shape[0] == packed.lengths.sum()
  indices = np.array([5, 0, 63, 5, 17], np.int32)       # repeats and both ends
  host = loader.batch(indices)
  device = jax.device_get(jax.jit(device_data.gather_batch)(packed, indices))
  assert host.keys() == device.keys()
  for key in host:
    np.testing.assert_array_equal(device[key], host[key], err_msg=key)


def test_clip_order_is_a_permutation_per_epoch_set_by_seed_and_epoch(split):
  _, _, packed = split
  n, b = packed.num_clips, 16                               # 4 steps per epoch
  order = lambda seed, step: np.asarray(device_data.clip_indices(seed, step, n, b))
  epoch0 = np.concatenate([order(3, s) for s in range(4)])
  assert sorted(epoch0) == list(range(n))                   # every clip once per epoch
  epoch1 = np.concatenate([order(3, s) for s in range(4, 8)])
  assert sorted(epoch1) == list(range(n)) and not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(order(3, 5), order(3, 5))   # a function of (seed, step) alone
  assert not np.array_equal(order(3, 5), order(4, 5))


def _leaves(tree):
  """The tree's arrays on the host, PRNG keys as their key data."""
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                     else x) for x in jax.tree.leaves(tree)]


def _loop_and_state(config, seeds, max_steps, on_device, mesh):
  tx, _ = steps.make_optimizer(config.optim, 100)
  graphdef, state = steps.create_train_states(config.model, tx, mesh, seeds)
  loop = steps.make_train_loop(graphdef, tx, config, mesh, max_steps=max_steps,
                               data_on_device=on_device)
  return loop, state


@pytest.mark.parametrize('on_device', [True, False], ids=['device', 'host'])
def test_k_steps_in_one_call_equal_k_calls_of_one_step_bitwise(split, on_device):
  """One compiled program whatever the number of steps: the states agree bit for bit."""
  config, loader, packed = split
  config = config.replace(**{'optim.warmup_steps': 1})
  mesh = sharding.make_mesh(jax.devices()[:1])
  seeds = sharding.replicate_host_value(np.array([0], np.int32), mesh)
  host = [[loader.batch(loader.train_indices(i))] for i in range(3)]
  source = lambda rows: (device_data.place(packed, mesh) if on_device else
                         steps.stack_host_batches(rows, mesh, 16, 3))
  count = lambda n: sharding.replicate_host_value(np.int32(n), mesh)
  loop, state = _loop_and_state(config, [0], 3, on_device, mesh)
  once, metrics = loop(state, source(host), seeds, count(3))
  loop, state = _loop_and_state(config, [0], 3, on_device, mesh)
  for i in range(3):
    state, one = loop(state, source(host[i:i + 1]), seeds, count(1))
    np.testing.assert_array_equal(np.asarray(one['loss'])[0], np.asarray(metrics['loss'])[i])
  for a, b in zip(_leaves(once), _leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert int(jax.device_get(once['step'])[0]) == 3
  assert np.all(np.asarray(metrics['loss'])[3:] == 0)


def test_the_host_loop_equals_the_single_step_jit(split):
  """The loop program against `make_train_step` on the same batches: equal to 1e-6 (XLA may
  order a reduction differently inside the loop body)."""
  config, loader, _ = split
  config = config.replace(**{'optim.warmup_steps': 1})
  mesh = sharding.make_mesh(jax.devices()[:1])
  batches = [loader.batch(loader.train_indices(i)) for i in range(2)]
  loop, state = _loop_and_state(config, [0], 2, False, mesh)
  looped, _ = loop(state, steps.stack_host_batches([[b] for b in batches], mesh, 16, 2),
                   sharding.replicate_host_value(np.array([0], np.int32), mesh),
                   sharding.replicate_host_value(np.int32(2), mesh))
  tx, _ = steps.make_optimizer(config.optim, 100)
  graphdef, single = steps.create_train_states(config.model, tx, mesh, [0])
  step = steps.make_train_step(graphdef, tx, config, mesh, seeds_axis=True)
  for batch in batches:
    single, _ = step(single, steps.host_batches_to_global([batch], mesh, 16))
  for a, b in zip(_leaves(looped), _leaves(single)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_seed_replica_on_device_data_equals_that_seed_alone(split):
  config, _, packed = split
  config = config.replace(**{'optim.warmup_steps': 1})
  mesh = sharding.make_mesh(jax.devices()[:1])
  placed = device_data.place(packed, mesh)
  count = sharding.replicate_host_value(np.int32(2), mesh)
  loop, state = _loop_and_state(config, [4, 9], 2, True, mesh)
  pair, _ = loop(state, placed, sharding.replicate_host_value(np.array([4, 9], np.int32), mesh),
                 count)
  loop, state = _loop_and_state(config, [9], 2, True, mesh)
  alone, _ = loop(state, placed, sharding.replicate_host_value(np.array([9], np.int32), mesh),
                  count)
  # The same tolerance as the host path's replica test (tests/test_seeds.py): the attention key
  # bias has an exactly-zero gradient, and Adam turns its rounding noise into small updates.
  for a, b in zip(jax.tree.leaves(jax.device_get(pair['params'])),
                  jax.tree.leaves(jax.device_get(alone['params']))):
    np.testing.assert_allclose(a[1], b[0], rtol=0, atol=1e-4)
  for a, b in zip(jax.tree.leaves(jax.device_get(pair['opt_state'])),
                  jax.tree.leaves(jax.device_get(alone['opt_state']))):
    np.testing.assert_allclose(a[1], b[0], rtol=1e-4, atol=1e-8)


def test_calls_per_epoch_are_the_steps_over_k_rounded_up(data_dir, tmp_path):
  """4 steps per epoch (64 clips, batch 16), 3 epochs, 3 steps per call: ceil(4 / 3) calls per
  epoch would be 2 if calls stopped at epochs; they do not, so 12 steps take ceil(12 / 3)."""
  config = smoke_config(data_dir, num_train_steps=12, steps_per_call=3, log_every_steps=1,
                        checkpoint_every_steps=12)
  trainer = train.Trainer(config, str(tmp_path))
  assert trainer.check() is None and trainer.steps_per_epoch == 4
  trainer.start()
  assert trainer.pipeline == 'device' and trainer.train()
  assert trainer.train_calls == math.ceil(12 / 3) and trainer.step == 12
  logged = [line for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()
            if 'train_loss' in line]
  assert len(logged) == 12      # a log record per step, whatever the calls


def test_a_split_over_the_device_budget_is_refused_or_streamed(data_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(device_data, 'budget_bytes', lambda budget_mb=0: 1000)
  refused = train.Trainer(smoke_config(data_dir, **{'data.pipeline': 'device'}),
                          str(tmp_path / 'a'))
  with pytest.raises(ConfigError, match=r'data.pipeline=device: the packed synthetic/train split '
                                        r'takes \d+ MB, over the device memory budget'):
    refused.check()
  assert not (tmp_path / 'a').exists()
  streamed = train.Trainer(smoke_config(data_dir), str(tmp_path / 'b'))
  assert streamed.check() is None and streamed.pipeline == 'host'
