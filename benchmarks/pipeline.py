"""The training split on the devices against the host loader, end to end through main.py.

    python benchmarks/pipeline.py --out=benchmarks/results/pipeline_cpu.json

For each case (the NW-UCLA config with one seed and with three in one run, on view 1; the default
model on the synthetic set), each data path (`--config.data.pipeline=device` / `host`, each with
its default steps per call) trains `main.py` for a fixed number of steps, the two paths
alternating, `--repeats` times. The figure of a run is the median of the samples/s that its log
lines report after the first two (the first holds the compilation, the second the calls of one
step that time the automatic steps per call); the JSON holds every run's log figures, the wall
time, the medians per path, the ratio device / host of the medians, and the 95 % interval of that
ratio from all log figures of both paths (Welch, `stats.py`, divided by the host mean), with the
machine named. Time it on a quiet machine: other work on the cores shows up in both paths, but
not evenly; the log figures of one quiet run still spread by about +-10 %, so read the interval,
not the point.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-bad-import-order,wrong-import-position
import stats  # pylint: disable=g-bad-import-order,wrong-import-position
from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

NWUCLA = os.path.join(os.path.dirname(_ROOT), 'shared', 'datasets', 'nw_ucla')
CASES: dict[str, list[str]] = {
    'nwucla_1_seed': ['--config=configs/nwucla.py', '--config.data.train_split=view1',
                      '--config.data.eval_split=view2', f'--config.data.manual_dir={NWUCLA}'],
    'nwucla_3_seeds': ['--config=configs/nwucla.py', '--config.data.train_split=view1',
                       '--config.data.eval_split=view2', f'--config.data.manual_dir={NWUCLA}',
                       '--config.num_seeds=3'],
    # The paper-size model on the built-in synthetic set (its 15 classes).
    'default_model': ['--config=configs/default.py', '--config.batch_size=32',
                      '--config.model.num_classes=15'],
}
_CASES = flags.DEFINE_list('cases', list(CASES), f'From {list(CASES)}.')
_STEPS = flags.DEFINE_integer('steps', 120, 'Training steps per run (default model: a quarter).')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Runs per path, alternating.')
_DATA_DIR = flags.DEFINE_string('data_dir', os.path.join(tempfile.gettempdir(),
                                                         'mdn_pipeline_bench_data'),
                                'Where the prepared datasets go (reused).')
_OUT = flags.DEFINE_string('out', None, 'Also write the JSON here.')
_RATE = re.compile(r'\| ([0-9.]+) samples/s \|')
_WARMUP_LOGS = 2


def run(case: str, pipeline: str, steps: int) -> dict[str, Any]:
  """One training run; its log's samples/s after the first log line."""
  workdir = tempfile.mkdtemp(prefix=f'mdn_{case}_{pipeline}_')
  log_every = max(steps // 12, 1)
  command = [sys.executable, os.path.join(_ROOT, 'main.py'), *CASES[case],
             f'--workdir={workdir}/run', f'--config.data.data_dir={_DATA_DIR.value}',
             f'--config.data.pipeline={pipeline}', f'--config.num_train_steps={steps}',
             '--config.num_epochs=0', '--config.eval_every_steps=0',
             f'--config.checkpoint_every_steps={steps}', f'--config.log_every_steps={log_every}',
             '--config.compilation_cache_dir=']
  start = time.time()
  done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, check=False)
  wall = time.time() - start
  if done.returncode:
    raise RuntimeError(f'{case}/{pipeline} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}')
  rates = [float(m.group(1)) for m in _RATE.finditer(done.stdout)][_WARMUP_LOGS:]
  header = next(line for line in done.stdout.splitlines() if line.startswith('Micro-DualNet:'))
  return {'samples_per_s_after_warmup': rates, 'median_samples_per_s':
          round(statistics.median(rates), 2), 'wall_s': round(wall, 1), 'console': header}


def ratio_interval(device: list[float], host: list[float]) -> dict[str, float]:
  """mean(device) / mean(host) with the 95 % Welch interval of the difference over mean(host)."""
  difference = stats.welch_interval(device, host)
  host_mean = statistics.fmean(host)
  return {'ratio_of_means': round(statistics.fmean(device) / host_mean, 3),
          'ratio_low': round(1 + difference['_low'] / host_mean, 3),
          'ratio_high': round(1 + difference['_high'] / host_mean, 3)}


def case_record(steps: int, runs: dict[str, list[dict[str, Any]]], repeats: int
                ) -> dict[str, Any]:
  """One case's JSON from the runs it has so far: per-path medians, their ratio and the 95 %
  interval of the ratio once both paths have a run; `finished` once each has `repeats`."""
  record: dict[str, Any] = {'steps': steps, 'runs': runs,
                            'finished': all(len(r) == repeats for r in runs.values())}
  if all(runs.values()):
    medians = {p: statistics.median(r['median_samples_per_s'] for r in rs)
               for p, rs in runs.items()}
    record.update({'median_samples_per_s': medians,
                   'device_over_host': round(medians['device'] / medians['host'], 3),
                   'device_over_host_95': ratio_interval(
                       *[[x for r in runs[p] for x in r['samples_per_s_after_warmup']]
                         for p in ('device', 'host')])})
  return record


def main(argv):
  del argv
  out: dict[str, Any] = {'benchmark': 'pipeline', 'machine': common.machine_info(),
                         'device': common.device_info(), 'git_commit': common.git_commit(),
                         'steps': _STEPS.value, 'repeats': _REPEATS.value,
                         'load_average_start': common.load_average(), 'cases': {}}
  for case in _CASES.value:
    steps = _STEPS.value if case != 'default_model' else max(_STEPS.value // 4, 12)
    runs: dict[str, list[dict[str, Any]]] = {'host': [], 'device': []}
    for _ in range(_REPEATS.value):
      for pipeline in ('host', 'device'):
        runs[pipeline].append(run(case, pipeline, steps))
        print(json.dumps({'case': case, 'pipeline': pipeline,
                          **{k: runs[pipeline][-1][k] for k in ('median_samples_per_s',
                                                                'wall_s')}}), flush=True)
        # Written after every run, so that a case failing later keeps the finished ones.
        out['cases'][case] = case_record(steps, runs, _REPEATS.value)
        common.write_json(out, _OUT.value, echo=False)
  out['load_average_end'] = common.load_average()
  common.write_json(out, _OUT.value)


if __name__ == '__main__':
  app.run(main)
