"""Prediction throughput: windows per second of `predict.Predictor` on this machine.

    python benchmarks/predict.py [--windows=256] [--batch_size=32]

For the paper-default model (configs/default.py) and the synthetic config's model, with random
weights (speed does not depend on them), on a synthetic recording in the model's layout, with the
default window and stride of `--mode=predict`. The first batch (jit compilation) is timed
separately. Prints one JSON object and writes it to benchmarks/results/predict.json.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
from micro_dualnet_jax import malloc_tuning  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  malloc_tuning.reexec_with_tuned_malloc()  # measure what main.py runs with

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from micro_dualnet_jax import inference, predict, sharding, steps, timeline  # pylint: disable=wrong-import-position
from micro_dualnet_jax.config import RunConfig  # pylint: disable=wrong-import-position
from micro_dualnet_jax.data import synthetic  # pylint: disable=wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

common.use_checkout_configs()
from configs import default, synthetic as synthetic_config  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('windows', 256, 'Windows timed per model (after the compiling batch).')
flags.DEFINE_integer('batch_size', 32, 'Windows per jit call.')
flags.DEFINE_string('output', str(ROOT / 'benchmarks' / 'results' / 'predict.json'),
                    'Where the JSON goes.')


def recording(layout: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
  """Synthetic clips back to back, at least `frames` long: keypoints (T, V, 2), confidence."""
  clips = synthetic.generate_split('test', num_clips=max(1, frames // 60), seed=0, layout=layout)
  keypoints = np.concatenate([c.keypoints for c in clips])[:frames]
  confidence = np.concatenate([c.confidence for c in clips])[:frames]
  return keypoints, confidence


def measure(name: str, config: RunConfig, num_windows: int, batch_size: int) -> dict:
  tx, _ = steps.make_optimizer(config.optim, 1)
  mesh = sharding.make_mesh()
  graphdef, state = steps.create_train_state(config.model, tx, mesh)
  model = inference.RestoredModel(graphdef, state['params'], state['model_state'], 0, config,
                                  'latest', list(config.data.spec.class_names))
  predictor = inference.Predictor(model, batch_size=batch_size, mesh=mesh)
  options = predict.PredictOptions().resolved(config.model.num_frames, config.data.max_frames)
  window, stride = options.window, options.stride
  frames = window + stride * (num_windows + predictor.batch_size)
  keypoints, confidence = recording(config.model.layout, frames)
  starts = timeline.window_starts(len(keypoints), window, stride)

  t0 = time.perf_counter()
  predictor.run(keypoints, confidence, starts[:predictor.batch_size], window)
  compile_s = time.perf_counter() - t0
  timed = starts[predictor.batch_size:predictor.batch_size + num_windows]
  t0 = time.perf_counter()
  out = predictor.run(keypoints, confidence, timed, window)
  elapsed = time.perf_counter() - t0
  assert np.isfinite(out['logits']).all()
  rate = len(timed) / elapsed
  fps = options.fps
  # The same model's eval step on the same windows, already batched on the device: what
  # prediction costs beyond the model is the difference.
  batch, _ = next(inference.window_batches(keypoints, confidence, timed, window,
                                           predictor.batch_size))
  eval_step = steps.make_eval_step(graphdef, config, mesh)
  device_batch = sharding.to_global(batch, sharding.batch_sharding(mesh), predictor.batch_size)
  jax.block_until_ready(eval_step(state, device_batch))
  calls = max(1, len(timed) // predictor.batch_size)
  t0 = time.perf_counter()
  for _ in range(calls):
    result = eval_step(state, device_batch)
  jax.block_until_ready(result)
  eval_rate = calls * predictor.batch_size / (time.perf_counter() - t0)
  return {
      'model': name, 'parameters': int(sum(x.size for x in jax.tree.leaves(state['params']))),
      'num_frames': config.model.num_frames, 'window': window, 'stride': stride,
      'batch_size': predictor.batch_size, 'windows_timed': len(timed),
      'first_batch_with_compile_s': round(compile_s, 2),
      'windows_per_s': round(rate, 1),
      'eval_step_samples_per_s': round(eval_rate, 1),
      'windows_over_eval_step': round(rate / eval_rate, 3),
      # Recording time processed per second of compute at the default stride and fps.
      'recording_seconds_per_s': round(rate * stride / fps, 1),
  }


def main(argv):
  del argv
  results = {
      'benchmark': 'predict windows per second (Predictor.run, steady state)',
      'device': f'{jax.devices()[0].platform}: {jax.devices()[0].device_kind} x '
                f'{jax.device_count()}', 'cpu': common.machine_info()['cpu'],
      'python': platform.python_version(),
      'cpu_count': os.cpu_count(), 'machine': platform.machine(), 'jax': jax.__version__,
      'results': [measure('default (configs/default.py)', RunConfig.from_config_dict(default.get_config()), FLAGS.windows,
                          FLAGS.batch_size),
                  measure('synthetic (configs/synthetic.py)', RunConfig.from_config_dict(synthetic_config.get_config()),
                          FLAGS.windows, FLAGS.batch_size)],
  }
  text = json.dumps(results, indent=2)
  print(text)
  os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
  with open(FLAGS.output, 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
