"""Run an ONNX export on a raw recording with onnxruntime and numpy only: JAX is never imported.

    python main.py --mode=export --workdir=runs/synthetic --export_format=onnx
    python examples/onnx_recording.py --export=runs/synthetic/export_onnx --recording=session.npy

The export folder's `load_onnx.py` (a copy of micro_dualnet_jax/onnx_loader.py) applies the
preprocessing the model was trained with (frame sampling, normalisation, the input stream) in
numpy and runs `model.onnx` with onnxruntime, so this script needs neither JAX nor this package:
it imports the loader from the export folder. The recording is a `.npy` array (T, V, C) or
(T, V, C + 1) with the confidence last, in the model's joint layout and the data's units.

Without --export, a tiny synthetic run is trained and exported first, in child processes (they
use JAX; this process does not); without --recording, a 40 s synthetic recording is written.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_export(folder: str) -> str:
  """Trains the smoke-sized synthetic model and exports it as ONNX, in child processes."""
  main = [sys.executable, os.path.join(ROOT, 'main.py')]
  workdir = os.path.join(folder, 'run')
  for args in ([f'--config={ROOT}/configs/smoke.py', f'--workdir={workdir}',
                f'--config.data.data_dir={folder}/tfds', '--config.num_train_steps=40'],
               ['--mode=export', f'--workdir={workdir}', '--export_format=onnx']):
    subprocess.run(main + args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
  return os.path.join(workdir, 'export_onnx')


def synthetic_recording(folder: str) -> str:
  """40 s of synthetic micro-actions (openpose22, pixels, a confidence channel) as a .npy."""
  from micro_dualnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  clips = synthetic.generate_split('test', num_clips=12, seed=1, layout='openpose22')
  frames = np.concatenate([np.concatenate([c.keypoints, c.confidence[..., None]], -1)
                           for c in clips])
  path = os.path.join(folder, 'session.npy')
  np.save(path, frames)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--export', default='', help='an ONNX export folder')
  parser.add_argument('--recording', default='', help='a .npy recording (T, V, C[+1])')
  args = parser.parse_args()
  folder = tempfile.mkdtemp(prefix='mdn_onnx_example_')
  export = args.export or tiny_export(folder)
  recording = args.recording or synthetic_recording(folder)

  sys.path.insert(0, export)
  from load_onnx import load_onnx  # pylint: disable=g-import-not-at-top
  model = load_onnx(export)
  frames = np.load(recording)
  clip = model.predict(frames[:60])                   # one clip: the first two seconds
  print('first 60 frames:', [(c['class'], round(c['probability'], 3)) for c in clip['top_k'][:3]])
  print('routing (share of the ST path):',
        {entity: round(w['st'], 2) for entity, w in clip['routing_weights'].items()})

  window, stride = model.preprocessing['default_window'], model.preprocessing['default_stride']
  starts = range(0, max(len(frames) - window, 0) + 1, stride)
  top = [model.predict(frames[s:s + window], top_k=1) for s in starts]
  names, counts = np.unique([r['top_k'][0]['class'] for r in top if r['status'] == 'ok'],
                            return_counts=True)
  print(f'{len(top)} windows of {window} frames; most frequent:',
        sorted(zip(names, counts.tolist()), key=lambda item: -item[1])[:3])
  print('jax imported:', 'jax' in sys.modules)


if __name__ == '__main__':
  main()
