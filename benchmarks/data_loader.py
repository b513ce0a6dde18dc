"""Input-pipeline benchmark (the host loader) and the training loop against the bare step.

Prepares the synthetic dataset (the config's `data.options`) into a data_dir, then measures
clips per second through
  * `host`: the real loader, `datasets.make_loader(...).train_batches()` (array_record reads,
    padding, prefetch thread), consumed as fast as it produces;
  * `host+device_augment`: the same batches made global (`sharding.to_global`) and run through
    `augment.train_inputs` under jit, blocking on every batch;
for the config's shapes and for configs/default.py's (batch 64, T = 64), and compares them with
the samples/s the default model's training step consumes (read from train_step.py's JSON): the
loader must deliver well over what the step consumes (the target was 10x).

It also times N steps of a `train.train_and_evaluate`-like loop (loader + to_global + the jitted
step, host syncs only at log points) against N steps of the bare step on one fixed device batch,
interleaved (bare, loop, bare, loop): the loop should stay within 10% of the bare step.

  python benchmarks/data_loader.py --config=configs/synthetic.py \
      --out=benchmarks/results/data_loader_cpu.json
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from micro_dualnet_jax import malloc_tuning  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  malloc_tuning.reexec_with_tuned_malloc()  # measure what main.py runs with

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
from absl import app, flags
from ml_collections import config_flags

import common  # pylint: disable=g-bad-import-order
from micro_dualnet_jax import sharding, steps
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.pipeline import augment, datasets
from micro_dualnet_jax.skeleton import get_layout

common.use_checkout_configs()   # --config files, and configs/default.py below
from configs import default as default_config  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(_ROOT, 'configs', 'synthetic.py'), 'Run configuration file.',
    lock_config=True)
_DATA_DIR = flags.DEFINE_string(
    'data_dir', os.path.join(tempfile.gettempdir(), 'micro_dualnet_bench_data'),
    'Where the synthetic dataset is prepared (reused when already there).')
_BATCHES = flags.DEFINE_integer('batches', 40, 'Timed batches per loader measurement.')
_SHAPES = flags.DEFINE_list('shapes', ['config', 'default'],
                            'Batch/T shapes to measure: the config\'s and/or configs/default.py\'s.')
_TRAIN_STEP_JSON = flags.DEFINE_string(
    'train_step_json', os.path.join(_ROOT, 'benchmarks', 'results', 'train_step_cpu.json'),
    'train_step.py output giving the default model\'s training samples/s.')
_LOOP_CONFIGS = flags.DEFINE_list('loop_configs', ['config', 'default'],
                                  'Models for loop vs bare step: the config\'s, default.py\'s.')
_LOOP_SECONDS = flags.DEFINE_float('loop_seconds', 30.0,
                                   'Time budget of one loop (or bare) run; sets N steps.')
_LOOP_REPEATS = flags.DEFINE_integer('loop_repeats', 2, 'Interleaved (bare, loop) pairs.')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')


def prepared_splits(config: RunConfig) -> tuple[datasets.Splits, float]:
  """Opens (preparing if needed) the dataset; prepare's own JSON lines go to stderr."""
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):
    splits = datasets.load_splits(config)
  return splits, time.perf_counter() - start


def bench_generation(num_clips: int = 2250) -> dict[str, Any]:
  """Clips/s of the synthetic generator alone (no files): 2,250 clips, as the synthetic tests
  generate (it took about 3 s on one slow core)."""
  from micro_dualnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  clips = synthetic.generate_split('train', num_clips=num_clips, seed=0)
  seconds = time.perf_counter() - start
  return {'clips': len(clips), 'seconds': round(seconds, 2),
          'clips_per_s': round(len(clips) / seconds, 1)}


def shape_config(base: RunConfig, which: str) -> RunConfig:
  """The config itself, or configs/default.py's model/batch on base's data."""
  if which == 'config':
    return base
  return RunConfig.from_config_dict(default_config.get_config()).replace(
      data=base.to_dict()['data'])


def bench_loader(config: RunConfig, source, batches: int) -> dict[str, Any]:
  """Clips/s of the host loader alone and with on-device augmentation."""
  mesh = sharding.make_mesh()
  batch_size = config.run.batch_size
  loader = datasets.make_loader(config, source, batch_size, 'train')
  out: dict[str, Any] = {'batch_size': batch_size, 'max_frames_L': int(config.data.max_frames),
                         'num_frames_T': int(config.augment.num_frames),
                         'load_average_before': common.load_average()}

  # Host only: the prefetching iterator, consumed as fast as it yields.
  it = loader.train_batches(0)
  next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  host_s = time.perf_counter() - start
  it.close()
  out['host'] = {'clips_per_s': round(batches * batch_size / host_s, 1),
                 'ms_per_batch': round(host_s / batches * 1e3, 2)}

  # One batch built in the calling thread (no prefetch): the per-clip read + pad cost.
  start = time.perf_counter()
  for step in range(min(batches, 10)):
    indices = loader.train_indices(step)
    loader.batch(indices, np.ones(len(indices), np.float32))
  serial_s = (time.perf_counter() - start) / min(batches, 10)
  out['host_single_thread'] = {'clips_per_s': round(batch_size / serial_s, 1),
                               'ms_per_batch': round(serial_s * 1e3, 2)}

  # Host + to_global + jitted train_inputs (the augmentation half of the train step).
  layout = get_layout(config.model.layout)
  aug_cfg = config.augment
  batch_sharding = sharding.batch_sharding(mesh)
  aug = jax.jit(lambda batch, key: augment.train_inputs(batch, key, layout, aug_cfg))
  it = loader.train_batches(0)
  key = jax.random.key(0)
  start = time.perf_counter()
  jax.block_until_ready(aug(sharding.to_global(next(it), batch_sharding, batch_size), key))
  out['augment_compile_s'] = round(time.perf_counter() - start, 2)
  start = time.perf_counter()
  for i in range(batches):
    batch = sharding.to_global(next(it), batch_sharding, batch_size)
    jax.block_until_ready(aug(batch, jax.random.fold_in(key, i)))
  total_s = time.perf_counter() - start
  it.close()
  out['host+device_augment'] = {'clips_per_s': round(batches * batch_size / total_s, 1),
                                'ms_per_batch': round(total_s / batches * 1e3, 2)}
  # Augmentation alone on a fixed device batch.
  batch = sharding.to_global(loader.batch(
      loader.train_indices(0), np.ones(batch_size, np.float32)), batch_sharding, batch_size)
  timing = common.time_calls(lambda: aug(batch, key), max(5, batches // 4))
  out['device_augment_only'] = {'clips_per_s': round(batch_size / timing['median_s'], 1),
                                'ms_per_batch': round(timing['median_s'] * 1e3, 2)}
  out['load_average_after'] = common.load_average()
  return out


def bench_loop(config: RunConfig, source, seconds: float,
               repeats: int) -> dict[str, Any]:
  """Loop (loader + to_global + step, syncing at log points) vs bare step, N steps each."""
  mesh = sharding.make_mesh()
  batch_size = config.run.batch_size
  loader = datasets.make_loader(config, source, batch_size, 'train')
  tx, _ = steps.make_optimizer(config.optim, 100_000)
  graphdef, state = steps.create_train_state(config.model, tx, mesh)
  step = steps.make_train_step(graphdef, tx, config, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  fixed = sharding.to_global(loader.batch(
      loader.train_indices(0), np.ones(batch_size, np.float32)), batch_sharding, batch_size)
  start = time.perf_counter()
  state, metrics = step(state, fixed)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(2):
    state, metrics = step(state, fixed)
  jax.block_until_ready(metrics)
  one = (time.perf_counter() - start) / 2
  n = max(3, int(seconds / one))
  log_every = config.run.log_every_steps
  holder = {'state': state, 'step': 0}

  def bare():
    s = holder['state']
    for _ in range(n):
      s, m = step(s, fixed)
    jax.block_until_ready(m)
    holder['state'] = s

  def loop():
    s = holder['state']
    batches = loader.train_batches(holder['step'])
    for i in range(n):
      batch = sharding.to_global(next(batches), batch_sharding, batch_size)
      s, m = step(s, batch)
      if (i + 1) % log_every == 0:     # what train_and_evaluate reads back at log points
        jax.device_get(m)
        int(s['nonfinite'])
    jax.block_until_ready(m)
    batches.close()
    holder['state'], holder['step'] = s, holder['step'] + n

  times: dict[str, list[float]] = {'bare': [], 'loop': []}
  for _ in range(repeats):
    for name, fn in (('bare', bare), ('loop', loop)):
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  bare_s, loop_s = min(times['bare']), min(times['loop'])
  return {
      'model': {k: getattr(config.model, k) for k in ('width', 'num_heads', 'spatial_layers',
                                             'temporal_layers', 'mlp_ratio', 'num_frames')},
      'batch_size': batch_size, 'steps_per_run': n, 'compile_s': round(compile_s, 2),
      'bare_samples_per_s': round(n * batch_size / bare_s, 2),
      'loop_samples_per_s': round(n * batch_size / loop_s, 2),
      'loop_over_bare': round(bare_s / loop_s, 4),
      'within_10_percent': bool(bare_s / loop_s >= 0.9),
      'runs_s': {k: [round(x, 3) for x in v] for k, v in times.items()},
      'load_average_after': common.load_average(),
  }


def train_step_rate(path: str) -> dict[str, Any] | None:
  """The default model's training samples/s per dtype from train_step.py's JSON."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    data = json.load(f)
  return {'source': os.path.relpath(path, _ROOT), 'batch_size': data.get('batch_size'),
          'config': data.get('config'),
          **{dtype: v['train']['samples_per_s'] for dtype, v in data.get('variants', {}).items()}}


def main(argv):
  del argv
  base = RunConfig.from_config_dict(_CONFIG.value).replace(**{'data.data_dir': _DATA_DIR.value})
  result: dict[str, Any] = {
      'benchmark': 'data_loader', 'config': config_flags.get_config_filename(flags.FLAGS['config']),
      'machine': common.machine_info(), 'load_average_start': common.load_average(),
      'data_dir': _DATA_DIR.value, 'dataset_options': base.data.options,
  }
  splits, prepare_s = prepared_splits(base)
  result['open_or_prepare_s'] = round(prepare_s, 2)
  result['synthetic_generation'] = bench_generation()
  result['train_clips'] = len(splits.train)
  result['loader'] = {}
  for which in _SHAPES.value:
    result['loader'][which] = bench_loader(shape_config(base, which), splits.train,
                                           _BATCHES.value)
  rate = train_step_rate(_TRAIN_STEP_JSON.value)
  result['default_train_step'] = rate
  if rate and 'float32' in rate and 'default' in result['loader']:
    loader = result['loader']['default']
    ratios = {}
    for dtype in ('float32', 'bfloat16'):
      if dtype in rate:
        for stage in ('host', 'host+device_augment'):
          ratios[f'{stage}_over_{dtype}_step'] = round(
              loader[stage]['clips_per_s'] / rate[dtype], 1)
    result['loader_over_train_step'] = ratios
    result['meets_10x'] = all(v >= 10 for v in ratios.values())
  result['loop_vs_bare'] = {}
  for which in _LOOP_CONFIGS.value:
    result['loop_vs_bare'][which] = bench_loop(shape_config(base, which), splits.train,
                                               _LOOP_SECONDS.value, _LOOP_REPEATS.value)
  result['load_average_end'] = common.load_average()
  result['peak_rss_mb'] = common.peak_rss_mb()
  common.write_json(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)
