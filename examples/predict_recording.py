"""Run a trained work directory from Python on a `.npy` recording, preprocessing included.

    python examples/predict_recording.py --workdir=runs/synthetic --recording=session.npy

Without --workdir a tiny run is trained first (about 20 s) into a temporary folder; without
--recording a 40 s synthetic recording (openpose22, pixels, a confidence channel) is written.
`Predictor.from_workdir` restores the model the run trained (its config.json and parameters) and
applies the same frame sampling and normalisation, so raw pose data in the run's joint layout
goes in; `predict.run_predict` cuts a long recording into windows and writes the timeline.
"""

import os
import sys

# Run from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import argparse
import tempfile

import numpy as np

from micro_dualnet_jax import Predictor, predict
from micro_dualnet_jax.data import synthetic


def tiny_run(folder: str) -> str:
  """Trains the smoke-sized synthetic model (the tests' configuration) into folder/run."""
  from configs import smoke  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax import train  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.config import RunConfig  # pylint: disable=g-import-not-at-top
  config = RunConfig.from_config_dict(smoke.get_config()).replace(
      **{'data.data_dir': os.path.join(folder, 'tfds'), 'num_train_steps': 40})
  train.train_and_evaluate(config, os.path.join(folder, 'run'))
  return os.path.join(folder, 'run')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--workdir', default='')
  parser.add_argument('--recording', default='')
  args = parser.parse_args()
  folder = tempfile.mkdtemp(prefix='mdn_example_')
  workdir = args.workdir or tiny_run(folder)
  recording = args.recording
  if not recording:
    clips = synthetic.generate_split('test', num_clips=12, seed=1, layout='openpose22')
    frames = np.concatenate([np.concatenate([c.keypoints, c.confidence[..., None]], -1)
                             for c in clips])
    recording = os.path.join(folder, 'session.npy')
    np.save(recording, frames)

  predictor = Predictor.from_workdir(workdir)
  frames = np.load(recording)                         # (T, V, C + 1): pixels + confidence
  clip = predictor.predict(frames[:60])               # one clip: the first two seconds
  print('first 60 frames:', [(c['class'], round(c['probability'], 3)) for c in clip['top_k'][:3]])
  print('routing (share of the ST path):',
        {entity: round(w['st'], 2) for entity, w in clip['routing_weights'].items()})
  [summary] = predict.run_predict(None, workdir, recording, os.path.join(folder, 'timeline'),
                                  verbose=False, render=False)
  shares = sorted(summary['percent_of_time'].items(), key=lambda kv: -kv[1])[:3]
  print(f'{summary["windows"]["total"]} windows; most of the time:',
        [(name, round(p, 1)) for name, p in shares])
  print('outputs:', sorted(os.listdir(os.path.join(folder, 'timeline'))))


if __name__ == '__main__':
  main()
