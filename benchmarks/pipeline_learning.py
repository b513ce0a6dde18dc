"""Does the training split on the devices learn like the host loader? The README's command, 3 seeds.

    python benchmarks/pipeline_learning.py --out=benchmarks/results/pipeline_learning_synthetic.json

Runs `main.py --config=configs/synthetic.py --config.num_seeds=3` (the README's first command,
seeds 0-2 in one run) once with `--config.data.pipeline=host` and once with `device`. The two
paths read each epoch's clips in different orders (NumPy's and JAX's generators), so they are
compared as two samples of seeds: mean +- std each, and the 95 % interval of the difference
(Welch, unpaired; `stats.py`). A finished run is read back from its work directory, so a stopped
comparison goes on where it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, 'benchmarks'))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import stats  # pylint: disable=g-bad-import-order,wrong-import-position
from micro_dualnet_jax.rundir import RunDir  # pylint: disable=wrong-import-position

_WORK = flags.DEFINE_string('workdir_root', os.path.join(tempfile.gettempdir(),
                                                         'mdn_pipeline_learning'),
                            'Where the two runs go (kept, so a rerun reads them back).')
_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds per path, in one run.')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')


def run(pipeline: str) -> dict:
  workdir = os.path.join(_WORK.value, pipeline)
  command = [sys.executable, os.path.join(_ROOT, 'main.py'), '--config=configs/synthetic.py',
             f'--workdir={workdir}', f'--config.data.data_dir={_WORK.value}/data',
             f'--config.num_seeds={_SEEDS.value}', f'--config.data.pipeline={pipeline}']
  os.makedirs(_WORK.value, exist_ok=True)
  with open(f'{workdir}.log', 'a') as log:
    code = subprocess.call(command, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT)
  summary = RunDir(workdir).summary()
  if code:
    raise RuntimeError(f'{pipeline} run failed (exit {code}); see {workdir}.log')
  if summary is None:   # main.py exits 0 when a signal or max_steps_per_run stops it early
    raise RuntimeError(f'{pipeline} run stopped before its last step; run this command again to '
                       f'resume it (see {workdir}.log)')
  top1 = {seed: s['final']['top1'] for seed, s in summary['seeds'].items()}
  values = list(top1.values())
  mean = sum(values) / len(values)
  std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
  return {'command': ' '.join(command[1:]), 'top1': top1, 'mean': round(mean, 2),
          'std': round(std, 2), 'wall_time_s': summary['wall_time_s'],
          'data_pipeline': RunDir(workdir).run_info().get('data_pipeline'),
          'device': summary.get('device')}


def main(argv):
  del argv
  runs = {pipeline: run(pipeline) for pipeline in ('host', 'device')}
  difference = stats.compare(runs['device']['top1'], runs['host']['top1'], 1.0, paired=False)
  common.write_json({'benchmark': 'pipeline_learning', 'config': 'configs/synthetic.py',
                     'machine': common.machine_info(), 'git_commit': common.git_commit(),
                     'runs': runs, 'device_minus_host': difference}, _OUT.value)


if __name__ == '__main__':
  app.run(main)
