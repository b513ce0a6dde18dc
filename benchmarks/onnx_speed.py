"""ONNX (onnxruntime) against the jax.export artifact and the JAX model, on this CPU.

    python benchmarks/onnx_speed.py [--models=nwucla,default] [--rounds=5]

(Not benchmarks/onnx.py: with benchmarks/ first on sys.path, that name would shadow the onnx
package jax2onnx imports.)

Needs the optional extra (requirements-onnx.txt). For each model (random weights: speed does not
depend on them), the evaluation forward pass on model inputs (keypoints (B, T, V, C + 1),
frame_mask (B, T), numpy in, numpy out) four ways:

  jax        the NNX model under jax.jit, called with numpy arrays;
  jaxexport  the `jax.export` artifact as `load_exported.py` runs it (`export.ExportedModel`);
  onnx       model.onnx in an onnxruntime CPU session, as `load_onnx.py` runs it (default
             session options);
  onnx_nospin  the same with the intra-op thread pool's spin-waiting off: on cores other jobs
             also use, spinning threads compete with them.

Batch-1 latency (median of --latency_calls calls) and large-batch throughput (clips/s over
--throughput_calls calls of --batch clips) are measured in --rounds rounds; inside a round the
four run one after the other, in an order rotated every round, so each ratio is taken within a
round, on the same load (other jobs share these cores; the load average is recorded). The ratios
reported are the medians over rounds of the per-round ratios to jax (> 1: faster than jax), with
their range. Prints one JSON object and writes it to benchmarks/results/onnx_cpu.json.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import tempfile
import time
from importlib import metadata

ROOT = pathlib.Path(__file__).resolve().parents[1]
from micro_dualnet_jax import malloc_tuning  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  malloc_tuning.reexec_with_tuned_malloc()  # measure what main.py runs with

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import nnx  # pylint: disable=g-import-not-at-top,wrong-import-position

from micro_dualnet_jax import export, export_onnx, inference, onnx_loader  # pylint: disable=wrong-import-position
from micro_dualnet_jax.config import RunConfig  # pylint: disable=wrong-import-position
from micro_dualnet_jax.models import MicroDualNet  # pylint: disable=wrong-import-position
from micro_dualnet_jax.skeleton import get_layout  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

common.use_checkout_configs()
from configs import default, nwucla, synthetic  # pylint: disable=wrong-import-position

CONFIGS = {'nwucla': ('configs/nwucla.py', nwucla), 'default': ('configs/default.py', default),
           'synthetic': ('configs/synthetic.py', synthetic)}
IMPLEMENTATIONS = ('jax', 'jaxexport', 'onnx', 'onnx_nospin')

FLAGS = flags.FLAGS
flags.DEFINE_list('models', ['nwucla', 'default'], f'Models, from {sorted(CONFIGS)}.')
flags.DEFINE_integer('rounds', 5, 'Alternating rounds.')
flags.DEFINE_integer('latency_calls', 20, 'Batch-1 calls timed per implementation and round.')
flags.DEFINE_integer('batch', 64, 'Clips per call for the throughput.')
flags.DEFINE_integer('throughput_calls', 3, 'Large-batch calls timed per implementation and '
                     'round.')
flags.DEFINE_string('output', str(ROOT / 'benchmarks' / 'results' / 'onnx_cpu.json'),
                    'Where the JSON goes.')
flags.DEFINE_string('note', '', 'Free text stored in the JSON (what else ran on the machine).')


def model_inputs(batch: int, num_frames: int, num_joints: int, coord_dims: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Random model inputs: normalised-looking coordinates with a confidence channel, clips of
  varying length (frame_mask)."""
  rng = np.random.default_rng(seed)
  keypoints = rng.normal(size=(batch, num_frames, num_joints, coord_dims + 1))
  keypoints[..., -1] = rng.uniform(0.1, 1.0, keypoints.shape[:-1])
  lengths = rng.integers(num_frames // 2, num_frames + 1, (batch, 1))
  frame_mask = np.arange(num_frames)[None] < lengths
  return keypoints.astype(np.float32), frame_mask.astype(np.float32)


def implementations(config, folder: str) -> tuple[dict, dict]:
  """{name: fn(keypoints, frame_mask) -> numpy logits} for the four ways, and facts about the
  model (parameters, conversion times)."""
  module = MicroDualNet(config.model, rngs=nnx.Rngs(params=0))
  module.eval()
  graphdef, params, model_state = nnx.split(module, nnx.Param, ...)
  layout = get_layout(config.model.layout)
  t, v, c = config.model.num_frames, layout.num_joints, layout.coord_dims

  @jax.jit
  def forward(params, keypoints, frame_mask):
    logits, aux = nnx.merge(graphdef, params, model_state)(keypoints, frame_mask,
                                                           deterministic=True)
    return {'logits': logits, 'routing_weights': aux['routing_weights']}

  leaves, treedef = jax.tree.flatten(params)

  def flat_forward(flat, keypoints, frame_mask):
    return forward(jax.tree.unflatten(treedef, flat), keypoints, frame_mask)

  start = time.perf_counter()
  b, = jax.export.symbolic_shape('b')
  exported = export._lower(  # pylint: disable=protected-access
      flat_forward, [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves],
      jax.ShapeDtypeStruct((b, t, v, c + 1), np.float32), jax.ShapeDtypeStruct((b, t), np.float32))
  artifact = export.ExportedModel('model', jax.export.deserialize(exported.serialize()),
                                  [jax.device_put(x) for x in leaves], [], {})
  jaxexport_s = time.perf_counter() - start
  start = time.perf_counter()
  model = inference.RestoredModel(graphdef, params, model_state, 0, config, 'latest',
                                  config.data.class_names)
  manifest = export_onnx.export_model(model, config, folder)
  onnx_s = time.perf_counter() - start
  session = onnx_loader.load_onnx(folder)
  import onnxruntime  # pylint: disable=g-import-not-at-top
  no_spin = onnxruntime.SessionOptions()
  no_spin.add_session_config_entry('session.intra_op.allow_spinning', '0')
  session_no_spin = onnx_loader.load_onnx(folder, session_options=no_spin)
  fns = {
      'jax': lambda x, m: np.asarray(forward(params, x, m)['logits']),
      'jaxexport': lambda x, m: artifact(x, m)['logits'],
      'onnx': lambda x, m: session(x, m)['logits'],
      'onnx_nospin': lambda x, m: session_no_spin(x, m)['logits'],
  }
  facts = {'parameters': int(sum(x.size for x in leaves)), 'num_frames': t, 'num_joints': v,
           'jax_export_s': round(jaxexport_s, 1), 'onnx_conversion_s': round(onnx_s, 1),
           'onnx_file_mb': round(os.path.getsize(os.path.join(folder, 'model.onnx')) / 2**20, 1),
           'onnx_max_abs_logit_difference_vs_jax': manifest['max_abs_logit_difference_vs_jax']}
  return fns, facts


def timed(fn, inputs, calls: int) -> list[float]:
  """Seconds of each of `calls` calls (numpy out, so each call has finished)."""
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn(*inputs)
    times.append(time.perf_counter() - start)
  return times


def ratio_summary(values: list[float]) -> dict[str, float]:
  return {'median': round(statistics.median(values), 3), 'min': round(min(values), 3),
          'max': round(max(values), 3)}


def measure(name: str) -> dict:
  path, module = CONFIGS[name]
  config = RunConfig.from_config_dict(module.get_config())
  folder = tempfile.mkdtemp(prefix=f'mdn_onnx_bench_{name}_')
  fns, facts = implementations(config, folder)
  single = model_inputs(1, facts['num_frames'], facts['num_joints'],
                        get_layout(config.model.layout).coord_dims, 0)
  large = model_inputs(FLAGS.batch, facts['num_frames'], facts['num_joints'],
                       get_layout(config.model.layout).coord_dims, 1)
  outputs = {impl: fn(*large) for impl, fn in fns.items()}   # also the compiling / warm-up call
  for impl, fn in fns.items():
    fn(*single)
  agreement = {impl: float(np.abs(out - outputs['jax']).max()) for impl, out in outputs.items()}
  latency = {impl: [] for impl in IMPLEMENTATIONS}
  throughput = {impl: [] for impl in IMPLEMENTATIONS}
  for r in range(FLAGS.rounds):
    shift = r % len(IMPLEMENTATIONS)
    order = IMPLEMENTATIONS[shift:] + IMPLEMENTATIONS[:shift]
    for impl in order:
      latency[impl].append(statistics.median(timed(fns[impl], single, FLAGS.latency_calls)))
    for impl in order:
      calls = timed(fns[impl], large, FLAGS.throughput_calls)
      throughput[impl].append(FLAGS.batch * len(calls) / sum(calls))
  result = {
      'model': f'{name} ({path})', **facts,
      'max_abs_logit_difference_vs_jax_on_the_batch': agreement,
      'batch1_latency_ms': {impl: round(1e3 * statistics.median(v), 2)
                            for impl, v in latency.items()},
      f'batch{FLAGS.batch}_clips_per_s': {impl: round(statistics.median(v), 1)
                                          for impl, v in throughput.items()},
      'latency_speedup_over_jax': {
          impl: ratio_summary([j / x for j, x in zip(latency['jax'], latency[impl])])
          for impl in IMPLEMENTATIONS[1:]},
      'throughput_over_jax': {
          impl: ratio_summary([x / j for j, x in zip(throughput['jax'], throughput[impl])])
          for impl in IMPLEMENTATIONS[1:]},
      'per_round': {'batch1_latency_ms': {impl: [round(1e3 * x, 2) for x in v]
                                          for impl, v in latency.items()},
                    'clips_per_s': {impl: [round(x, 1) for x in v]
                                    for impl, v in throughput.items()}},
  }
  return result


def main(argv):
  del argv
  import onnxruntime  # pylint: disable=g-import-not-at-top
  machine = common.machine_info()
  load_before = common.load_average()
  started = time.strftime('%Y-%m-%d %H:%M')
  results = [measure(name) for name in FLAGS.models]
  common.write_json({
      'benchmark': 'ONNX (onnxruntime) vs jax.export artifact vs JAX model, evaluation forward '
                   'pass on model inputs, numpy in and out',
      'cpu': machine['cpu'], 'cores': machine['cores'], 'python': machine['python'],
      'jax': jax.__version__, 'jax2onnx': metadata.version('jax2onnx'),
      'onnxruntime': onnxruntime.__version__,
      'onnxruntime_providers': ['CPUExecutionProvider'],
      'started': started, 'git_commit': common.git_commit(),
      'load_average_before': load_before, 'load_average_after': common.load_average(),
      'method': (f'{FLAGS.rounds} rounds; in each, batch-1 latency (median of '
                 f'{FLAGS.latency_calls} calls) then batch-{FLAGS.batch} throughput '
                 f'({FLAGS.throughput_calls} calls) of {", ".join(IMPLEMENTATIONS)} one after '
                 'the other, the order rotated every round; ratios per round, then their median '
                 'and range over rounds; random weights'),
      'note': FLAGS.note,
      'results': results,
  }, FLAGS.output)


if __name__ == '__main__':
  app.run(main)
