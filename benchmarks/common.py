"""Shared helpers of the benchmark scripts: machine facts, peak FLOP/s, synthetic batches, timing,
and a per-HLO-op profile of a jitted function from a `jax.profiler` trace.

Benchmarks are not tests: nothing here asserts; every script prints one JSON object.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def use_checkout_configs() -> None:
  """Makes the checkout's run config files importable as `configs` (configs/*.py import one
  another as `configs.<name>`). They are files of the checkout, not of the installed package
  (`pip install -r requirements.txt` installs micro_dualnet_jax alone, editable), so the
  checkout's root goes on sys.path, last: an installed micro_dualnet_jax is found first."""
  if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


# ----------------------------------------------------------------------------- machine facts


def _cpuinfo() -> dict[str, str]:
  """The first processor block of /proc/cpuinfo as a dict ({} where there is none)."""
  info: dict[str, str] = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if not line.strip():
          if info:
            break
          continue
        key, _, value = line.partition(':')
        info[key.strip()] = value.strip()
  except OSError:
    pass
  return info


def _clock_ghz(info: dict[str, str]) -> tuple[float | None, str]:
  """The core clock in GHz and where it came from (cpufreq max, else /proc/cpuinfo 'cpu MHz')."""
  try:
    with open('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq') as f:
      return int(f.read()) / 1e6, 'cpufreq cpuinfo_max_freq'
  except (OSError, ValueError):
    pass
  if 'cpu MHz' in info:
    return float(info['cpu MHz']) / 1e3, '/proc/cpuinfo cpu MHz (base clock seen by the VM)'
  return None, 'unknown'


def _fp32_flops_per_cycle(flags: set[str], vendor: str, family: int) -> tuple[int, str]:
  """Peak fp32 FLOP per core per cycle from the vector ISA, with the assumption spelled out."""
  if 'avx512f' in flags and 'fma' in flags:
    if vendor == 'AuthenticAMD' and family < 26:   # Zen 4 runs AVX-512 on 256-bit pipes
      return 32, 'AVX-512 on Zen 4: 2 x 256-bit FMA pipes x 8 fp32 lanes x 2 FLOP/FMA'
    return 64, ('AVX-512 + FMA: 2 x 512-bit FMA pipes x 16 fp32 lanes x 2 FLOP/FMA (Zen 5 / '
                'Xeon with 2 FMA units; a 1-FMA-unit Xeon has half)')
  if 'avx2' in flags and 'fma' in flags:
    return 32, 'AVX2 + FMA: 2 x 256-bit FMA pipes x 8 fp32 lanes x 2 FLOP/FMA'
  if 'avx' in flags:
    return 16, 'AVX without FMA: 1 add + 1 mul 256-bit pipe'
  return 8, 'SSE: 128-bit add + mul'


def git_commit() -> str:
  """HEAD of the checkout these benchmarks run from ('unknown' outside a git checkout)."""
  try:
    return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def setting_seeds(results: str, split: str, settings: str | Sequence[str], stream: str = 'joint'
                  ) -> tuple[dict[str, float], list[str]]:
  """({seed: Top-1}, git commits) of every finished seed range of one setting of
  `benchmarks/nwucla.py` (`<results>/<split>/<setting>__<stream>__seeds<a>-<b>.json`, runs with
  extra --set overrides excluded), merged; several settings are merged the same way (a recipe
  whose later seeds ran under another name). A seed found in two files is refused."""
  names = (settings,) if isinstance(settings, str) else tuple(settings)
  seeds: dict[str, float] = {}
  where: dict[str, str] = {}
  commits: set[str] = set()
  for setting in names:
    pattern = re.compile(rf'{re.escape(setting)}__{re.escape(stream)}__seeds\d+-\d+\.json')
    for path in sorted(glob.glob(os.path.join(results, split, f'{setting}__{stream}__*.json'))):
      if not pattern.fullmatch(os.path.basename(path)):
        continue
      with open(path) as f:
        record = json.load(f)
      for seed, entry in record['seeds'].items():
        if seed in seeds:
          raise ValueError(f'{path}: seed {seed} of {"+".join(names)}/{stream} is also in '
                           f'{where[seed]}')
        seeds[seed], where[seed] = entry['top1'], path
      commits.add(record['git_commit'])
  return dict(sorted(seeds.items(), key=lambda kv: int(kv[0]))), sorted(commits)


def write_json(result: Any, path: str | None, *, echo: bool = True) -> None:
  """The one JSON writer of the benchmarks: prints `result` (indented) when `echo`, and writes it
  to `path` when given (its folder created), whole, then renamed into place."""
  text = json.dumps(result, indent=1, default=_json_default)
  if echo:
    print(text, flush=True)
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      f.write(text + '\n')
    os.replace(path + '.tmp', path)


def machine_info() -> dict[str, Any]:
  """CPU model, cores, clock, vector ISA and the nominal peak FLOP/s (fp32 and bf16)."""
  info = _cpuinfo()
  flags = set(info.get('flags', '').split())
  vendor = info.get('vendor_id', '')
  family = int(info.get('cpu family', '0') or 0)
  cores = os.cpu_count() or 1
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    pass
  ghz, clock_source = _clock_ghz(info)
  per_cycle, assumption = _fp32_flops_per_cycle(flags, vendor, family)
  bf16_factor, bf16_note = 1, 'no bf16 dot instructions: bf16 is converted to fp32'
  if 'amx_bf16' in flags:
    bf16_factor, bf16_note = 16, 'AMX-BF16 tiles (~16x the fp32 FMA rate, 1024 FLOP/cycle)'
  elif 'avx512_bf16' in flags:
    bf16_factor, bf16_note = 2, 'AVX512_BF16 VDPBF16PS: 2x the fp32 FMA rate'
  nominal = cores * ghz * 1e9 * per_cycle if ghz else None
  return {
      'cpu': info.get('model name', platform.processor()), 'vendor': vendor, 'family': family,
      'cores': cores, 'clock_ghz': ghz, 'clock_source': clock_source,
      'isa': sorted(f for f in flags if re.match(r'(avx|fma|amx|f16c)', f)),
      'fp32_flops_per_cycle_per_core': per_cycle, 'peak_assumption': assumption,
      'nominal_peak_fp32_gflops': round(nominal / 1e9, 1) if nominal else None,
      'nominal_peak_bf16_gflops': round(nominal * bf16_factor / 1e9, 1) if nominal else None,
      'bf16_assumption': bf16_note,
      'jax': jax.__version__, 'backend': jax.default_backend(), 'devices': jax.device_count(),
      'python': platform.python_version(),
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
  }


# The paper's claims as config overrides (paths, fusion, MAC form); the NW-UCLA and synthetic
# studies both run these.
CLAIM_VARIANTS: dict[str, dict[str, str]] = {
    'st': {'model.paths': 'st', 'loss.mac': 'none'},
    'ts': {'model.paths': 'ts', 'loss.mac': 'none'},
    'dual_mean': {'model.fusion': 'mean', 'loss.mac': 'none'},
    'dual_static': {'model.fusion': 'static', 'loss.mac': 'none'},
    'dual_routing': {'model.fusion': 'routing', 'loss.mac': 'none'},
    'dual_routing_mac': {'model.fusion': 'routing', 'loss.mac': 'infonce'},
    'dual_routing_kl': {'model.fusion': 'routing', 'loss.mac': 'kl'},
}

# Dense bf16 peaks (FLOP/s, no sparsity) from the vendors' data sheets, by jax device_kind prefix.
ACCELERATOR_BF16_PEAK = {
    'NVIDIA H200': 989e12, 'NVIDIA H100': 989e12, 'NVIDIA A100': 312e12, 'NVIDIA L4': 121e12,
    'NVIDIA A10': 125e12, 'Tesla V100': 125e12, 'TPU v4': 275e12, 'TPU v5 lite': 197e12,
    'TPU v5e': 197e12, 'TPU v5p': 459e12, 'TPU v6 lite': 918e12,
}


def device_info() -> dict[str, Any]:
  """The first device's kind and, for a known accelerator, its dense bf16 peak (for MFU)."""
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', str(device))
  peak = next((v for k, v in ACCELERATOR_BF16_PEAK.items() if kind.startswith(k)), None)
  return {'platform': device.platform, 'device_kind': kind, 'device_count': jax.device_count(),
          'bf16_peak_tflops': peak / 1e12 if peak else None,
          'bf16_peak_source': 'vendor data sheet, dense' if peak else 'unknown device'}


def load_average() -> list[float]:
  """1, 5 and 15 minute load averages (other engineers share these cores)."""
  return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb() -> float:
  """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------- timing


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
  """Calls fn() `warmup` + `repeats` times, blocking on each result; seconds per call."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return {'best_s': min(times), 'median_s': statistics.median(times),
          'mean_s': statistics.fmean(times), 'repeats': repeats}


def matmul_peak(n: int = 2048, dtype: Any = jnp.float32, repeats: int = 5) -> dict[str, Any]:
  """Practical peak: FLOP/s of an n x n @ n x n jnp.dot under jit, best of `repeats`."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  dot = jax.jit(jnp.dot)
  timing = time_calls(lambda: dot(a, b), repeats, warmup=2)
  flops = 2.0 * n ** 3
  return {'n': n, 'dtype': jnp.dtype(dtype).name, 'best_s': round(timing['best_s'], 5),
          'gflops': round(flops / timing['best_s'] / 1e9, 1),
          'median_gflops': round(flops / timing['median_s'] / 1e9, 1)}


def cost(compiled: Any) -> dict[str, float]:
  """XLA's cost analysis of a compiled executable (flops, transcendentals, bytes accessed)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  return {k: float(analysis.get(k, 0.0)) for k in
          ('flops', 'transcendentals', 'bytes accessed')}


# ----------------------------------------------------------------------------- data


def synthetic_batch(batch_size: int, max_frames: int, num_joints: int, coord_dims: int,
                    num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A random batch with the loader's shapes and dtypes: keypoints (B, L, V, C), confidence
  (B, L, V), num_frames (B,), label (B,), weight (B,), index (B,); clip lengths vary in
  [L/3, L] and padded frames are zero, as the loader leaves them."""
  rng = np.random.default_rng(seed)
  b, length = batch_size, max_frames
  num_frames = rng.integers(max(1, length // 3), length + 1, size=(b,)).astype(np.int32)
  valid = (np.arange(length)[None, :] < num_frames[:, None]).astype(np.float32)
  keypoints = rng.normal(0.0, 100.0, size=(b, length, num_joints, coord_dims)) + 500.0
  confidence = rng.uniform(0.05, 1.0, size=(b, length, num_joints))
  confidence *= rng.uniform(size=confidence.shape) > 0.05          # a few missing joints
  confidence *= valid[:, :, None]
  keypoints *= (confidence > 0)[..., None]
  return {'keypoints': keypoints.astype(np.float32), 'confidence': confidence.astype(np.float32),
          'num_frames': num_frames, 'label': rng.integers(0, num_classes, (b,)).astype(np.int32),
          'weight': np.ones((b,), np.float32), 'index': np.arange(b, dtype=np.int32)}


# ----------------------------------------------------------------------------- profiling

_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\(')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_SOURCE = re.compile(r'source_file="([^"]*)"\s+source_line=(\d+)')
_FRAME_ID = re.compile(r'stack_frame_id=(\d+)')
_KIND = re.compile(r'kind=(\w+)')
_TABLE_ROW = re.compile(r'^(\d+)\s+(.*)$')
_FIELD = re.compile(r'(\w+)=(\d+)')
# Frames in these files name the model code a thunk came from.
PROJECT_MARKERS = ('micro_dualnet_jax', 'benchmarks')


def _stack_tables(hlo_text: str) -> dict[int, list[str]]:
  """stack_frame_id -> ['file:line (function)', ...] innermost first, from the FileNames /
  FunctionNames / FileLocations / StackFrames tables that XLA prints with a module."""
  sections: dict[str, dict[int, str]] = {}
  current = None
  for line in hlo_text.splitlines():
    if line in ('FileNames', 'FunctionNames', 'FileLocations', 'StackFrames'):
      current = line
      sections[current] = {}
      continue
    if current is None:
      continue
    match = _TABLE_ROW.match(line)
    if not match:
      if line.strip():
        current = None
      continue
    sections[current][int(match.group(1))] = match.group(2)
  files = {k: v.strip('"') for k, v in sections.get('FileNames', {}).items()}
  functions = {k: v.strip('"') for k, v in sections.get('FunctionNames', {}).items()}
  locations = {}
  for k, v in sections.get('FileLocations', {}).items():
    f = dict((a, int(b)) for a, b in _FIELD.findall(v))
    path = files.get(f.get('file_name_id', 0), '?')
    for marker in ('site-packages/', _repo_root() + '/'):
      path = path.split(marker, 1)[-1]
    locations[k] = f'{path}:{f.get("line", 0)} ({functions.get(f.get("function_name_id", 0), "?")})'
  frames = {k: dict((a, int(b)) for a, b in _FIELD.findall(v))
            for k, v in sections.get('StackFrames', {}).items()}
  chains = {}
  for frame_id in frames:
    chain, seen, current_id = [], set(), frame_id
    while current_id in frames and current_id not in seen:
      seen.add(current_id)
      chain.append(locations.get(frames[current_id].get('file_location_id', 0), '?'))
      # XLA prints parent_frame_id one above the parent's id (1 = no parent).
      current_id = frames[current_id].get('parent_frame_id', 0) - 1
    chains[frame_id] = chain
  return chains


def _repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project_source(chain: list[str]) -> str:
  """The innermost project frame of a chain (else the innermost frame)."""
  for frame in chain:
    if any(marker in frame for marker in PROJECT_MARKERS):
      return frame
  return chain[0] if chain else ''


def hlo_instructions(hlo_text: str) -> dict[str, dict[str, str]]:
  """name -> {opcode, shape, kind, op_name, source} for every instruction of an HLO module text.

  Fusions named after their root keep the root's metadata, which is what XLA prints."""
  table = {}
  chains = _stack_tables(hlo_text)
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, shape, opcode = match.groups()
    op_name = _OP_NAME.search(line)
    source = _SOURCE.search(line)
    frame = _FRAME_ID.search(line)
    chain = chains.get(int(frame.group(1)), []) if frame else []
    kind = _KIND.search(line)
    table[name] = {
        'opcode': opcode, 'shape': shape, 'kind': kind.group(1) if kind else '',
        'op_name': op_name.group(1) if op_name else '',
        'source': (f'{os.path.relpath(source.group(1))}:{source.group(2)}' if source else
                   _project_source(chain)),
        'innermost': chain[0] if chain else '',
    }
  return table


def _primitive(op_name: str) -> str:
  """The JAX primitive at the end of an op_name path ('.../transpose(jvp(...))/dot_general')."""
  return op_name.rsplit('/', 1)[-1] if op_name else ''


def op_category(name: str, entry: dict[str, str]) -> str:
  """A coarse class of an executed HLO thunk: matmul, attention einsum, layout copy, rng, ..."""
  prim = _primitive(entry.get('op_name', ''))
  lname = name.lower()
  if 'ynn' in lname or 'dot' in lname or entry.get('opcode') in ('dot', 'convolution') or \
      prim == 'dot_general':
    return 'dot (matmul)'
  if prim in ('threefry2x32', 'random_bits', 'random_wrap', 'random_unwrap') or \
      'threefry' in lname or 'rng' in lname:
    return 'rng (dropout masks)'
  if entry.get('opcode') in ('copy', 'transpose') or prim in ('transpose', 'copy') or \
      lname.startswith(('copy', 'transpose')):
    return 'copy/transpose'
  if prim in ('reduce_sum', 'reduce_max', 'reduce_min', 'argmax', 'reduce') or \
      entry.get('opcode') == 'reduce' or 'reduce' in lname:
    return 'reduce'
  if prim in ('gather', 'scatter-add', 'scatter_add', 'dynamic_slice', 'sort') or \
      entry.get('opcode') in ('gather', 'scatter', 'sort'):
    return 'gather/scatter/sort'
  if entry.get('opcode') in ('fusion',) or 'fusion' in lname:
    return 'elementwise fusion'
  return entry.get('opcode') or 'other'


def profile_ops(fn: Callable[..., Any], args: Sequence[Any], compiled_text: str,
                module_name: str, calls: int = 2, top: int = 25,
                keep_trace: str | None = None) -> dict[str, Any]:
  """Runs fn(*args) `calls` times under `jax.profiler.trace` and sums the time of every HLO
  thunk (the trace's per-op events on the XLA CPU client threads), per op and per category.

  Thunks of one step can overlap (XLA CPU runs independent thunks concurrently), so shares are
  of the summed op time; `step_wall_s` is the measured wall time per call for comparison.
  `fn` must return something to block on and must not donate `args` (or re-feed them itself).
  """
  instructions = hlo_instructions(compiled_text)
  logdir = keep_trace or tempfile.mkdtemp(prefix='mdn_trace_')
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  with jax.profiler.trace(logdir):
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
  wall = (time.perf_counter() - start) / calls
  paths = sorted(glob.glob(os.path.join(logdir, 'plugins', 'profile', '*', '*.trace.json.gz')))
  if not paths:
    return {'error': f'no trace written under {logdir}'}
  with gzip.open(paths[-1]) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  per_op: dict[str, float] = collections.defaultdict(float)
  count: dict[str, int] = collections.defaultdict(int)
  for event in events:
    args_ = event.get('args') or {}
    if event.get('ph') != 'X' or 'hlo_op' not in args_:
      continue
    if module_name not in args_.get('hlo_module', ''):
      continue
    per_op[args_['hlo_op']] += event.get('dur', 0.0) / 1e6 / calls
    count[args_['hlo_op']] += 1
  total = sum(per_op.values())
  by_category: dict[str, float] = collections.defaultdict(float)
  by_source: dict[str, float] = collections.defaultdict(float)
  by_pass: dict[str, float] = collections.defaultdict(float)
  rows = []
  for name, seconds in per_op.items():
    entry = instructions.get(name, {})
    category = op_category(name, entry)
    by_category[category] += seconds
    by_source[entry.get('source') or '?'] += seconds
    op_name = entry.get('op_name', '')
    by_pass['backward' if 'transpose(' in op_name else
            'optimizer/other' if not op_name or 'jvp(' not in op_name else 'forward'] += seconds
    rows.append({'op': name, 'category': category, 's': round(seconds, 4),
                 'share': round(seconds / max(total, 1e-12), 4), 'shape': entry.get('shape', ''),
                 'jax_op': op_name[-120:], 'source': entry.get('source', ''),
                 'innermost': entry.get('innermost', '')})
  rows.sort(key=lambda r: -r['s'])
  share = lambda d: {k: {'s': round(v, 4), 'share': round(v / max(total, 1e-12), 4)}
                     for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
  return {
      'step_wall_s': round(wall, 4), 'summed_op_s': round(total, 4),
      'ops_executed': int(sum(count.values()) / calls), 'by_category': share(by_category),
      'by_pass': share(by_pass), 'by_source_line': dict(list(share(by_source).items())[:20]),
      'top_ops': rows[:top], 'trace_dir': logdir if keep_trace else None,
  }


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
