"""Several seeds in one run against one seed alone, end to end with main.py (wall time).

    python benchmarks/seeds.py --config=configs/nwucla.py --seeds=3 \\
        --set=data.train_split=view1 --set=data.eval_split=view2 \\
        --out=benchmarks/results/seeds_nwucla.json

Runs `main.py --config.num_seeds=1` and then `--config.num_seeds=N` (fresh work directories, the
dataset prepared beforehand so neither pays for it) one after the other on this machine, and
reports both wall times and their ratio, with the CPU and the load average around each.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = flags.DEFINE_string('config', 'configs/nwucla.py', 'main.py --config.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'num_seeds of the batched run.')
_SET = flags.DEFINE_multi_string('set', [], 'Extra override KEY=VALUE for both runs.')
_OUT = flags.DEFINE_string('out', None, 'Where the JSON goes.')


def _run(workdir: str, num_seeds: int) -> dict:
  command = [sys.executable, os.path.join(_ROOT, 'main.py'), f'--config={_CONFIG.value}',
             f'--workdir={workdir}', f'--config.num_seeds={num_seeds}',
             *[f'--config.{item}' for item in _SET.value]]
  load = os.getloadavg()[0]
  start = time.time()
  done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, check=False)
  wall = time.time() - start
  if done.returncode:
    raise RuntimeError(f'{" ".join(command)} failed:\n{done.stderr[-3000:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  rates = [float(line.split('|')[1].split()[0]) for line in done.stdout.splitlines()
           if line.startswith('step ') and 'samples/s' in line]
  return {'num_seeds': num_seeds, 'wall_s': round(wall, 1), 'load_average_before': load,
          'load_average_after': os.getloadavg()[0], 'steps': summary['step'],
          'median_samples_per_s': sorted(rates)[len(rates) // 2] if rates else None,
          'top1': summary.get('final', {}).get('top1') or summary.get('final_mean', {}).get(
              'top1'), 'command': ' '.join(command[1:])}


def main(argv):
  del argv
  import common  # pylint: disable=g-import-not-at-top
  folder = tempfile.mkdtemp(prefix='mdn_seeds_')
  prepare = [sys.executable, os.path.join(_ROOT, 'main.py'), '--mode=prepare',
             f'--config={_CONFIG.value}', *[f'--config.{item}' for item in _SET.value]]
  subprocess.run(prepare, cwd=_ROOT, capture_output=True, check=True)
  one = _run(os.path.join(folder, 'one'), 1)
  many = _run(os.path.join(folder, 'many'), _SEEDS.value)
  result = {'benchmark': 'seeds in one run vs one seed, end to end (main.py)',
            'cpu': common.machine_info()['cpu'], 'cores': os.cpu_count(),
            'python': platform.python_version(), 'one_seed': one, 'seeds': many,
            'wall_ratio': round(many['wall_s'] / one['wall_s'], 3),
            'per_seed_wall_ratio': round(many['wall_s'] / one['wall_s'] / _SEEDS.value, 3)}
  common.write_json(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)
