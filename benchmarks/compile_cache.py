"""What JAX's persistent compilation cache saves: `--mode=eval` of one run, twice, from one cache.

    python benchmarks/compile_cache.py --out=benchmarks/results/compile_cache_cpu.json

Trains a short run of the README's model (`configs/synthetic.py`, 20 steps) with the cache off,
then runs `main.py --mode=eval` on it twice with a fresh cache folder (what a user's default
`compilation_cache_dir` is on a first and a second call). Each eval runs with JAX's monitoring
listeners on and reports the seconds spent compiling (backend compile events) and retrieving
from the cache, and its wall time; the JSON holds both evals and the ratio of the second's
compile seconds to the first's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import common  # pylint: disable=g-bad-import-order,wrong-import-position

_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')
_DATA_DIR = flags.DEFINE_string('data_dir', os.path.join(tempfile.gettempdir(),
                                                         'mdn_pipeline_bench_data'),
                                'Where the prepared synthetic set goes (reused).')

# main.py's eval, with listeners that sum the compile events (printed as the last line).
_EVAL = '''
import json, sys, time
import jax
from jax import monitoring
seconds = {}
def listen(event, duration, **kwargs):
  if 'compile' in event or 'cache' in event:
    seconds[event] = seconds.get(event, 0.0) + duration
monitoring.register_event_duration_secs_listener(listen)
sys.argv = ['main.py', '--mode=eval', '--workdir=' + sys.argv[1], '--checkpoint=latest',
            '--config.data.data_dir=' + sys.argv[2]]
import main
from absl import app
start = time.time()
try:
  app.run(main.main, flags_parser=main.parse_flags)
except SystemExit:
  pass
print(json.dumps({'events_s': seconds, 'wall_s': time.time() - start}))
'''


def main(argv):
  del argv
  work = tempfile.mkdtemp(prefix='mdn_compile_cache_')
  run = os.path.join(work, 'run')
  subprocess.run([sys.executable, os.path.join(_ROOT, 'main.py'), '--config=configs/synthetic.py',
                  f'--workdir={run}', f'--config.data.data_dir={_DATA_DIR.value}',
                  '--config.num_train_steps=20', '--config.eval_every_steps=0',
                  '--config.compilation_cache_dir='], cwd=_ROOT, check=True,
                 capture_output=True)
  env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': os.path.join(work, 'cache')}
  evals: list[dict[str, Any]] = []
  for _ in range(2):
    start = time.time()
    done = subprocess.run([sys.executable, '-c', _EVAL, run, _DATA_DIR.value], cwd=_ROOT,
                          env=env, capture_output=True, text=True, check=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record['process_wall_s'] = round(time.time() - start, 2)
    record['backend_compile_s'] = round(sum(v for k, v in record['events_s'].items()
                                            if 'backend_compile' in k), 3)
    evals.append(record)
  first, second = (e['backend_compile_s'] for e in evals)
  common.write_json({'benchmark': 'compile_cache', 'machine': common.machine_info(),
                     'git_commit': common.git_commit(), 'evals': evals,
                     'second_over_first_compile': round(second / first, 3) if first else None},
                    _OUT.value)


if __name__ == '__main__':
  app.run(main)
