"""Run a trained work directory from Python on a `.npy` recording, preprocessing included.

    python examples/predict_recording.py --workdir=runs/synthetic --recording=session.npy

Without --workdir a tiny run is trained first (40 steps of a 20 k-parameter model on the
synthetic set) into a temporary folder; without --recording a 40 s synthetic recording
(openpose22, pixels, a confidence channel) is written.
`Predictor.from_workdir` restores the model the run trained (its config.json and parameters) and
applies the same frame sampling and normalisation, so raw pose data in the run's joint layout
goes in; `predict.run_predict` cuts a long recording into windows and writes the timeline.
"""

import argparse
import os
import tempfile

import numpy as np

from micro_dualnet_jax import Predictor, predict
from micro_dualnet_jax.data import synthetic


def tiny_run(folder: str) -> str:
  """Trains a tiny synthetic model (the size of the tests' configs/smoke.py) into folder/run."""
  from micro_dualnet_jax import RunConfig, train  # pylint: disable=g-import-not-at-top
  # Values left out keep their defaults (micro_dualnet_jax/config/); unknown keys are refused.
  config = RunConfig.from_dict({
      'num_train_steps': 40, 'batch_size': 16, 'eval_batch_size': 16, 'eval_every_steps': 0,
      'checkpoint_every_steps': 20, 'optim': {'warmup_steps': 2},
      'data': {'name': 'synthetic', 'data_dir': os.path.join(folder, 'tfds'), 'max_frames': 48,
               'options': {'num_train': 64, 'num_test': 24}},
      'model': {'num_classes': 15, 'num_frames': 16, 'width': 16, 'num_heads': 2,
                'spatial_layers': 1, 'temporal_layers': 1, 'mlp_ratio': 2},
      'augment': {'flip_prob': 0.0}})
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
