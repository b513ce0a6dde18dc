"""Training- and inference-step benchmark of the real jitted steps.

Runs `steps.make_train_step` (on-device augmentation, forward/backward, AdamW) and
`steps.make_eval_step` on synthetic batches of the loader's shapes and prints one JSON object:
compile time, steady samples/s, XLA's FLOPs per sample, achieved FLOP/s against the practical
peak (a large fp32 jnp.dot measured in the same run) and the nominal peak (cores x clock x vector
width), peak host memory, eval batch-1 latency and large-batch throughput; per compute dtype.

  python benchmarks/train_step.py --config=configs/default.py
  python benchmarks/train_step.py --config=configs/default.py --config.batch_size=32 --vs-torch \
      --out=benchmarks/results/train_step_cpu.json
  python benchmarks/train_step.py --config=configs/default.py --dtypes=float32 --profile
  python benchmarks/train_step.py --config=configs/default.py --components

--vs-torch also runs the PyTorch twin (the script named by --torch_twin, fp32 eager and bf16
autocast) with the same batch and model sizes as subprocesses, and reports the ratios.
--profile adds a per-HLO-op time breakdown of the train step (from a jax.profiler trace).
--components adds micro-benchmarks of the model's pieces at the model's shapes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from micro_dualnet_jax import malloc_tuning  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  malloc_tuning.reexec_with_tuned_malloc()  # measure what main.py runs with

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

import common  # pylint: disable=g-bad-import-order
from micro_dualnet_jax import sharding, steps
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.models import transformer
from micro_dualnet_jax.pipeline import augment
from micro_dualnet_jax.skeleton import get_layout

common.use_checkout_configs()   # the --config files import one another as configs.<name>

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(_ROOT, 'configs', 'default.py'), 'Run configuration file.',
    lock_config=True)
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'],
                            'model.dtype variants to measure ("config": the config\'s own).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed training steps per variant (after warm-up).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed training steps after compilation.')
_EVAL_BATCH = flags.DEFINE_integer('eval_batch', 0, 'Large eval batch (0: config.eval_batch_size).')
_EVAL_REPEATS = flags.DEFINE_integer('eval_repeats', 3, 'Timed large-batch eval calls.')
_LATENCY_REPEATS = flags.DEFINE_integer('latency_repeats', 20, 'Timed batch-1 eval calls.')
_PEAK_N = flags.DEFINE_integer('peak_n', 2048, 'Size of the square matmul giving the peak.')
_VS_TORCH = flags.DEFINE_bool('vs-torch', False, 'Also run the PyTorch twin and print ratios.')
_TORCH_TWIN = flags.DEFINE_string(
    'torch_twin', os.path.join(os.path.dirname(_ROOT), 'shared', 'benchmarks', 'torch_twin.py'),
    'Path of the PyTorch twin script.')
_TORCH_STEPS = flags.DEFINE_integer('torch_steps', 0, 'Timed twin steps (0: --steps).')
_TWIN_PYTHON = flags.DEFINE_string('twin_python', sys.executable, 'The Python that runs the twin '
                                   '(one with torch installed; may differ from this one).')
_TWIN_DEVICE = flags.DEFINE_string('twin_device', 'cpu', 'The twin\'s torch device (cpu, cuda).')
_TWIN_COMPILE = flags.DEFINE_bool('twin_compile', False, 'Also run the twin bf16 under '
                                  'torch.compile.')
_PROFILE = flags.DEFINE_bool('profile', False, 'Per-HLO-op breakdown of the train step.')
_PROFILE_TOP = flags.DEFINE_integer('profile_top', 25, 'Ops listed in the profile.')
_COMPONENTS = flags.DEFINE_bool('components', False, 'Micro-benchmark the model\'s pieces.')
_SKIP_EVAL = flags.DEFINE_bool('skip_eval', False, 'Leave out the inference measurements.')
_SKIP_TRAIN = flags.DEFINE_bool('skip_train', False,
                                'Leave out the step measurements (e.g. --components alone).')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')


# ----------------------------------------------------------------------------- the real steps


def _host_batch(config: RunConfig, batch_size: int, seed: int = 0
                ) -> dict[str, np.ndarray]:
  layout = get_layout(config.model.layout)
  return common.synthetic_batch(batch_size, config.data.max_frames, layout.num_joints,
                                layout.coord_dims, config.model.num_classes, seed)


def bench_train(config: RunConfig, mesh: jax.sharding.Mesh, peak_gflops: float,
                num_steps: int, warmup: int, profile: bool) -> dict[str, Any]:
  """Compile time, steady throughput and FLOP/s of `steps.make_train_step` at config's batch."""
  batch_size = config.run.batch_size
  sharding.check_batch_size(batch_size, mesh)
  tx, _ = steps.make_optimizer(config.optim, 100_000)
  graphdef, state = steps.create_train_state(config.model, tx, mesh)
  step = steps.make_train_step(graphdef, tx, config, mesh)
  batch = sharding.to_global(_host_batch(config, batch_size), sharding.batch_sharding(mesh),
                             batch_size)
  start = time.perf_counter()
  lowered = step.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  costs = common.cost(compiled)
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
  times = []
  usage_start = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(num_steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  usage_end = resource.getrusage(resource.RUSAGE_SELF)
  median = float(np.median(times))
  flops_per_sample = costs['flops'] / batch_size
  achieved = costs['flops'] / median / 1e9
  result = {
      'batch_size': batch_size, 'compile_s': round(compile_s, 2),
      'step_s_median': round(median, 4), 'step_s_best': round(min(times), 4),
      'step_s_all': [round(t, 4) for t in times],
      'samples_per_s': round(batch_size / median, 3),
      'samples_per_s_best': round(batch_size / min(times), 3),
      'gflop_per_sample': round(flops_per_sample / 1e9, 3),
      'gflop_per_step': round(costs['flops'] / 1e9, 2),
      'transcendentals_per_sample': round(costs['transcendentals'] / batch_size),
      'bytes_accessed_per_step_gb': round(costs['bytes accessed'] / 1e9, 3),
      'achieved_gflops': round(achieved, 2),
      'fraction_of_practical_peak': round(achieved / peak_gflops, 4),
      'final_loss': float(metrics['loss']), 'peak_rss_mb': common.peak_rss_mb(),
      # Per timed step: kernel time and page faults show allocator cost (first-touch zeroing).
      'cpu_user_s_per_step': round((usage_end.ru_utime - usage_start.ru_utime) / num_steps, 3),
      'cpu_sys_s_per_step': round((usage_end.ru_stime - usage_start.ru_stime) / num_steps, 3),
      'minor_page_faults_per_step': round(
          (usage_end.ru_minflt - usage_start.ru_minflt) / num_steps),
  }
  if profile:
    holder = {'state': state}

    def run():
      holder['state'], out = compiled(holder['state'], batch)
      return out
    result['profile'] = common.profile_ops(run, (), compiled.as_text(), 'jit_step',
                                           calls=2, top=_PROFILE_TOP.value)
  return result


def bench_eval(config: RunConfig, mesh: jax.sharding.Mesh, peak_gflops: float,
               eval_batch: int, repeats: int, latency_repeats: int) -> dict[str, Any]:
  """Large-batch throughput and batch-1 latency of `steps.make_eval_step`."""
  tx, _ = steps.make_optimizer(config.optim, 1)
  graphdef, state = steps.create_train_state(config.model, tx, mesh)
  eval_step = steps.make_eval_step(graphdef, config, mesh)
  out: dict[str, Any] = {}
  for name, batch_size, n in (('large_batch', eval_batch, repeats),
                              ('batch1', 1, latency_repeats)):
    if batch_size % mesh.devices.size:
      continue
    batch = sharding.to_global(_host_batch(config, batch_size, seed=1),
                               sharding.batch_sharding(mesh), batch_size)
    start = time.perf_counter()
    compiled = eval_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    costs = common.cost(compiled)
    timing = common.time_calls(lambda: compiled(state, batch), n, warmup=1)
    entry = {'batch_size': batch_size, 'compile_s': round(compile_s, 2),
             'median_s': round(timing['median_s'], 5), 'best_s': round(timing['best_s'], 5),
             'samples_per_s': round(batch_size / timing['median_s'], 2),
             'gflop_per_sample': round(costs['flops'] / batch_size / 1e9, 3),
             'achieved_gflops': round(costs['flops'] / timing['median_s'] / 1e9, 2)}
    entry['fraction_of_practical_peak'] = round(entry['achieved_gflops'] / peak_gflops, 4)
    if name == 'batch1':
      entry['latency_ms_median'] = round(timing['median_s'] * 1e3, 2)
      entry['latency_ms_best'] = round(timing['best_s'] * 1e3, 2)
    out[name] = entry
  out['peak_rss_mb'] = common.peak_rss_mb()
  return out


# ----------------------------------------------------------------------------- the PyTorch twin


def twin_args(config: RunConfig) -> list[str]:
  """Twin flags that give the same model and batch as `config` (the twin's C = our C + 1: the
  coordinates plus the confidence channel)."""
  m = config.model
  layout = get_layout(m.layout)
  entities = len(m.entities) if m.entities else len(layout.entity_names)
  if m.spatial_layers != m.temporal_layers:
    raise ValueError('the twin has one --layers for all four stacks; spatial_layers '
                     f'{m.spatial_layers} != temporal_layers {m.temporal_layers}')
  return ['--batch', str(config.run.batch_size), '--frames', str(config.augment.num_frames),
          '--joints', str(layout.num_joints), '--chans', str(layout.coord_dims + 1),
          '--entities', str(entities), '--width', str(m.width), '--layers', str(m.spatial_layers),
          '--heads', str(m.num_heads), '--classes', str(m.num_classes)]


def run_twin(script: str, args: list[str], bf16: bool, steps: int,
             compiled: bool = False) -> dict[str, Any]:
  """Runs the twin once in a subprocess and returns its JSON line (or the error)."""
  command = [_TWIN_PYTHON.value, script, *args, '--steps', str(steps),
             '--device', _TWIN_DEVICE.value] + (['--bf16'] if bf16 else []) + (
                 ['--compile'] if compiled else [])
  start = time.perf_counter()
  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
  if proc.returncode or not lines:
    return {'error': (proc.stderr or proc.stdout)[-2000:], 'command': ' '.join(command)}
  result = json.loads(lines[-1])
  result['command'] = ' '.join(command[1:])
  result['wall_s'] = round(time.perf_counter() - start, 1)
  result['load_average'] = common.load_average()
  return result


# ----------------------------------------------------------------------------- components


def _bench_fn(fn, *args, repeats: int = 5, peak: float | None = None) -> dict[str, Any]:
  """Times jit(fn)(*args) (best and median of `repeats`) with XLA's FLOP count."""
  jitted = jax.jit(fn)
  compiled = jitted.lower(*args).compile()
  timing = common.time_calls(lambda: compiled(*args), repeats, warmup=1)
  flops = common.cost(compiled)['flops']
  out = {'ms_best': round(timing['best_s'] * 1e3, 3),
         'ms_median': round(timing['median_s'] * 1e3, 3),
         'gflop': round(flops / 1e9, 4),
         'gflops_achieved': round(flops / timing['best_s'] / 1e9, 2)}
  if peak:
    out['fraction_of_peak'] = round(flops / timing['best_s'] / 1e9 / peak, 4)
  return out


def _fwd_bwd(f):
  """Forward + backward of sum(f(*args)) with respect to every argument."""
  def run(*args):
    loss = lambda *a: jnp.sum(f(*a).astype(jnp.float32))
    return jax.grad(loss, argnums=tuple(range(len(args))))(*args)
  return run


def components(config: RunConfig, peak: float) -> dict[str, Any]:
  """Micro-benchmarks, forward + backward unless said, at the model's token shapes
  (B = config.batch_size, T = augment.num_frames, K entities, width D, H heads)."""
  m = config.model
  layout = get_layout(m.layout)
  b, t = config.run.batch_size, int(config.augment.num_frames)
  k = len(m.entities) if m.entities else len(layout.entity_names)
  d, h = int(m.width), int(m.num_heads)
  c = d // h
  dtype = jnp.dtype(m.dtype)
  key = iter(jax.random.split(jax.random.key(0), 64))
  rand = lambda *shape, dt=dtype: jax.random.normal(next(key), shape, jnp.float32).astype(dt)
  tokens = b * t * k
  out: dict[str, Any] = {'shapes': {'B': b, 'T': t, 'K': k, 'D': d, 'H': h, 'tokens': tokens,
                                    'dtype': dtype.name}}

  # Dense layers of one encoder layer (the bulk of the FLOPs).
  x2 = rand(tokens, d)
  w_qkv, w_out = rand(d, 3 * d), rand(d, d)
  w1, w2 = rand(d, 4 * d), rand(4 * d, d)
  out['dense_qkv_fwd_bwd'] = _bench_fn(_fwd_bwd(lambda x, w: x @ w), x2, w_qkv, peak=peak)
  out['dense_out_fwd_bwd'] = _bench_fn(_fwd_bwd(lambda x, w: x @ w), x2, w_out, peak=peak)
  out['mlp_gelu_tanh_fwd_bwd'] = _bench_fn(
      _fwd_bwd(lambda x, a, z: jax.nn.gelu(x @ a) @ z), x2, w1, w2, peak=peak)
  out['mlp_gelu_exact_fwd_bwd'] = _bench_fn(
      _fwd_bwd(lambda x, a, z: jax.nn.gelu(x @ a, approximate=False) @ z), x2, w1, w2, peak=peak)
  # The same matmuls on 4-D tokens (B, T, K, D), as nnx.Linear sees them.
  x4 = rand(b, t, k, d)
  out['dense_qkv_4d_fwd_bwd'] = _bench_fn(_fwd_bwd(lambda x, w: x @ w), x4, w_qkv, peak=peak)
  out['dense_qkv_fwd_bwd_highest_precision'] = _bench_fn(
      _fwd_bwd(lambda x, w: jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST)), x2, w_qkv,
      peak=peak)

  # Elementwise pieces on the MLP hidden (tokens, 4D) and the token tensor.
  hidden = rand(tokens, 4 * d)
  out['gelu_tanh_fwd_bwd'] = _bench_fn(_fwd_bwd(jax.nn.gelu), hidden)
  out['gelu_exact_fwd_bwd'] = _bench_fn(
      _fwd_bwd(lambda x: jax.nn.gelu(x, approximate=False)), hidden)
  norm = nnx.LayerNorm(d, epsilon=1e-5, rngs=nnx.Rngs(0))
  gdef, nstate = nnx.split(norm)
  out['layernorm_fwd_bwd'] = _bench_fn(_fwd_bwd(lambda x: nnx.merge(gdef, nstate)(x)), x4)

  # Attention cores (after the qkv projection) in the model's (B, T, K, H, c) layout.
  q, kk, v = rand(b, t, k, h, c), rand(b, t, k, h, c), rand(b, t, k, h, c)
  mask = jnp.ones((b, t), jnp.float32)

  def entity_einsum(q, kk, v):
    s = jnp.einsum('btqhc,btshc->bthqs', q, kk, preferred_element_type=jnp.float32)
    p = jax.nn.softmax(s, -1).astype(q.dtype)
    return jnp.einsum('bthqs,btshc->btqhc', p, v)

  def entity_broadcast(q, kk, v):   # K = 5: multiply-add instead of 5x5 matmuls
    s = jnp.sum(q[:, :, :, None].astype(jnp.float32) * kk[:, :, None].astype(jnp.float32), -1)
    p = jax.nn.softmax(s, 3)                                   # (b, t, q, s, h)
    return jnp.sum(p[..., None] * v[:, :, None].astype(jnp.float32), 3).astype(q.dtype)

  def temporal_einsum(q, kk, v):
    s = jnp.einsum('bqkhc,bskhc->bkhqs', q, kk, preferred_element_type=jnp.float32)
    s = jnp.where(mask.astype(bool)[:, None, None, None, :], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, -1).astype(q.dtype)
    return jnp.einsum('bkhqs,bskhc->bqkhc', p, v)

  def temporal_pretransposed(q, kk, v):   # (B, K, H, T, c): batch dims leading
    s = jnp.einsum('bkhqc,bkhsc->bkhqs', q, kk, preferred_element_type=jnp.float32)
    s = jnp.where(mask.astype(bool)[:, None, None, None, :], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, -1).astype(q.dtype)
    return jnp.einsum('bkhqs,bkhsc->bkhqc', p, v)

  to_bkht = lambda a: a.transpose(0, 2, 3, 1, 4)
  out['entity_attention_einsum_fwd_bwd'] = _bench_fn(_fwd_bwd(entity_einsum), q, kk, v)
  out['entity_attention_broadcast_fwd_bwd'] = _bench_fn(_fwd_bwd(entity_broadcast), q, kk, v)
  out['temporal_attention_einsum_fwd_bwd'] = _bench_fn(_fwd_bwd(temporal_einsum), q, kk, v)
  out['temporal_attention_pretransposed_fwd_bwd'] = _bench_fn(
      _fwd_bwd(temporal_pretransposed), to_bkht(q), to_bkht(kk), to_bkht(v))
  out['temporal_attention_transpose_inside_fwd_bwd'] = _bench_fn(
      _fwd_bwd(lambda q, kk, v: temporal_pretransposed(to_bkht(q), to_bkht(kk), to_bkht(v))
               .transpose(0, 3, 1, 2, 4)), q, kk, v)

  # The real encoder layers (forward + backward through params and input, with dropout).
  for axis in ('entity', 'time'):
    layer = transformer.EncoderLayer(d, h, int(m.mlp_ratio), axis, dropout=float(m.dropout),
                                     dtype=dtype, rngs=nnx.Rngs(0))
    lg, lp, lr = nnx.split(layer, nnx.Param, ...)
    xin = rand(b, t, k, d, dt=jnp.float32)

    def layer_loss(p, x, drop_key, lg=lg, lr=lr):
      model = nnx.merge(lg, p, jax.tree.map(lambda v: v, lr))
      if drop_key is not None:
        nnx.reseed(model, dropout=drop_key)
      return jnp.sum(model(x, mask, deterministic=drop_key is None).astype(jnp.float32))

    grad = jax.grad(layer_loss, argnums=(0, 1))
    out[f'encoder_layer_{axis}_fwd_bwd_dropout'] = _bench_fn(
        lambda p, x, kd: grad(p, x, kd), lp, xin, jax.random.key(1), peak=peak)
    out[f'encoder_layer_{axis}_fwd_bwd_no_dropout'] = _bench_fn(
        lambda p, x: grad(p, x, None), lp, xin, peak=peak)
    out[f'encoder_layer_{axis}_fwd'] = _bench_fn(
        lambda p, x: layer_loss(p, x, None), lp, xin, peak=peak)

  # Dropout masks: how many elements one step draws, and what drawing them costs.
  per_layer = {'entity': b * t * h * k * k, 'time': b * k * h * t * t}
  layers = int(m.spatial_layers) * 2 + int(m.temporal_layers) * 2
  mask_elems = (tokens * 4 * d + 2 * tokens * d) * layers + \
      (per_layer['entity'] + per_layer['time']) * (layers // 2)
  out['dropout_mask_elements_per_step'] = mask_elems
  n = 16 * 1024 * 1024
  ones = jnp.ones((n,), dtype)
  rate = 0.1
  variants = {
      # What nnx.Dropout does: a float32 uniform per element (threefry), compare, select.
      'nnx_bernoulli': lambda kk_: jnp.where(jax.random.bernoulli(kk_, 1 - rate, (n,)),
                                             ones / (1 - rate), 0),
      # One threefry 32-bit word per 4 elements, compared bytewise (rate quantised to 1/256).
      'packed_uint8': lambda kk_: jnp.where(
          jax.lax.bitcast_convert_type(jax.random.bits(kk_, (n // 4,), jnp.uint32),
                                       jnp.uint8).reshape(n) >= int(round(rate * 256)),
          ones / (1 - rate), 0),
      # A counter-based integer hash of (element index, key) fused into the select.
      'hash_lowbias32': lambda kk_: jnp.where(transformer.dropout_keep_mask(kk_, (n,), rate),
                                              ones / (1 - rate), 0),
  }
  for impl in ('threefry2x32', 'unsafe_rbg'):
    for vname, fn in variants.items():
      if impl != 'threefry2x32' and vname != 'nnx_bernoulli':
        continue
      res = _bench_fn(fn, jax.random.key(0, impl=impl))
      res['ns_per_element'] = round(res['ms_best'] * 1e6 / n, 3)
      res['est_s_per_train_step'] = round(res['ns_per_element'] * mask_elems / 1e9, 2)
      out[f'dropout_{vname}_{impl}_16M'] = res

  # nnx.Linear on (B, T, K, D) tokens vs the same matmul on (B*T*K, D) (fc1 of the MLP).
  def linear_nd(x, w):
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))

  def linear_2d(x, w):
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])

  for rep in range(2):   # interleaved: the machine is shared
    out[f'fc1_4d_dot_general_fwd_bwd_r{rep}'] = _bench_fn(_fwd_bwd(linear_nd), x4, w1, peak=peak)
    out[f'fc1_reshaped_2d_fwd_bwd_r{rep}'] = _bench_fn(_fwd_bwd(linear_2d), x4, w1, peak=peak)

  # On-device augmentation alone (train_inputs under jit).
  layout_ = get_layout(m.layout)
  aug = config.augment
  host = _host_batch(config, b)
  dev = {kk_: jnp.asarray(vv) for kk_, vv in host.items()}
  out['augment_train_inputs'] = _bench_fn(
      lambda bt, kk_: augment.train_inputs(bt, kk_, layout_, aug), dev, jax.random.key(0))
  return out


# ----------------------------------------------------------------------------- main


def variant_config(base: RunConfig, dtype: str) -> RunConfig:
  return base if dtype == 'config' else base.replace(**{'model.dtype': dtype})


def main(argv):
  del argv
  base = RunConfig.from_config_dict(_CONFIG.value)
  mesh = sharding.make_mesh()
  result: dict[str, Any] = {
      'benchmark': 'train_step', 'config': config_flags.get_config_filename(flags.FLAGS['config']),
      'overrides': {k: str(v) for k, v in config_flags.get_override_values(
          flags.FLAGS['config']).items()} if hasattr(config_flags, 'get_override_values') else {},
      'machine': common.machine_info(), 'device': common.device_info(),
      'load_average_start': common.load_average(),
      'model': base.to_dict()['model'],
      'batch_size': base.run.batch_size, 'max_frames_L': int(base.data.max_frames),
      'num_frames_T': int(base.augment.num_frames),
  }
  peak = {'fp32': common.matmul_peak(_PEAK_N.value, jnp.float32),
          'bf16': common.matmul_peak(_PEAK_N.value, jnp.bfloat16)}
  result['practical_peak'] = peak
  peak_for = lambda dt: max(peak['bf16']['gflops'], peak['fp32']['gflops']) \
      if dt == 'bfloat16' else peak['fp32']['gflops']
  result['variants'] = {}
  for dtype in [] if _SKIP_TRAIN.value else _DTYPES.value:
    config = variant_config(base, dtype)
    name = config.model.dtype
    entry = {'load_average_before': common.load_average()}
    entry['train'] = bench_train(config, mesh, peak_for(name), _STEPS.value, _WARMUP.value,
                                 _PROFILE.value)
    if not _SKIP_EVAL.value:
      entry['eval'] = bench_eval(config, mesh, peak_for(name),
                                 _EVAL_BATCH.value or config.run.eval_batch_size,
                                 _EVAL_REPEATS.value, _LATENCY_REPEATS.value)
    entry['load_average_after'] = common.load_average()
    device_peak = result['device']['bf16_peak_tflops']
    if device_peak:   # an accelerator: MFU against its data-sheet bf16 peak
      entry['train']['mfu_vs_device_bf16_peak'] = round(
          entry['train']['achieved_gflops'] / (device_peak * 1e3), 4)
    result['variants'][name] = entry
  if _COMPONENTS.value:
    result['components'] = {}
    for dtype in _DTYPES.value:
      config = variant_config(base, dtype)
      result['components'][config.model.dtype] = components(config, peak_for(config.model.dtype))
  if _VS_TORCH.value:
    args = twin_args(base)
    steps = _TORCH_STEPS.value or _STEPS.value
    twin = {'fp32': run_twin(_TORCH_TWIN.value, args, False, steps),
            'bf16': run_twin(_TORCH_TWIN.value, args, True, steps)}
    if _TWIN_COMPILE.value:
      twin['bf16_compile'] = run_twin(_TORCH_TWIN.value, args, True, steps, compiled=True)
    result['torch'] = twin
    ratios = {}
    for ours, theirs in (('float32', 'fp32'), ('bfloat16', 'bf16')):
      if ours in result['variants'] and 'samples_per_s' in twin[theirs]:
        ratios[f'jax_{ours}_over_torch_{theirs}'] = round(
            result['variants'][ours]['train']['samples_per_s'] / twin[theirs]['samples_per_s'], 3)
    if 'float32' in result['variants'] and 'samples_per_s' in twin['bf16']:
      ratios['jax_float32_over_torch_bf16'] = round(
          result['variants']['float32']['train']['samples_per_s']
          / twin['bf16']['samples_per_s'], 3)
    jax_best = max((v['train']['samples_per_s'], k) for k, v in result['variants'].items())
    torch_best = max((v['samples_per_s'], k) for k, v in twin.items() if 'samples_per_s' in v)
    ratios['fastest_jax_over_fastest_torch'] = round(jax_best[0] / torch_best[0], 3)
    ratios['fastest'] = {'jax': jax_best[1], 'torch': torch_best[1]}
    result['ratios_train_samples_per_s'] = ratios
  # The cores are shared: measure the peak again at the end and report both; the fractions above
  # used the start value (a loaded start makes them optimistic, see load_average_*).
  result['practical_peak_end'] = {'fp32': common.matmul_peak(_PEAK_N.value, jnp.float32),
                                  'bf16': common.matmul_peak(_PEAK_N.value, jnp.bfloat16)}
  result['load_average_end'] = common.load_average()
  result['peak_rss_mb'] = common.peak_rss_mb()
  common.write_json(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)
